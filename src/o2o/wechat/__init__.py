"""WeChat identity: 公众号 web authorization (OAuth2 ``snsapi_base``) and mini-program login
(``jscode2session``) bind a consumer account to the (appid, openid) WeChat knows them by."""
