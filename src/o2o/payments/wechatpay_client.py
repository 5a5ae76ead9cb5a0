"""WeChat Pay API v3 calls (direct-merchant and partner modes): JSAPI/Native prepay, combined
payments (合单), order query/close, refunds and 异常退款, profit sharing (分账), trade bills.
Import ``WeChatPayClient`` from ``o2o.payments.wechatpay``.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from o2o.payments.wechatpay import (
    WECHATPAY_HOSTS,
    BillDownloadTicket,
    CombineSubOrder,
    ProfitSharingReceiver,
    WeChatPayVerificationError,
    _check_fen,
    _check_no,
    format_time_expire,
)
from o2o.payments.wechatpay_bill import TradeBill, parse_trade_bill
from o2o.payments.wechatpay_crypto import (
    jsapi_sign_message,
    new_nonce,
    rsa_oaep_encrypt,
    rsa_sign,
)
from o2o.payments.wechatpay_transport import WeChatPayTransport

# scene_info.h5_info.type: the kind of page the H5 payment starts from.
H5_TYPE_WAP = "Wap"
H5_TYPES = frozenset({"iOS", "Android", "Wap"})


def _h5_scene(payer_client_ip: str, h5_type: str) -> dict[str, Any]:
    if not payer_client_ip:
        raise ValueError("an H5 payment needs the payer's IP address")
    if h5_type not in H5_TYPES:
        raise ValueError(f"h5_info.type must be one of {sorted(H5_TYPES)}")
    return {"payer_client_ip": payer_client_ip, "h5_info": {"type": h5_type}}


class WeChatPayClient(WeChatPayTransport):
    """Sync WeChat Pay v3 client. Thread-safe; reuse one per merchant account."""

    # ------------------------------------------------------------------ prepay

    def jsapi_prepay(
        self,
        *,
        out_trade_no: str,
        description: str,
        amount_fen: int,
        payer_openid: str,
        time_expire: datetime,
        attach: str | None = None,
        notify_url: str | None = None,
        profit_sharing: bool = False,
        goods_tag: str | None = None,
        sub_mchid: str | None = None,
        sub_appid: str | None = None,
        openid_of: Literal["sp", "sub"] = "sp",
    ) -> str:
        """JSAPI/mini-program order → ``prepay_id`` (valid 2 hours).

        In partner mode the payer's openid belongs to ``sp_appid`` (``openid_of="sp"``)
        or to ``sub_appid`` (``"sub"``); pass the matching appid to ``jsapi_pay_params``.
        """
        body = self._order_body(
            out_trade_no=out_trade_no,
            description=description,
            amount_fen=amount_fen,
            time_expire=time_expire,
            attach=attach,
            notify_url=notify_url,
            profit_sharing=profit_sharing,
            goods_tag=goods_tag,
            sub_mchid=sub_mchid,
            sub_appid=sub_appid,
        )
        if not self.config.partner:
            body["payer"] = {"openid": payer_openid}
        elif openid_of == "sub":
            if not sub_appid:
                raise ValueError("openid_of='sub' needs sub_appid")
            body["payer"] = {"sub_openid": payer_openid}
        else:
            body["payer"] = {"sp_openid": payer_openid}
        data = self._call("POST", f"{self._pay_prefix()}/jsapi", body=body)
        return str(data["prepay_id"])

    def native_prepay(
        self,
        *,
        out_trade_no: str,
        description: str,
        amount_fen: int,
        time_expire: datetime,
        attach: str | None = None,
        notify_url: str | None = None,
        profit_sharing: bool = False,
        goods_tag: str | None = None,
        sub_mchid: str | None = None,
        sub_appid: str | None = None,
    ) -> str:
        """Native (scan a QR code) order → ``code_url`` to render as a QR code."""
        body = self._order_body(
            out_trade_no=out_trade_no,
            description=description,
            amount_fen=amount_fen,
            time_expire=time_expire,
            attach=attach,
            notify_url=notify_url,
            profit_sharing=profit_sharing,
            goods_tag=goods_tag,
            sub_mchid=sub_mchid,
            sub_appid=sub_appid,
        )
        data = self._call("POST", f"{self._pay_prefix()}/native", body=body)
        return str(data["code_url"])

    def h5_prepay(
        self,
        *,
        out_trade_no: str,
        description: str,
        amount_fen: int,
        time_expire: datetime,
        payer_client_ip: str,
        h5_type: str = H5_TYPE_WAP,
        attach: str | None = None,
        notify_url: str | None = None,
        profit_sharing: bool = False,
        sub_mchid: str | None = None,
        sub_appid: str | None = None,
    ) -> str:
        """H5 order (a phone browser outside WeChat) → ``h5_url``: send the browser there
        (append ``&redirect_url=`` to come back). WeChat Pay checks the payer's IP against
        the one that opens the URL, so ``payer_client_ip`` must be the real client address."""
        body = self._order_body(
            out_trade_no=out_trade_no,
            description=description,
            amount_fen=amount_fen,
            time_expire=time_expire,
            attach=attach,
            notify_url=notify_url,
            profit_sharing=profit_sharing,
            goods_tag=None,
            sub_mchid=sub_mchid,
            sub_appid=sub_appid,
        )
        body["scene_info"] = _h5_scene(payer_client_ip, h5_type)
        return str(self._call("POST", f"{self._pay_prefix()}/h5", body=body)["h5_url"])

    def jsapi_pay_params(self, prepay_id: str, *, appid: str | None = None) -> dict[str, str]:
        """Parameters for ``wx.requestPayment`` / ``WeixinJSBridge`` (signType RSA)."""
        app = appid or self.config.appid
        timestamp = str(int(self._clock()))
        nonce = new_nonce()
        package = f"prepay_id={prepay_id}"
        pay_sign = rsa_sign(self._private_key, jsapi_sign_message(app, timestamp, nonce, package))
        return {
            "appId": app,
            "timeStamp": timestamp,
            "nonceStr": nonce,
            "package": package,
            "signType": "RSA",
            "paySign": pay_sign,
        }

    # ------------------------------------------------------------------ combined payment

    def _combine_body(
        self,
        *,
        combine_out_trade_no: str,
        sub_orders: Sequence[CombineSubOrder],
        time_expire: datetime,
        notify_url: str | None,
        payer_client_ip: str | None,
    ) -> dict[str, Any]:
        if not 2 <= len(sub_orders) <= 50:
            raise ValueError("a combined payment has 2 to 50 sub-orders")
        subs = []
        for sub in sub_orders:
            item: dict[str, Any] = {
                "mchid": sub.mchid or self.config.mchid,
                "attach": sub.attach,
                "amount": {
                    "total_amount": _check_fen("amount_fen", sub.amount_fen),
                    "currency": "CNY",
                },
                "out_trade_no": _check_no("out_trade_no", sub.out_trade_no),
                "description": sub.description,
            }
            if sub.sub_mchid:
                item["sub_mchid"] = _check_no("sub_mchid", sub.sub_mchid)
            if sub.sub_appid:
                item["sub_appid"] = sub.sub_appid
            if sub.profit_sharing:
                item["settle_info"] = {"profit_sharing": True}
            subs.append(item)
        body: dict[str, Any] = {
            "combine_appid": self.config.appid,
            "combine_mchid": self.config.mchid,
            "combine_out_trade_no": _check_no("combine_out_trade_no", combine_out_trade_no),
            "sub_orders": subs,
            "time_expire": format_time_expire(time_expire),
            "notify_url": self._notify_url(notify_url),
        }
        if payer_client_ip:
            body["scene_info"] = {"payer_client_ip": payer_client_ip}
        return body

    def combine_jsapi_prepay(
        self,
        *,
        combine_out_trade_no: str,
        sub_orders: Sequence[CombineSubOrder],
        payer_openid: str,
        time_expire: datetime,
        notify_url: str | None = None,
        payer_client_ip: str | None = None,
    ) -> str:
        """合单 JSAPI order (one password for several merchants' orders) → ``prepay_id``."""
        body = self._combine_body(
            combine_out_trade_no=combine_out_trade_no,
            sub_orders=sub_orders,
            time_expire=time_expire,
            notify_url=notify_url,
            payer_client_ip=payer_client_ip,
        )
        body["combine_payer_info"] = {"openid": payer_openid}
        return str(self._call("POST", "/v3/combine-transactions/jsapi", body=body)["prepay_id"])

    def combine_native_prepay(
        self,
        *,
        combine_out_trade_no: str,
        sub_orders: Sequence[CombineSubOrder],
        time_expire: datetime,
        payer_client_ip: str,
        notify_url: str | None = None,
    ) -> str:
        """合单 Native order → ``code_url``."""
        body = self._combine_body(
            combine_out_trade_no=combine_out_trade_no,
            sub_orders=sub_orders,
            time_expire=time_expire,
            notify_url=notify_url,
            payer_client_ip=payer_client_ip,
        )
        return str(self._call("POST", "/v3/combine-transactions/native", body=body)["code_url"])

    def combine_h5_prepay(
        self,
        *,
        combine_out_trade_no: str,
        sub_orders: Sequence[CombineSubOrder],
        time_expire: datetime,
        payer_client_ip: str,
        h5_type: str = H5_TYPE_WAP,
        notify_url: str | None = None,
    ) -> str:
        """合单 H5 order → ``h5_url``."""
        body = self._combine_body(
            combine_out_trade_no=combine_out_trade_no,
            sub_orders=sub_orders,
            time_expire=time_expire,
            notify_url=notify_url,
            payer_client_ip=payer_client_ip,
        )
        body["scene_info"] = _h5_scene(payer_client_ip, h5_type)
        return str(self._call("POST", "/v3/combine-transactions/h5", body=body)["h5_url"])

    def query_combine_order(self, combine_out_trade_no: str) -> dict[str, Any]:
        """Combined order with per-sub-order ``trade_state``, ``transaction_id``, amounts."""
        no = quote(_check_no("combine_out_trade_no", combine_out_trade_no), safe="")
        return self._call("GET", f"/v3/combine-transactions/out-trade-no/{no}")

    def close_combine_order(
        self, combine_out_trade_no: str, sub_orders: Sequence[CombineSubOrder]
    ) -> None:
        """Close every unpaid sub-order of a combined payment (204 on success)."""
        no = quote(_check_no("combine_out_trade_no", combine_out_trade_no), safe="")
        subs = []
        for sub in sub_orders:
            item = {"mchid": sub.mchid or self.config.mchid, "out_trade_no": sub.out_trade_no}
            if sub.sub_mchid:
                item["sub_mchid"] = sub.sub_mchid
            if sub.sub_appid:
                item["sub_appid"] = sub.sub_appid
            subs.append(item)
        body = {"combine_appid": self.config.appid, "sub_orders": subs}
        self._call("POST", f"/v3/combine-transactions/out-trade-no/{no}/close", body=body)

    # ------------------------------------------------------------------ order query / close

    def query_order(self, out_trade_no: str, *, sub_mchid: str | None = None) -> dict[str, Any]:
        """Order by our number: ``trade_state`` (SUCCESS, REFUND, NOTPAY, CLOSED, ...),
        ``transaction_id``, ``amount{total,payer_total,currency}``, ``success_time``."""
        no = quote(_check_no("out_trade_no", out_trade_no), safe="")
        return self._call(
            "GET", f"{self._pay_prefix()}/out-trade-no/{no}", query=self._order_query(sub_mchid)
        )

    def query_order_by_transaction_id(
        self, transaction_id: str, *, sub_mchid: str | None = None
    ) -> dict[str, Any]:
        tid = quote(_check_no("transaction_id", transaction_id), safe="")
        return self._call(
            "GET", f"{self._pay_prefix()}/id/{tid}", query=self._order_query(sub_mchid)
        )

    def close_order(self, out_trade_no: str, *, sub_mchid: str | None = None) -> None:
        no = quote(_check_no("out_trade_no", out_trade_no), safe="")
        self._call(
            "POST",
            f"{self._pay_prefix()}/out-trade-no/{no}/close",
            body=self._order_query(sub_mchid),
        )

    # ------------------------------------------------------------------ refunds

    def refund(
        self,
        *,
        out_refund_no: str,
        refund_fen: int,
        total_fen: int,
        out_trade_no: str | None = None,
        transaction_id: str | None = None,
        reason: str | None = None,
        notify_url: str | None = None,
        sub_mchid: str | None = None,
        funds_account: str | None = None,
    ) -> dict[str, Any]:
        """Apply for a refund. Returns the refund (``status`` usually PROCESSING).

        Retrying with the same ``out_refund_no`` and amounts is safe: WeChat Pay answers
        with the existing refund instead of refunding twice.
        """
        if (out_trade_no is None) == (transaction_id is None):
            raise ValueError("pass exactly one of out_trade_no and transaction_id")
        _check_fen("refund_fen", refund_fen)
        _check_fen("total_fen", total_fen)
        if refund_fen > total_fen:
            raise ValueError("refund_fen cannot exceed total_fen")
        body: dict[str, Any] = {}
        sub = self._sub(sub_mchid)
        if sub:
            body["sub_mchid"] = sub
        if out_trade_no is not None:
            body["out_trade_no"] = _check_no("out_trade_no", out_trade_no)
        else:
            body["transaction_id"] = _check_no("transaction_id", transaction_id or "")
        body["out_refund_no"] = _check_no("out_refund_no", out_refund_no)
        if reason:
            body["reason"] = reason
        url = notify_url or self.config.refund_notify_url or self.config.notify_url
        if url:
            body["notify_url"] = url
        if funds_account:
            body["funds_account"] = funds_account
        body["amount"] = {"refund": refund_fen, "total": total_fen, "currency": "CNY"}
        return self._call("POST", "/v3/refund/domestic/refunds", body=body)

    def query_refund(self, out_refund_no: str, *, sub_mchid: str | None = None) -> dict[str, Any]:
        no = quote(_check_no("out_refund_no", out_refund_no), safe="")
        sub = self._sub(sub_mchid)
        return self._call(
            "GET", f"/v3/refund/domestic/refunds/{no}", query={"sub_mchid": sub} if sub else None
        )

    def apply_abnormal_refund(
        self,
        *,
        refund_id: str,
        out_refund_no: str,
        type: Literal["USER_BANK_CARD", "MERCHANT_BANK_CARD"],
        bank_type: str | None = None,
        bank_account: str | None = None,
        real_name: str | None = None,
        sub_mchid: str | None = None,
    ) -> dict[str, Any]:
        """发起异常退款: a refund WeChat Pay reported ``ABNORMAL`` (the original account cannot
        take it) goes to the payer's bank card (``USER_BANK_CARD``: bank type, card number and
        name required, the last two encrypted) or back to the merchant's bank account
        (``MERCHANT_BANK_CARD``). Answers with the refund (``status`` PROCESSING)."""
        if type not in ("USER_BANK_CARD", "MERCHANT_BANK_CARD"):
            raise ValueError("type must be USER_BANK_CARD or MERCHANT_BANK_CARD")
        body: dict[str, Any] = {}
        sub = self._sub(sub_mchid)
        if sub:
            body["sub_mchid"] = sub
        body.update(out_refund_no=_check_no("out_refund_no", out_refund_no), type=type)
        serial = None
        if type == "USER_BANK_CARD":
            if not (bank_type and bank_account and real_name):
                raise ValueError("USER_BANK_CARD needs bank_type, bank_account and real_name")
            serial, key = self._platform.encryption_key()
            body.update(
                bank_type=bank_type,
                bank_account=rsa_oaep_encrypt(key, bank_account),
                real_name=rsa_oaep_encrypt(key, real_name),
            )
        rid = quote(_check_no("refund_id", refund_id), safe="")
        return self._call(
            "POST",
            f"/v3/refund/domestic/refunds/{rid}/apply-abnormal-refund",
            body=body,
            wechatpay_serial=serial,
        )

    # ------------------------------------------------------------------ profit sharing

    def add_profit_sharing_receiver(
        self,
        *,
        type: str,
        account: str,
        relation_type: str,
        name: str | None = None,
        custom_relation: str | None = None,
        sub_mchid: str | None = None,
        appid: str | None = None,
    ) -> dict[str, Any]:
        """Register a receiver (WeChat Pay requires it before sharing to that account)."""
        body: dict[str, Any] = {"appid": appid or self.config.appid}
        sub = self._sub(sub_mchid)
        if sub:
            body["sub_mchid"] = sub
        body.update(type=type, account=account, relation_type=relation_type)
        serial = None
        if type == "MERCHANT_ID" and not name:
            # The official model: for MERCHANT_ID the merchant's full name is required.
            raise ValueError("a MERCHANT_ID receiver needs the merchant's full name (商户全称)")
        if name:
            serial, key = self._platform.encryption_key()
            body["name"] = rsa_oaep_encrypt(key, name)
        if custom_relation:
            body["custom_relation"] = custom_relation
        return self._call(
            "POST", "/v3/profitsharing/receivers/add", body=body, wechatpay_serial=serial
        )

    def profit_sharing(
        self,
        *,
        transaction_id: str,
        out_order_no: str,
        receivers: Sequence[ProfitSharingReceiver],
        unfreeze_unsplit: bool,
        sub_mchid: str | None = None,
        appid: str | None = None,
    ) -> dict[str, Any]:
        """Request 分账 of a paid order (placed with profit_sharing=True).

        ``unfreeze_unsplit=True`` releases whatever is left to the merchant afterwards.
        Returns the sharing order: ``state`` PROCESSING/FINISHED and per-receiver ``result``.
        """
        if not receivers:
            raise ValueError("profit sharing needs at least one receiver")
        body: dict[str, Any] = {"appid": appid or self.config.appid}
        sub = self._sub(sub_mchid)
        if sub:
            body["sub_mchid"] = sub
        items = []
        serial = None
        for r in receivers:
            item: dict[str, Any] = {
                "type": r.type,
                "account": r.account,
                "amount": _check_fen("receiver amount_fen", r.amount_fen),
                "description": r.description,
            }
            if r.name:
                serial, key = self._platform.encryption_key()
                item["name"] = rsa_oaep_encrypt(key, r.name)
            items.append(item)
        body.update(
            transaction_id=_check_no("transaction_id", transaction_id),
            out_order_no=_check_no("out_order_no", out_order_no),
            receivers=items,
            unfreeze_unsplit=unfreeze_unsplit,
        )
        return self._call("POST", "/v3/profitsharing/orders", body=body, wechatpay_serial=serial)

    def query_profit_sharing(
        self, out_order_no: str, *, transaction_id: str, sub_mchid: str | None = None
    ) -> dict[str, Any]:
        no = quote(_check_no("out_order_no", out_order_no), safe="")
        query = {"transaction_id": _check_no("transaction_id", transaction_id)}
        sub = self._sub(sub_mchid)
        if sub:
            query["sub_mchid"] = sub
        return self._call("GET", f"/v3/profitsharing/orders/{no}", query=query)

    def unfreeze_profit_sharing(
        self,
        *,
        transaction_id: str,
        out_order_no: str,
        description: str,
        sub_mchid: str | None = None,
    ) -> dict[str, Any]:
        """Release the unshared remainder of an order to the merchant (解冻剩余资金)."""
        body: dict[str, Any] = {}
        sub = self._sub(sub_mchid)
        if sub:
            body["sub_mchid"] = sub
        body.update(
            transaction_id=_check_no("transaction_id", transaction_id),
            out_order_no=_check_no("out_order_no", out_order_no),
            description=description,
        )
        return self._call("POST", "/v3/profitsharing/orders/unfreeze", body=body)

    def encrypt_sensitive(self, plaintext: str) -> str:
        """Encrypt a sensitive field for WeChat Pay with its public key / newest platform
        certificate (``platform_serial_for_encryption`` names it)."""
        return rsa_oaep_encrypt(self._platform.encryption_key()[1], plaintext)

    @property
    def platform_serial_for_encryption(self) -> str:
        return self._platform.encryption_key()[0]

    # ------------------------------------------------------------------ bills

    def apply_trade_bill(
        self,
        bill_date: date,
        *,
        bill_type: Literal["ALL", "SUCCESS", "REFUND"] = "ALL",
        sub_mchid: str | None = None,
        gzip_file: bool = False,
    ) -> BillDownloadTicket:
        """Ask for the trade bill of a day (ready after ~10:00 the next day)."""
        query = {"bill_date": bill_date.isoformat(), "bill_type": bill_type}
        if sub_mchid:
            if not self.config.partner:
                raise ValueError("direct mode: sub_mchid is only for partner configs")
            query["sub_mchid"] = _check_no("sub_mchid", sub_mchid)
        if gzip_file:
            query["tar_type"] = "GZIP"
        data = self._call("GET", "/v3/bill/tradebill", query=query)
        return BillDownloadTicket(
            download_url=str(data["download_url"]),
            hash_type=str(data.get("hash_type", "SHA1")),
            hash_value=str(data.get("hash_value", "")),
        )

    def download_bill(self, ticket: BillDownloadTicket) -> bytes:
        """Fetch a bill file; gunzips if needed and checks the hash from the ticket.

        The download is not signed by WeChat Pay (it is a file stream), so the hash from
        the signed apply response is what proves the content.
        """
        parts = urlsplit(ticket.download_url)
        allowed = {
            urlsplit(self.config.base_url).netloc,
            urlsplit(self.config.backup_base_url or "").netloc,
            *WECHATPAY_HOSTS,
        } - {""}
        if parts.netloc not in allowed:
            raise WeChatPayVerificationError(
                "malformed", f"download_url host {parts.netloc!r} is not WeChat Pay"
            )
        content = self._send("GET", ticket.download_url, verify=False).content
        if content[:2] == b"\x1f\x8b":
            content = gzip.decompress(content)
        algorithm = ticket.hash_type.lower()
        if algorithm not in {"sha1", "sha256"}:
            raise WeChatPayVerificationError("malformed", f"unknown hash type {ticket.hash_type}")
        digest = hashlib.new(algorithm, content).hexdigest()
        if digest.lower() != ticket.hash_value.lower():
            raise WeChatPayVerificationError("signature", "bill file hash does not match")
        return content

    def fetch_trade_bill(
        self,
        bill_date: date,
        *,
        bill_type: Literal["ALL", "SUCCESS", "REFUND"] = "ALL",
        sub_mchid: str | None = None,
    ) -> TradeBill:
        """Apply, download and parse the trade bill of ``bill_date``."""
        ticket = self.apply_trade_bill(bill_date, bill_type=bill_type, sub_mchid=sub_mchid)
        return parse_trade_bill(self.download_bill(ticket))
