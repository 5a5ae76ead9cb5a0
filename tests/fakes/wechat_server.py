"""A local fake of WeChat's sign-in servers (open.weixin.qq.com / api.weixin.qq.com), over real
HTTP for tests, as strict as the official documentation:

* ``GET /connect/oauth2/authorize`` (网页授权): ``appid`` of a known 公众号, ``redirect_uri`` on
  its 网页授权域名, ``response_type=code``, ``scope`` snsapi_base|snsapi_userinfo, ``state`` of
  at most 128 letters/digits → 302 to ``redirect_uri?code=…&state=…``. The WeChat user is the
  browser: a cookie on the fake names them (a new user on first visit), or ``as_user=`` when a
  test calls :meth:`FakeWeChat.authorize` directly.
* ``GET /sns/oauth2/access_token`` and ``GET /sns/jscode2session``: every parameter required
  (41002 appid missing, 41004 appsecret missing, 41008 missing code, 40002 invalid grant_type),
  40013 invalid appid, 40125 invalid appsecret, 40029 invalid code (unknown, another app's, or
  older than 5 minutes), 40163 code been used. Errors are HTTP 200 with ``errcode``/``errmsg``.

    with FakeWeChat() as wx:
        app = wx.official_account()                  # 公众号 (appid, secret)
        code = wx.authorize(app.appid, "https://o2o.example.cn/wechat/oauth/callback", "abc")
        mp_code = wx.login_code(wx.miniprogram().appid, user)   # what wx.login gives a client
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

OFFICIAL_APPID = "wx2421b1c4370ec43b"
MINIPROGRAM_APPID = "wx5fd4c8a2e3f01b77"
CODE_TTL_SECONDS = 300
USER_COOKIE = "fake_wx_user"
ERRORS = {
    40002: "invalid grant_type",
    40013: "invalid appid",
    40029: "invalid code",
    40125: "invalid appsecret",
    40163: "code been used",
    41002: "appid missing",
    41004: "appsecret missing",
    41008: "missing code",
}


@dataclass
class FakeApp:
    appid: str
    secret: str
    kind: str  # "official" | "miniprogram"
    # 网页授权域名 (official accounts): redirect_uri must be on one of these hosts.
    domains: set[str] = field(default_factory=set)
    # Bound to an open platform account: answers carry the user's unionid.
    unionid: bool = True


@dataclass
class FakeUser:
    key: str
    unionid: str
    openids: dict[str, str] = field(default_factory=dict)

    def openid(self, appid: str) -> str:
        # One openid per (user, app), like WeChat.
        return self.openids.setdefault(appid, "o" + secrets.token_urlsafe(20)[:27])


@dataclass
class FakeCode:
    appid: str
    user: FakeUser
    issued_at: float
    used: bool = False


class FakeWeChat:
    """In-memory WeChat sign-in servers on 127.0.0.1:<free port>; use as a context manager."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self.apps: dict[str, FakeApp] = {}
        self.users: dict[str, FakeUser] = {}
        self.codes: dict[str, FakeCode] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # ------------------------------------------------------------------ set-up

    def official_account(
        self,
        appid: str = OFFICIAL_APPID,
        *,
        domains: tuple[str, ...] = ("127.0.0.1", "testserver", "o2o.example.cn"),
        unionid: bool = True,
    ) -> FakeApp:
        with self._lock:
            app = self.apps.get(appid)
            if app is None:
                app = FakeApp(appid, secrets.token_hex(16), "official", set(domains), unionid)
                self.apps[appid] = app
            return app

    def miniprogram(self, appid: str = MINIPROGRAM_APPID, *, unionid: bool = True) -> FakeApp:
        with self._lock:
            app = self.apps.get(appid)
            if app is None:
                app = FakeApp(appid, secrets.token_hex(16), "miniprogram", set(), unionid)
                self.apps[appid] = app
            return app

    def user(self, key: str | None = None) -> FakeUser:
        with self._lock:
            key = key or secrets.token_hex(8)
            found = self.users.get(key)
            if found is None:
                found = FakeUser(key, "u" + secrets.token_urlsafe(20)[:27])
                self.users[key] = found
            return found

    def env(self) -> dict[str, str]:
        """``O2O_WECHAT_*`` pointing the platform at this fake (公众号 and mini-program)."""
        official, mini = self.official_account(), self.miniprogram()
        return {
            "O2O_WECHAT_APPID": official.appid,
            "O2O_WECHAT_SECRET": official.secret,
            "O2O_WECHAT_MINIPROGRAM_APPID": mini.appid,
            "O2O_WECHAT_MINIPROGRAM_SECRET": mini.secret,
            "O2O_WECHAT_API_BASE_URL": self.base_url,
            "O2O_WECHAT_OPEN_BASE_URL": self.base_url,
        }

    # ------------------------------------------------------------------ what WeChat clients do

    def _issue(self, appid: str, user: FakeUser) -> str:
        code = secrets.token_urlsafe(24)
        self.codes[code] = FakeCode(appid, user, self.clock())
        user.openid(appid)
        return code

    def login_code(self, appid: str, user: FakeUser) -> str:
        """What ``wx.login`` gives the mini-program ``appid`` for ``user``."""
        with self._lock:
            if self.apps.get(appid, FakeApp("", "", "")).kind != "miniprogram":
                raise ValueError(f"{appid} is not a mini-program of this fake")
            return self._issue(appid, user)

    def authorize(
        self, appid: str, redirect_uri: str, state: str, *, as_user: FakeUser | None = None
    ) -> str:
        """The code WeChat would append to ``redirect_uri`` (checks as the endpoint does)."""
        with self._lock:
            problem = self._check_authorize(
                {
                    "appid": appid,
                    "redirect_uri": redirect_uri,
                    "response_type": "code",
                    "scope": "snsapi_base",
                    "state": state,
                }
            )
            if problem:
                raise ValueError(problem)
            return self._issue(appid, as_user or self.user())

    def openid_of(self, user: FakeUser, appid: str = OFFICIAL_APPID) -> str:
        return user.openid(appid)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeWeChat:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        app = Starlette(
            routes=[
                Route("/connect/oauth2/authorize", self._authorize_endpoint),
                Route("/sns/oauth2/access_token", self._access_token_endpoint),
                Route("/sns/jscode2session", self._jscode2session_endpoint),
            ]
        )
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", access_log=False, ws="none"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake WeChat server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeWeChat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("start the fake first")
        return f"http://127.0.0.1:{self._port}"

    # ------------------------------------------------------------------ endpoints

    def _check_authorize(self, q: dict[str, str]) -> str:
        app = self.apps.get(q.get("appid", ""))
        if app is None or app.kind != "official":
            return "appid 参数错误 (10003 redirect_uri/appid)"
        redirect = q.get("redirect_uri", "")
        parts = urlsplit(redirect)
        if parts.scheme not in ("http", "https") or parts.hostname not in app.domains:
            return "redirect_uri 参数错误 (10003: 与后台配置的网页授权域名不一致)"
        if q.get("response_type") != "code":
            return "response_type 参数错误 (10004)"
        if q.get("scope") not in ("snsapi_base", "snsapi_userinfo"):
            return "scope 参数错误 (10005)"
        state = q.get("state", "")
        if len(state) > 128 or not state.isascii() or (state and not state.isalnum()):
            return "state 参数错误"
        return ""

    async def _authorize_endpoint(self, request: Request) -> Response:
        q = dict(request.query_params)
        with self._lock:
            self.requests.append(("authorize", q))
            problem = self._check_authorize(q)
            if problem:
                # WeChat shows an error page inside its browser; it never redirects.
                return PlainTextResponse(problem, status_code=200)
            user = self.user(request.cookies.get(USER_COOKIE))
            code = self._issue(q["appid"], user)
        redirect = q["redirect_uri"]
        sep = "&" if urlsplit(redirect).query else "?"
        target = redirect + sep + urlencode({"code": code, "state": q.get("state", "")})
        response = RedirectResponse(target, status_code=302)
        response.set_cookie(USER_COOKIE, user.key, httponly=True)
        return response

    def _exchange(self, q: dict[str, str], *, code_param: str, kind: str) -> dict[str, Any]:
        if not q.get("appid"):
            return _error(41002)
        if not q.get("secret"):
            return _error(41004)
        if not q.get(code_param):
            return _error(41008)
        if q.get("grant_type") != "authorization_code":
            return _error(40002)
        app = self.apps.get(q["appid"])
        if app is None or app.kind != kind:
            return _error(40013)
        if not secrets.compare_digest(app.secret, q["secret"]):
            return _error(40125)
        found = self.codes.get(q[code_param])
        if found is None or found.appid != app.appid:
            return _error(40029)
        if found.used:
            return _error(40163)
        if self.clock() - found.issued_at > CODE_TTL_SECONDS:
            return _error(40029)
        found.used = True
        answer: dict[str, Any] = {"openid": found.user.openid(app.appid)}
        if app.unionid:
            answer["unionid"] = found.user.unionid
        return answer

    async def _access_token_endpoint(self, request: Request) -> Response:
        q = dict(request.query_params)
        with self._lock:
            self.requests.append(("access_token", q))
            answer = self._exchange(q, code_param="code", kind="official")
        if "openid" in answer:
            answer = {
                "access_token": secrets.token_urlsafe(32),
                "expires_in": 7200,
                "refresh_token": secrets.token_urlsafe(32),
                "scope": "snsapi_base",
                "is_snapshotuser": 0,
                **answer,
            }
        return JSONResponse(answer)

    async def _jscode2session_endpoint(self, request: Request) -> Response:
        q = dict(request.query_params)
        with self._lock:
            self.requests.append(("jscode2session", q))
            answer = self._exchange(q, code_param="js_code", kind="miniprogram")
        if "openid" in answer:
            answer = {"session_key": secrets.token_urlsafe(16), **answer}
        return JSONResponse(answer)


def _error(errcode: int) -> dict[str, Any]:
    return {"errcode": errcode, "errmsg": f"{ERRORS[errcode]}, rid: {secrets.token_hex(6)}"}


@pytest.fixture
def fake_wechat() -> Iterator[FakeWeChat]:
    with FakeWeChat() as fake:
        yield fake
