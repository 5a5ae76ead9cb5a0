"""WeChat Pay API v3 transport: signed requests (failing over to the backup domain when the
primary cannot be reached), verified answers, the platform keys (public key, or certificates
downloaded and rotated) and notifications. ``WeChatPayClient`` (wechatpay_client.py) adds the
API calls; import it from ``o2o.payments.wechatpay``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode

import httpx

from o2o.payments.wechatpay import (
    PRIMARY_DOWN_SECONDS,
    USER_AGENT,
    WeChatPayConfig,
    WeChatPayError,
    WeChatPayNetworkError,
    WeChatPayVerificationError,
    _check_fen,
    _check_no,
    _platform_keys,
    decrypt_resource,
    format_time_expire,
    parse_notification,
    verify_wechatpay_signature,
)
from o2o.payments.wechatpay_certs import (
    CERTIFICATES_PATH,
    PlatformCertificate,
    PlatformKeys,
    decrypt_certificates,
)
from o2o.payments.wechatpay_crypto import (
    build_authorization,
    load_private_key,
    new_nonce,
)
from o2o.timeutil import CHINA_TZ

log = logging.getLogger(__name__)


class WeChatPayTransport:
    """What every call needs: config, keys, the HTTP client, signing and verifying."""

    def __init__(
        self,
        config: WeChatPayConfig,
        *,
        http_client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._private_key = load_private_key(config.private_key)
        self._clock = clock
        self._platform = _platform_keys(
            config,
            fetch=self.download_certificates if config.download_certificates else None,
            clock=clock,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=config.timeout)
        self._primary_down_until = 0.0

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ transport

    def _targets(self, url: str) -> list[str]:
        """``url``, and the same on the backup domain when ``url`` is on the primary one —
        backup first while the primary was recently unreachable."""
        primary, backup = self.config.base_url, self.config.backup_base_url or ""
        if not backup or not url.startswith(primary + "/"):
            return [url]
        other = backup + url[len(primary) :]
        if time.monotonic() < self._primary_down_until:
            return [other, url]
        return [url, other]

    def _send(
        self,
        method: str,
        url: str,
        *,
        body: Mapping[str, Any] | None = None,
        verify: bool = True,
        wechatpay_serial: str | None = None,
    ) -> httpx.Response:
        """Sign, send, check the answer. No answer at all (connection refused, DNS, timeout)
        from the primary domain: the same request goes to the backup domain (WeChat Pay
        dedupes writes on our numbers); an answer, even a 5xx, is never sent elsewhere."""
        content = (
            json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            if body is not None
            else b""
        )
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if wechatpay_serial:
            # Which of WeChat Pay's keys the sensitive fields of this request are encrypted with.
            headers["Wechatpay-Serial"] = wechatpay_serial
        if body is not None:
            headers["Content-Type"] = "application/json"
        targets = self._targets(url)
        for attempt, target in enumerate(targets):
            request = self._http.build_request(
                method, target, content=content or None, headers=headers
            )
            # Sign exactly the path+query httpx will put on the wire.
            url_path = request.url.raw_path.decode("ascii")
            request.headers["Authorization"] = build_authorization(
                mchid=self.config.mchid,
                serial_no=self.config.merchant_serial_no,
                private_key=self._private_key,
                method=method,
                url_path=url_path,
                body=content,
                timestamp=int(self._clock()),
                nonce=new_nonce(),
            )
            try:
                response = self._http.send(request)
            except httpx.TransportError as exc:
                if target == url and len(targets) > 1:
                    self._primary_down_until = time.monotonic() + PRIMARY_DOWN_SECONDS
                if attempt + 1 < len(targets):
                    log.warning(
                        "WeChat Pay %s unreachable (%r); trying %s",
                        target,
                        exc,
                        targets[attempt + 1],
                    )
                    continue
                raise WeChatPayNetworkError(f"{method} {url_path}: {exc!r}") from exc
            if target == url:
                self._primary_down_until = 0.0
            break
        if response.status_code >= 300:
            raise self._error(response)
        if verify:
            verify_wechatpay_signature(
                self.config,
                response.headers,
                response.content,
                now=self._clock(),
                _keys=self._platform,
            )
        return response

    @staticmethod
    def _error(response: httpx.Response) -> WeChatPayError:
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if isinstance(payload, dict) and "code" in payload:
            detail = payload.get("detail")
            return WeChatPayError(
                response.status_code,
                str(payload["code"]),
                str(payload.get("message", "")),
                detail if isinstance(detail, dict) else None,
            )
        return WeChatPayError(response.status_code, "UNKNOWN", response.text[:200])

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        wechatpay_serial: str | None = None,
    ) -> dict[str, Any]:
        url = self.config.base_url + path
        if query:
            url += "?" + urlencode(query)
        response = self._send(method, url, body=body, wechatpay_serial=wechatpay_serial)
        if not response.content:
            return {}
        data = response.json()
        if not isinstance(data, dict):
            raise WeChatPayError(response.status_code, "UNEXPECTED_BODY", "not a JSON object")
        return data

    # ------------------------------------------------------------------ mode helpers

    def _sub(self, sub_mchid: str | None) -> str | None:
        if self.config.partner and not sub_mchid:
            raise ValueError("partner mode: sub_mchid is required")
        if not self.config.partner and sub_mchid:
            raise ValueError("direct mode: sub_mchid is only for partner configs")
        return _check_no("sub_mchid", sub_mchid) if sub_mchid else None

    def _merchant_ids(self, sub_mchid: str | None, sub_appid: str | None) -> dict[str, str]:
        sub = self._sub(sub_mchid)
        if sub is None:
            return {"appid": self.config.appid, "mchid": self.config.mchid}
        ids = {"sp_appid": self.config.appid, "sp_mchid": self.config.mchid, "sub_mchid": sub}
        if sub_appid:
            ids["sub_appid"] = sub_appid
        return ids

    def _notify_url(self, override: str | None) -> str:
        url = override or self.config.notify_url
        if not url:
            raise ValueError("notify_url is required (set it on the config or pass it)")
        return url

    def _order_body(
        self,
        *,
        out_trade_no: str,
        description: str,
        amount_fen: int,
        time_expire: datetime,
        attach: str | None,
        notify_url: str | None,
        profit_sharing: bool,
        goods_tag: str | None,
        sub_mchid: str | None,
        sub_appid: str | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = self._merchant_ids(sub_mchid, sub_appid)
        body.update(
            description=description,
            out_trade_no=_check_no("out_trade_no", out_trade_no),
            time_expire=format_time_expire(time_expire),
            notify_url=self._notify_url(notify_url),
            amount={"total": _check_fen("amount_fen", amount_fen), "currency": "CNY"},
        )
        if attach:
            body["attach"] = attach
        if goods_tag:
            body["goods_tag"] = goods_tag
        if profit_sharing:
            body["settle_info"] = {"profit_sharing": True}
        return body

    def _pay_prefix(self) -> str:
        return "/v3/pay/partner/transactions" if self.config.partner else "/v3/pay/transactions"

    def _order_query(self, sub_mchid: str | None) -> dict[str, str]:
        sub = self._sub(sub_mchid)
        if sub is None:
            return {"mchid": self.config.mchid}
        return {"sp_mchid": self.config.mchid, "sub_mchid": sub}

    # ------------------------------------------------------------------ platform certificates

    def download_certificates(self) -> list[PlatformCertificate]:
        """``GET /v3/certificates``: the platform certificates, decrypted with the APIv3 key.
        The answer's signature must verify with a key we trust or one of the certificates
        it carries (bootstrap). Certificate mode calls this itself (``PlatformKeys``)."""
        url = self.config.base_url + CERTIFICATES_PATH
        response = self._send("GET", url, verify=False)
        now = datetime.fromtimestamp(self._clock(), CHINA_TZ)
        try:
            payload = response.json()
            certificates = decrypt_certificates(
                self.config.apiv3_key.encode("utf-8"), payload, now=now
            )
        except ValueError as exc:
            raise WeChatPayVerificationError("decrypt", f"platform certificates: {exc}") from None
        trusted = PlatformKeys(
            {**self._platform.known(), **{c.serial_no: c.public_key for c in certificates}},
            primary_serial=None,
            clock=self._clock,
        )
        verify_wechatpay_signature(
            self.config, response.headers, response.content, now=self._clock(), _keys=trusted
        )
        return certificates

    # ------------------------------------------------------------------ notifications

    def verify_signature(self, headers: Mapping[str, str], body: bytes) -> None:
        verify_wechatpay_signature(
            self.config, headers, body, now=self._clock(), _keys=self._platform
        )

    def parse_notification(self, headers: Mapping[str, str], body: bytes | str) -> dict[str, Any]:
        """Verify (signature, serial, 5-minute timestamp) and decrypt a notification."""
        return parse_notification(
            self.config, headers, body, now=self._clock(), _keys=self._platform
        )

    def decrypt_resource(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        return decrypt_resource(self.config, resource)
