"""WeChat Pay v3 adapter against the local fake over real HTTP (no database needed)."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from o2o.payments.wechatpay import (
    BillDownloadTicket,
    CombineSubOrder,
    ProfitSharingReceiver,
    WeChatPayClient,
    WeChatPayConfig,
    WeChatPayError,
    WeChatPayNetworkError,
    WeChatPayVerificationError,
    format_time_expire,
    notification_failure,
    notification_success,
    parse_notification,
    parse_trade_bill,
    yuan_to_fen,
)
from o2o.payments.wechatpay_crypto import (
    aes_gcm_decrypt,
    aes_gcm_encrypt,
    jsapi_sign_message,
    load_private_key,
    private_key_pem,
    response_message,
    rsa_sign,
    rsa_verify,
)
from o2o.timeutil import CHINA_TZ
from tests.fakes.wechatpay_server import FakeWeChatPay, fake_rsa_key, merchant_name

# A fixed Beijing-time moment keeps bill dates and 5-minute windows deterministic.
T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=CHINA_TZ)
SUB_A = "1900000201"
SUB_B = "1900000202"


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeWeChatPay]:
    with FakeWeChatPay() as fake:
        yield fake


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def fake(fake_server: FakeWeChatPay, clock: Clock) -> FakeWeChatPay:
    fake_server.reset()
    fake_server.clock = clock
    return fake_server


@pytest.fixture
def client(fake: FakeWeChatPay, clock: Clock) -> Iterator[WeChatPayClient]:
    with WeChatPayClient(fake.merchant_config(), clock=clock) as c:
        yield c


@pytest.fixture
def partner(fake: FakeWeChatPay, clock: Clock) -> Iterator[WeChatPayClient]:
    with WeChatPayClient(fake.partner_config(), clock=clock) as c:
        yield c


def expire() -> datetime:
    return T0 + timedelta(minutes=15)


def place(client: WeChatPayClient, no: str, amount_fen: int = 1234, **kw: Any) -> str:
    return client.jsapi_prepay(
        out_trade_no=no,
        description="双人套餐",
        amount_fen=amount_fen,
        payer_openid="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
        time_expire=expire(),
        **kw,
    )


# --------------------------------------------------------------------------- direct payments


def test_jsapi_prepay_query_pay_and_notification(
    fake: FakeWeChatPay, client: WeChatPayClient
) -> None:
    prepay_id = place(client, "O2024050100001", attach="order:1")
    assert prepay_id.startswith("wx")
    sent = fake.requests[-1]
    assert sent.path == "/v3/pay/transactions/jsapi"
    assert sent.body["time_expire"] == "2024-05-01T10:15:00+08:00"
    assert sent.body["amount"] == {"total": 1234, "currency": "CNY"}
    assert sent.body["payer"] == {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}
    assert sent.body["notify_url"] == client.config.notify_url

    assert client.query_order("O2024050100001")["trade_state"] == "NOTPAY"

    note = fake.pay("O2024050100001")
    parsed = client.parse_notification(note.headers, note.body)
    assert parsed["event_type"] == "TRANSACTION.SUCCESS"
    assert parsed["resource_type"] == "encrypt-resource"
    assert parsed["resource_original_type"] == "transaction"
    resource = parsed["resource"]
    assert resource["out_trade_no"] == "O2024050100001"
    assert resource["trade_state"] == "SUCCESS"
    assert resource["amount"]["total"] == 1234
    assert resource["amount"]["payer_total"] == 1234
    assert resource["attach"] == "order:1"
    assert resource["success_time"].endswith("+08:00")

    queried = client.query_order("O2024050100001")
    assert queried["trade_state"] == "SUCCESS"
    assert queried["transaction_id"] == resource["transaction_id"]
    by_id = client.query_order_by_transaction_id(resource["transaction_id"])
    assert by_id["out_trade_no"] == "O2024050100001"


def test_same_prepay_twice_is_idempotent_but_changed_params_are_refused(
    client: WeChatPayClient,
) -> None:
    first = place(client, "O-IDEM-1")
    assert place(client, "O-IDEM-1") == first
    with pytest.raises(WeChatPayError) as exc:
        place(client, "O-IDEM-1", amount_fen=999)
    assert (exc.value.status, exc.value.code) == (403, "OUT_TRADE_NO_USED")
    assert not exc.value.retryable


def test_native_prepay_close_and_paid_order_cannot_close(
    fake: FakeWeChatPay, client: WeChatPayClient
) -> None:
    code_url = client.native_prepay(
        out_trade_no="N-1", description="电影票", amount_fen=4500, time_expire=expire()
    )
    assert code_url.startswith("weixin://wxpay/bizpayurl?pr=")
    client.close_order("N-1")
    assert client.query_order("N-1")["trade_state"] == "CLOSED"
    with pytest.raises(WeChatPayError) as exc:
        client.native_prepay(
            out_trade_no="N-1", description="电影票", amount_fen=4500, time_expire=expire()
        )
    assert exc.value.code == "ORDER_CLOSED"

    client.native_prepay(
        out_trade_no="N-2", description="电影票", amount_fen=4500, time_expire=expire()
    )
    fake.pay("N-2")
    with pytest.raises(WeChatPayError) as exc:
        client.close_order("N-2")
    assert exc.value.code == "ORDERPAID"


def test_unknown_order_is_a_typed_404(client: WeChatPayClient) -> None:
    with pytest.raises(WeChatPayError) as exc:
        client.query_order("NOPE-1")
    assert (exc.value.status, exc.value.code) == (404, "ORDER_NOT_EXIST")


def test_expired_order_cannot_be_paid(
    fake: FakeWeChatPay, client: WeChatPayClient, clock: Clock
) -> None:
    place(client, "EXP-1")
    clock.advance(16 * 60)
    with pytest.raises(ValueError, match="expired"):
        fake.pay("EXP-1")


def test_jsapi_pay_params_verify_with_merchant_public_key(
    fake: FakeWeChatPay, client: WeChatPayClient, clock: Clock
) -> None:
    prepay_id = place(client, "JS-1")
    params = client.jsapi_pay_params(prepay_id)
    assert set(params) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
    assert params["appId"] == client.config.appid
    assert params["package"] == f"prepay_id={prepay_id}"
    assert params["signType"] == "RSA"
    assert params["timeStamp"] == str(int(clock()))
    public_key = fake.merchant(client.config.mchid).private_key.public_key()
    message = jsapi_sign_message(
        params["appId"], params["timeStamp"], params["nonceStr"], params["package"]
    )
    assert rsa_verify(public_key, message, params["paySign"])
    assert not rsa_verify(public_key, message.replace("prepay_id", "prepay_iD"), params["paySign"])


def test_time_expire_formatting() -> None:
    assert format_time_expire(datetime(2024, 5, 1, 2, 0, tzinfo=UTC)) == "2024-05-01T10:00:00+08:00"
    with pytest.raises(ValueError):
        format_time_expire(datetime(2024, 5, 1, 2, 0))


def test_amounts_must_be_positive_integer_fen(client: WeChatPayClient) -> None:
    for bad in (0, -1, 12.5, True):
        with pytest.raises(ValueError):
            place(client, "BAD-AMOUNT", amount_fen=bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- partner mode


def test_partner_jsapi_query_and_close(fake: FakeWeChatPay, partner: WeChatPayClient) -> None:
    with pytest.raises(ValueError, match="sub_mchid"):
        place(partner, "P-1")
    place(partner, "P-1", sub_mchid=SUB_A)
    sent = fake.requests[-1]
    assert sent.path == "/v3/pay/partner/transactions/jsapi"
    assert sent.body["sp_mchid"] == partner.config.sp_mchid
    assert sent.body["sp_appid"] == partner.config.sp_appid
    assert sent.body["sub_mchid"] == SUB_A
    assert sent.body["payer"] == {"sp_openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}

    queried = partner.query_order("P-1", sub_mchid=SUB_A)
    assert queried["sub_mchid"] == SUB_A
    assert fake.requests[-1].query == {"sp_mchid": partner.config.mchid, "sub_mchid": SUB_A}
    with pytest.raises(WeChatPayError) as exc:
        partner.query_order("P-1", sub_mchid=SUB_B)  # another sub-merchant's number space
    assert exc.value.status == 404

    note = fake.pay("P-1")
    resource = partner.parse_notification(note.headers, note.body)["resource"]
    assert resource["sub_mchid"] == SUB_A
    assert resource["payer"] == {"sp_openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}

    partner.native_prepay(
        out_trade_no="P-2",
        description="洗剪吹",
        amount_fen=8800,
        time_expire=expire(),
        sub_mchid=SUB_B,
    )
    partner.close_order("P-2", sub_mchid=SUB_B)
    assert fake.requests[-1].body == {"sp_mchid": partner.config.mchid, "sub_mchid": SUB_B}
    assert partner.query_order("P-2", sub_mchid=SUB_B)["trade_state"] == "CLOSED"


def test_partner_sub_openid_needs_sub_appid(partner: WeChatPayClient) -> None:
    with pytest.raises(ValueError, match="sub_appid"):
        place(partner, "P-3", sub_mchid=SUB_A, openid_of="sub")
    place(partner, "P-3", sub_mchid=SUB_A, sub_appid="wxsubapp000000001", openid_of="sub")


def test_direct_client_refuses_sub_mchid(client: WeChatPayClient) -> None:
    with pytest.raises(ValueError, match="direct mode"):
        client.query_order("X-1", sub_mchid=SUB_A)


# --------------------------------------------------------------------------- combined payment


def combine_subs() -> list[CombineSubOrder]:
    return [
        CombineSubOrder(
            out_trade_no="C1-A",
            amount_fen=1999,
            description="火锅双人餐",
            attach="order:A",
            sub_mchid=SUB_A,
            profit_sharing=True,
        ),
        CombineSubOrder(
            out_trade_no="C1-B",
            amount_fen=3001,
            description="蓝牙耳机",
            attach="order:B",
            sub_mchid=SUB_B,
        ),
    ]


def test_combine_payment_with_two_sub_merchants(
    fake: FakeWeChatPay, partner: WeChatPayClient
) -> None:
    prepay_id = partner.combine_jsapi_prepay(
        combine_out_trade_no="C1",
        sub_orders=combine_subs(),
        payer_openid="oCombinePayer",
        time_expire=expire(),
    )
    sent = fake.requests[-1]
    assert sent.path == "/v3/combine-transactions/jsapi"
    assert sent.body["combine_mchid"] == partner.config.mchid
    assert sent.body["combine_appid"] == partner.config.appid
    assert sent.body["combine_payer_info"] == {"openid": "oCombinePayer"}
    assert sent.body["sub_orders"][0] == {
        "mchid": partner.config.mchid,
        "attach": "order:A",
        "amount": {"total_amount": 1999, "currency": "CNY"},
        "out_trade_no": "C1-A",
        "description": "火锅双人餐",
        "sub_mchid": SUB_A,
        "settle_info": {"profit_sharing": True},
    }
    assert partner.jsapi_pay_params(prepay_id)["package"] == f"prepay_id={prepay_id}"

    before = partner.query_combine_order("C1")
    assert [s["trade_state"] for s in before["sub_orders"]] == ["NOTPAY", "NOTPAY"]

    note = fake.pay("C1")
    parsed = partner.parse_notification(note.headers, note.body)
    resource = parsed["resource"]
    assert resource["combine_out_trade_no"] == "C1"
    subs = {s["sub_mchid"]: s for s in resource["sub_orders"]}
    assert subs[SUB_A]["amount"]["total_amount"] == 1999
    assert subs[SUB_B]["amount"]["total_amount"] == 3001
    assert {s["trade_state"] for s in subs.values()} == {"SUCCESS"}
    assert subs[SUB_A]["transaction_id"] != subs[SUB_B]["transaction_id"]

    after = partner.query_combine_order("C1")
    assert [s["trade_state"] for s in after["sub_orders"]] == ["SUCCESS", "SUCCESS"]
    # Each sub-order is an ordinary order of its sub-merchant: refundable on its own.
    assert partner.query_order("C1-B", sub_mchid=SUB_B)["trade_state"] == "SUCCESS"
    refund = partner.refund(
        out_refund_no="R-C1-B",
        out_trade_no="C1-B",
        refund_fen=3001,
        total_fen=3001,
        sub_mchid=SUB_B,
    )
    assert refund["status"] == "PROCESSING"
    with pytest.raises(ValueError, match="part of C1"):
        fake.pay("C1-A")


def test_combine_native_and_close(fake: FakeWeChatPay, partner: WeChatPayClient) -> None:
    subs = [
        CombineSubOrder(
            out_trade_no="C2-A", amount_fen=100, description="a", attach="x", sub_mchid=SUB_A
        ),
        CombineSubOrder(
            out_trade_no="C2-B", amount_fen=200, description="b", attach="y", sub_mchid=SUB_B
        ),
    ]
    code_url = partner.combine_native_prepay(
        combine_out_trade_no="C2", sub_orders=subs, time_expire=expire(), payer_client_ip="1.2.3.4"
    )
    assert code_url.startswith("weixin://")
    partner.close_combine_order("C2", subs)
    assert fake.requests[-1].body["sub_orders"][1] == {
        "mchid": partner.config.mchid,
        "out_trade_no": "C2-B",
        "sub_mchid": SUB_B,
    }
    assert [s["trade_state"] for s in partner.query_combine_order("C2")["sub_orders"]] == [
        "CLOSED",
        "CLOSED",
    ]
    with pytest.raises(ValueError, match="2 to 50"):
        partner.combine_native_prepay(
            combine_out_trade_no="C3",
            sub_orders=subs[:1],
            time_expire=expire(),
            payer_client_ip="1.2.3.4",
        )


# --------------------------------------------------------------------------- refunds


def test_refund_lifecycle(fake: FakeWeChatPay, client: WeChatPayClient) -> None:
    place(client, "R-ORDER", amount_fen=10000)
    with pytest.raises(WeChatPayError) as exc:
        client.refund(out_refund_no="RF-0", out_trade_no="R-ORDER", refund_fen=1, total_fen=10000)
    assert exc.value.code == "INVALID_REQUEST"  # not paid yet
    fake.pay("R-ORDER")

    refund = client.refund(
        out_refund_no="RF-1",
        out_trade_no="R-ORDER",
        refund_fen=3000,
        total_fen=10000,
        reason="不想要了",
    )
    assert refund["status"] == "PROCESSING"
    assert refund["amount"]["refund"] == 3000
    assert refund["amount"]["total"] == 10000
    assert fake.requests[-1].body["notify_url"] == client.config.notify_url
    # A retry with the same number is the same refund, not a second one.
    again = client.refund(
        out_refund_no="RF-1", out_trade_no="R-ORDER", refund_fen=3000, total_fen=10000
    )
    assert again["refund_id"] == refund["refund_id"]
    assert client.query_order("R-ORDER")["trade_state"] == "REFUND"

    with pytest.raises(WeChatPayError) as exc:
        client.refund(
            out_refund_no="RF-2", out_trade_no="R-ORDER", refund_fen=7001, total_fen=10000
        )
    assert exc.value.status == 400  # more than what is left

    assert client.query_refund("RF-1")["status"] == "PROCESSING"
    note = fake.complete_refund("RF-1")
    parsed = client.parse_notification(note.headers, note.body)
    assert parsed["event_type"] == "REFUND.SUCCESS"
    assert parsed["resource_original_type"] == "refund"
    assert parsed["resource"]["out_refund_no"] == "RF-1"
    assert parsed["resource"]["refund_status"] == "SUCCESS"
    assert parsed["resource"]["amount"]["refund"] == 3000
    assert parsed["resource"]["mchid"] == client.config.mchid
    assert client.query_refund("RF-1")["status"] == "SUCCESS"

    rest = client.refund(
        out_refund_no="RF-3",
        transaction_id=parsed["resource"]["transaction_id"],
        refund_fen=7000,
        total_fen=10000,
    )
    assert rest["status"] == "PROCESSING"
    with pytest.raises(WeChatPayError) as exc:
        client.query_refund("RF-404")
    assert exc.value.code == "RESOURCE_NOT_EXISTS"


def test_refund_arguments_are_checked_locally(client: WeChatPayClient) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        client.refund(out_refund_no="X", refund_fen=1, total_fen=1)
    with pytest.raises(ValueError, match="exceed"):
        client.refund(out_refund_no="X", out_trade_no="Y", refund_fen=2, total_fen=1)


def test_partner_refund_carries_sub_mchid(fake: FakeWeChatPay, partner: WeChatPayClient) -> None:
    place(partner, "PR-1", sub_mchid=SUB_A)
    fake.pay("PR-1")
    partner.refund(
        out_refund_no="PRF-1",
        out_trade_no="PR-1",
        refund_fen=1234,
        total_fen=1234,
        sub_mchid=SUB_A,
    )
    assert fake.requests[-1].body["sub_mchid"] == SUB_A
    assert partner.query_refund("PRF-1", sub_mchid=SUB_A)["status"] == "PROCESSING"
    assert fake.requests[-1].query == {"sub_mchid": SUB_A}
    note = fake.complete_refund("PRF-1", status="ABNORMAL")
    resource = partner.parse_notification(note.headers, note.body)["resource"]
    assert (resource["sp_mchid"], resource["sub_mchid"]) == (partner.config.mchid, SUB_A)
    assert resource["refund_status"] == "ABNORMAL"


# --------------------------------------------------------------------------- profit sharing


def test_profit_sharing_and_unfreeze(fake: FakeWeChatPay, partner: WeChatPayClient) -> None:
    place(partner, "PS-1", amount_fen=10000, sub_mchid=SUB_A, profit_sharing=True)
    assert fake.requests[-1].body["settle_info"] == {"profit_sharing": True}
    transaction_id = fake.pay("PS-1").resource["transaction_id"]
    full_name = merchant_name(partner.config.mchid)

    partner.add_profit_sharing_receiver(
        type="MERCHANT_ID",
        account=partner.config.mchid,
        relation_type="SERVICE_PROVIDER",
        name=full_name,
        sub_mchid=SUB_A,
    )
    assert fake.received_names == [full_name]  # encrypted on the wire, readable by WeChat
    added = fake.requests[-1]
    assert added.body["name"] != full_name
    # A MERCHANT_ID receiver without its full name, or with another, is refused.
    with pytest.raises(ValueError, match="full name"):
        partner.add_profit_sharing_receiver(
            type="MERCHANT_ID",
            account=partner.config.mchid,
            relation_type="SERVICE_PROVIDER",
            sub_mchid=SUB_A,
        )
    with pytest.raises(WeChatPayError) as refused:
        partner.add_profit_sharing_receiver(
            type="MERCHANT_ID",
            account=partner.config.mchid,
            relation_type="SERVICE_PROVIDER",
            name="别的公司",
            sub_mchid=SUB_A,
        )
    assert (refused.value.status, refused.value.code) == (400, "INVALID_REQUEST")

    commission = ProfitSharingReceiver(
        type="MERCHANT_ID",
        account=partner.config.mchid,
        amount_fen=600,
        description="平台佣金",
        name=full_name,
    )
    shared = partner.profit_sharing(
        transaction_id=transaction_id,
        out_order_no="PSO-1",
        receivers=[commission],
        unfreeze_unsplit=False,
        sub_mchid=SUB_A,
    )
    sent = fake.requests[-1].body
    assert sent["receivers"][0]["name"] != full_name
    assert sent["receivers"][0]["amount"] == 600
    assert sent["sub_mchid"] == SUB_A
    assert shared["state"] == "PROCESSING"
    assert shared["receivers"][0]["amount"] == 600

    fake.finish_profit_sharing("PSO-1")
    queried = partner.query_profit_sharing("PSO-1", transaction_id=transaction_id, sub_mchid=SUB_A)
    assert queried["state"] == "FINISHED"
    assert queried["receivers"][0]["result"] == "SUCCESS"

    too_much = ProfitSharingReceiver(
        type="MERCHANT_ID", account=partner.config.mchid, amount_fen=9401, description="超额"
    )
    with pytest.raises(WeChatPayError) as exc:
        partner.profit_sharing(
            transaction_id=transaction_id,
            out_order_no="PSO-2",
            receivers=[too_much],
            unfreeze_unsplit=False,
            sub_mchid=SUB_A,
        )
    assert exc.value.code == "NOT_ENOUGH"

    released = partner.unfreeze_profit_sharing(
        transaction_id=transaction_id,
        out_order_no="PSO-3",
        description="解冻全部剩余资金",
        sub_mchid=SUB_A,
    )
    assert released["receivers"][0]["amount"] == 9400
    assert released["receivers"][0]["account"] == SUB_A
    with pytest.raises(WeChatPayError) as exc:
        partner.profit_sharing(
            transaction_id=transaction_id,
            out_order_no="PSO-4",
            receivers=[commission],
            unfreeze_unsplit=True,
            sub_mchid=SUB_A,
        )
    assert exc.value.status == 400


def test_profit_sharing_needs_the_order_flag(fake: FakeWeChatPay, client: WeChatPayClient) -> None:
    place(client, "PS-NOFLAG")
    transaction_id = fake.pay("PS-NOFLAG").resource["transaction_id"]
    receiver = ProfitSharingReceiver(
        type="PERSONAL_OPENID", account="oReceiver", amount_fen=1, description="分给个人"
    )
    with pytest.raises(WeChatPayError) as exc:
        client.profit_sharing(
            transaction_id=transaction_id,
            out_order_no="PSO-X",
            receivers=[receiver],
            unfreeze_unsplit=True,
        )
    assert exc.value.code == "INVALID_REQUEST"


# --------------------------------------------------------------------------- signatures


def test_request_signed_with_the_wrong_merchant_key_is_rejected(
    fake: FakeWeChatPay, clock: Clock
) -> None:
    wrong = fake.merchant_config(private_key=private_key_pem(fake_rsa_key("not-the-merchant")))
    with WeChatPayClient(wrong, clock=clock) as c, pytest.raises(WeChatPayError) as exc:
        c.query_order("ANY-1")
    assert (exc.value.status, exc.value.code) == (401, "SIGN_ERROR")

    wrong_serial = fake.merchant_config(merchant_serial_no="0" * 40)
    with WeChatPayClient(wrong_serial, clock=clock) as c, pytest.raises(WeChatPayError) as exc:
        c.query_order("ANY-1")
    assert exc.value.code == "SIGN_ERROR"


def test_request_with_a_stale_timestamp_is_rejected(fake: FakeWeChatPay, clock: Clock) -> None:
    late = Clock(T0 - timedelta(minutes=6))
    with (
        WeChatPayClient(fake.merchant_config(), clock=late) as c,
        pytest.raises(WeChatPayError) as exc,
    ):
        c.query_order("ANY-1")
    assert exc.value.code == "SIGN_ERROR"


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("signature", "signature"),
        ("body", "signature"),
        ("serial", "serial"),
        ("timestamp", "timestamp"),
    ],
)
def test_tampered_responses_are_rejected(
    fake: FakeWeChatPay, client: WeChatPayClient, kind: Any, reason: str
) -> None:
    place(client, "TAMPER-1")
    fake.tamper_next_response(kind)
    with pytest.raises(WeChatPayVerificationError) as exc:
        client.query_order("TAMPER-1")
    assert exc.value.reason == reason
    assert client.query_order("TAMPER-1")["trade_state"] == "NOTPAY"  # next answer is fine


def test_platform_certificate_mode(clock: Clock) -> None:
    with FakeWeChatPay(platform_mode="certificate", clock=clock) as fake:
        config = fake.merchant_config()
        assert "BEGIN CERTIFICATE" in config.platform_public_key
        assert config.platform_serial == ""  # derived from the certificate
        with WeChatPayClient(config, clock=clock) as c:
            place(c, "CERT-1")
            note = fake.pay("CERT-1")
            assert c.parse_notification(note.headers, note.body)["resource"]["trade_state"] == (
                "SUCCESS"
            )


# --------------------------------------------------------------------------- notifications


PAID = {"out_trade_no": "N-1", "trade_state": "SUCCESS", "amount": {"total": 1, "payer_total": 1}}


def test_notification_with_a_bad_signature_is_rejected(
    fake: FakeWeChatPay, client: WeChatPayClient
) -> None:
    headers, body = fake.build_notification(
        "TRANSACTION.SUCCESS", PAID, sign_key=fake_rsa_key("attacker")
    )
    with pytest.raises(WeChatPayVerificationError) as exc:
        client.parse_notification(headers, body)
    assert exc.value.reason == "signature"

    headers, body = fake.build_notification("TRANSACTION.SUCCESS", PAID)
    altered = body.replace(b"TRANSACTION.SUCCESS", b"TRANSACTION.SUCCESZ")
    with pytest.raises(WeChatPayVerificationError) as exc:
        client.parse_notification(headers, altered)
    assert exc.value.reason == "signature"

    probe = dict(headers, **{"Wechatpay-Signature": "WECHATPAY/SIGNTEST/" + "A" * 20})
    with pytest.raises(WeChatPayVerificationError):
        client.parse_notification(probe, body)  # WeChat's probe must never be accepted


def test_notification_with_a_wrong_serial_is_rejected(
    fake: FakeWeChatPay, client: WeChatPayClient
) -> None:
    headers, body = fake.build_notification(
        "TRANSACTION.SUCCESS", PAID, serial="PUB_KEY_ID_0000000000000000000000000001"
    )
    with pytest.raises(WeChatPayVerificationError) as exc:
        client.parse_notification(headers, body)
    assert exc.value.reason == "serial"


def test_notification_timestamp_window(
    fake: FakeWeChatPay, client: WeChatPayClient, clock: Clock
) -> None:
    now = int(clock())
    for offset in (-301, 301, -3600):
        headers, body = fake.build_notification("TRANSACTION.SUCCESS", PAID, timestamp=now + offset)
        with pytest.raises(WeChatPayVerificationError) as exc:
            client.parse_notification(headers, body)
        assert exc.value.reason == "timestamp"
    headers, body = fake.build_notification("TRANSACTION.SUCCESS", PAID, timestamp=now - 299)
    assert client.parse_notification(headers, body)["resource"]["out_trade_no"] == "N-1"


def test_notification_with_a_tampered_ciphertext_is_rejected(
    fake: FakeWeChatPay, client: WeChatPayClient
) -> None:
    """A correctly signed envelope whose ciphertext was altered still fails (GCM tag)."""
    _, body = fake.build_notification("TRANSACTION.SUCCESS", PAID)
    envelope = json.loads(body)
    raw = bytearray(base64.b64decode(envelope["resource"]["ciphertext"]))
    raw[0] ^= 0x01
    envelope["resource"]["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    resigned = json.dumps(envelope).encode()
    headers, _ = fake.build_notification("TRANSACTION.SUCCESS", PAID)
    # Re-sign the altered body with the genuine platform key, as only the AEAD can catch it.
    headers["Wechatpay-Signature"] = rsa_sign(
        fake.platform_private_key,
        response_message(headers["Wechatpay-Timestamp"], headers["Wechatpay-Nonce"], resigned),
    )
    with pytest.raises(WeChatPayVerificationError) as exc:
        client.parse_notification(headers, resigned)
    assert exc.value.reason == "decrypt"


def test_notification_encrypted_with_another_apiv3_key_is_rejected(
    fake: FakeWeChatPay, client: WeChatPayClient
) -> None:
    headers, body = fake.build_notification("TRANSACTION.SUCCESS", PAID, apiv3_key="x" * 32)
    with pytest.raises(WeChatPayVerificationError) as exc:
        client.parse_notification(headers, body)
    assert exc.value.reason == "decrypt"


def test_notification_missing_headers_and_framework_header_styles(
    fake: FakeWeChatPay, client: WeChatPayClient, clock: Clock
) -> None:
    headers, body = fake.build_notification("TRANSACTION.SUCCESS", PAID)
    with pytest.raises(WeChatPayVerificationError) as exc:
        client.parse_notification({}, body)
    assert exc.value.reason == "malformed"
    lower = {k.lower(): v for k, v in headers.items()}
    wsgi = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}
    for style in (lower, wsgi):
        assert client.parse_notification(style, body)["resource"]["trade_state"] == "SUCCESS"
    # The module-level function does the same from a bare config.
    parsed = parse_notification(client.config, headers, body, now=clock())
    assert parsed["resource"]["out_trade_no"] == "N-1"


def test_aes_gcm_round_trip() -> None:
    key = b"0123456789abcdef0123456789abcdef"
    ciphertext = aes_gcm_encrypt(key, "abcdefghijkl", "支付成功".encode(), "transaction")
    assert aes_gcm_decrypt(key, "abcdefghijkl", ciphertext, "transaction").decode() == "支付成功"
    with pytest.raises(InvalidTag):
        aes_gcm_decrypt(key, "abcdefghijkl", ciphertext, "refund")  # associated data is bound


def test_notification_answers() -> None:
    ok = notification_success()
    assert (ok.status_code, ok.body) == (204, b"")
    fail = notification_failure("验签失败", 401)
    assert fail.status_code == 401
    assert json.loads(fail.body) == {"code": "FAIL", "message": "验签失败"}
    with pytest.raises(ValueError):
        notification_failure("x", 200)


def test_deliver_into_an_app_under_test(fake: FakeWeChatPay, client: WeChatPayClient) -> None:
    """The shape later tests use: the fake POSTs into an ASGI app through a TestClient."""
    seen: list[dict[str, Any]] = []

    async def notify(request: Request) -> Response:
        body = await request.body()
        try:
            seen.append(client.parse_notification(request.headers, body))
        except WeChatPayVerificationError as exc:
            answer = notification_failure(str(exc), 401)
        else:
            answer = notification_success()
        return Response(answer.body, answer.status_code, media_type=answer.media_type)

    app = Starlette(routes=[Route("/notify", notify, methods=["POST"])])
    place(client, "DELIVER-1")
    with TestClient(app) as http:
        note = fake.pay("DELIVER-1", deliver=True, client=http, notify_url="/notify")
        assert note.response is not None and note.response.status_code == 204
        forged = fake.build_notification(
            "TRANSACTION.SUCCESS", note.resource, sign_key=fake_rsa_key("attacker")
        )
        refused = fake.deliver("/notify", forged, client=http)
        assert refused.status_code == 401
        assert refused.json()["code"] == "FAIL"
    assert [n["resource"]["out_trade_no"] for n in seen] == ["DELIVER-1"]


# --------------------------------------------------------------------------- failures


def test_system_error_is_typed_and_retryable(fake: FakeWeChatPay, client: WeChatPayClient) -> None:
    fake.fail_next(500, "SYSTEM_ERROR", "系统繁忙")
    with pytest.raises(WeChatPayError) as exc:
        place(client, "RETRY-1")
    assert (exc.value.status, exc.value.code, exc.value.message) == (
        500,
        "SYSTEM_ERROR",
        "系统繁忙",
    )
    assert exc.value.retryable
    assert place(client, "RETRY-1").startswith("wx")


def test_refund_applied_but_answer_lost_retries_to_the_same_refund(
    fake: FakeWeChatPay, client: WeChatPayClient
) -> None:
    place(client, "LOST-1")
    fake.pay("LOST-1")
    fake.fail_next(500, path_contains="/refund/", after=True)
    with pytest.raises(WeChatPayError):
        client.refund(out_refund_no="LRF-1", out_trade_no="LOST-1", refund_fen=1234, total_fen=1234)
    retried = client.refund(
        out_refund_no="LRF-1", out_trade_no="LOST-1", refund_fen=1234, total_fen=1234
    )
    assert retried["amount"]["refund"] == 1234
    assert len(fake.refunds) == 1


def test_timeouts_and_refused_connections_are_network_errors(
    fake: FakeWeChatPay, clock: Clock
) -> None:
    with WeChatPayClient(fake.merchant_config(timeout=0.2), clock=clock) as c:
        fake.delay_next(1.0)
        with pytest.raises(WeChatPayNetworkError) as exc:
            c.query_order("SLOW-1")
        assert exc.value.retryable
    config = fake.merchant_config(base_url=f"http://127.0.0.1:{closed_port()}")
    with WeChatPayClient(config, clock=clock) as c, pytest.raises(WeChatPayNetworkError):
        c.query_order("DOWN-1")


def closed_port() -> int:
    """A port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- configuration


def test_config_validation_and_repr(fake: FakeWeChatPay) -> None:
    config = fake.merchant_config()
    assert "PRIVATE" not in repr(config) and config.apiv3_key not in repr(config)
    with pytest.raises(ValueError, match="32 bytes"):
        fake.merchant_config(apiv3_key="short")
    bare = WeChatPayConfig(
        mchid="1",
        appid="wx1",
        private_key=config.private_key,
        merchant_serial_no="S",
        apiv3_key="k" * 32,
        platform_public_key=fake.platform_public_key_pem,
    )
    with pytest.raises(ValueError, match="platform_serial"):
        WeChatPayClient(bare)
    assert isinstance(load_private_key(config.private_key), rsa.RSAPrivateKey)


# --------------------------------------------------------------------------- bills

SAMPLE_BILL = (
    "\ufeff交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,"
    "交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,"
    "充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\r\n"
    "`2024-04-30 09:15:02,`wx8888888888888888,`1900000100,`1900000201,`,"
    "`4200002154202404301234567890,`O20240430000001,`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`JSAPI,"
    "`SUCCESS,`OTHERS,`CNY,`0.29,`0.00,`0,`0,`0.00,`0.00,`,`,`双人套餐,`order:1,`0.00,`0.60%,"
    "`0.29,`0.00,`\r\n"
    "`2024-04-30 12:01:59,`wx8888888888888888,`1900000100,`1900000202,`,"
    "`4200002154202404301234567891,`O20240430000002,`oUpF8uMuAJO_M2pxb1Q9zNjWeS6p,`NATIVE,"
    "`SUCCESS,`CMB_DEBIT,`CNY,`19999.99,`0.00,`0,`0,`0.00,`0.00,`,`,`蓝牙耳机,`,`120.00,"
    "`0.60%,`19999.99,`0.00,`\r\n"
    "`2024-04-30 18:30:00,`wx8888888888888888,`1900000100,`1900000201,`,"
    "`4200002154202404301234567890,`O20240430000001,`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`JSAPI,"
    "`REFUND,`OTHERS,`CNY,`0.00,`0.00,`50300208052024043012345678901,`RF20240430001,`0.10,"
    "`0.00,`ORIGINAL,`SUCCESS,`双人套餐,`order:1,`0.00,`0.60%,`0.00,`0.10,`\r\n"
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r\n"
    "`3,`20000.28,`0.10,`0.00,`120.00,`20000.28,`0.10\r\n"
)


def test_parse_trade_bill_sample_to_exact_fen() -> None:
    bill = parse_trade_bill(SAMPLE_BILL.encode("utf-8"))
    assert len(bill.rows) == 3
    first, second, refund = bill.rows
    assert first["交易时间"] == "2024-04-30 09:15:02"
    assert first["公众账号ID"] == "wx8888888888888888"
    assert first["商户号"] == "1900000100"
    assert first["特约商户号"] == "1900000201"
    assert first["微信订单号"] == "4200002154202404301234567890"
    assert first["商户订单号"] == "O20240430000001"
    assert first["交易状态"] == "SUCCESS"
    assert first["应结订单金额"] == 29  # float("0.29") * 100 == 28.999999999999996
    assert first["订单金额"] == 29
    assert first["费率"] == "0.60%"
    assert first["设备号"] == ""
    assert second["应结订单金额"] == 1999999
    assert second["手续费"] == 12000
    assert refund["交易状态"] == "REFUND"
    assert refund["商户退款单号"] == "RF20240430001"
    assert refund["退款金额"] == 10
    assert refund["申请退款金额"] == 10
    assert bill.summary == {
        "总交易单数": 3,
        "应结订单总金额": 2000028,
        "退款总金额": 10,
        "充值券退款总金额": 0,
        "手续费总金额": 12000,
        "订单总金额": 2000028,
        "申请退款总金额": 10,
    }
    assert sum(int(r["应结订单金额"]) for r in bill.rows) == bill.summary["应结订单总金额"]
    assert all(isinstance(v, int) for r in bill.rows for k, v in r.items() if "金额" in k)


def test_parse_trade_bill_rejects_broken_files() -> None:
    with pytest.raises(ValueError, match="summary"):
        parse_trade_bill(SAMPLE_BILL.split("总交易单数")[0])
    with pytest.raises(ValueError, match="fields"):
        parse_trade_bill(SAMPLE_BILL.replace("`双人套餐,`order:1", "`双人套餐", 1))
    with pytest.raises(ValueError, match="empty"):
        parse_trade_bill("")


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("0.29", 29),
        ("0.1", 10),
        ("12", 1200),
        ("-0.01", -1),
        ("19999.99", 1999999),
        ("0.60000", 60),
        ("1.10", 110),
    ],
)
def test_yuan_to_fen_is_exact(text: str, fen: int) -> None:
    assert yuan_to_fen(text) == fen


@pytest.mark.parametrize("text", ["0.001", "1,000.00", "abc", "1e3", "", "0.005"])
def test_yuan_to_fen_refuses_what_is_not_whole_fen(text: str) -> None:
    with pytest.raises(ValueError):
        yuan_to_fen(text)


def test_trade_bill_download_from_the_fake(
    fake: FakeWeChatPay, client: WeChatPayClient, clock: Clock
) -> None:
    place(client, "BILL-1", amount_fen=10000)
    place(client, "BILL-2", amount_fen=29)
    fake.pay("BILL-1")
    clock.advance(60)
    fake.pay("BILL-2")
    client.refund(out_refund_no="BRF-1", out_trade_no="BILL-1", refund_fen=2500, total_fen=10000)
    clock.advance(60)
    fake.complete_refund("BRF-1")

    # WeChat Pay generates a day's bill after 10:00 (Beijing) the next day.
    with pytest.raises(WeChatPayError) as early:
        client.apply_trade_bill(date(2024, 5, 1))
    assert (early.value.status, early.value.code) == (400, "STATEMENT_CREATING")
    clock.now = datetime(2024, 5, 2, 10, 0, tzinfo=CHINA_TZ).timestamp()
    bill = client.fetch_trade_bill(date(2024, 5, 1))
    assert [(r["商户订单号"], r["交易状态"]) for r in bill.rows] == [
        ("BILL-1", "SUCCESS"),
        ("BILL-2", "SUCCESS"),
        ("BILL-1", "REFUND"),
    ]
    assert [r["应结订单金额"] for r in bill.rows] == [10000, 29, 0]
    assert bill.rows[2]["退款金额"] == 2500
    assert bill.rows[0]["手续费"] == 60
    assert bill.summary["总交易单数"] == 3
    assert bill.summary["应结订单总金额"] == 10029
    assert bill.summary["退款总金额"] == 2500
    assert fake.requests[-2].query["bill_date"] == "2024-05-01"

    ticket = client.apply_trade_bill(date(2024, 5, 1), gzip_file=True)
    assert parse_trade_bill(client.download_bill(ticket)).summary == bill.summary

    forged = BillDownloadTicket(ticket.download_url, ticket.hash_type, "0" * 40)
    with pytest.raises(WeChatPayVerificationError):
        client.download_bill(forged)
    elsewhere = BillDownloadTicket("https://evil.example.com/file?token=1", "SHA1", "0" * 40)
    with pytest.raises(WeChatPayVerificationError):
        client.download_bill(elsewhere)

    with pytest.raises(WeChatPayError) as exc:
        client.apply_trade_bill(date(2024, 4, 1))
    assert exc.value.code == "NO_STATEMENT_EXIST"


def test_trade_bill_override(fake: FakeWeChatPay, client: WeChatPayClient) -> None:
    fake.set_trade_bill(date(2024, 4, 30), SAMPLE_BILL.lstrip("\ufeff"))
    bill = client.fetch_trade_bill(date(2024, 4, 30))
    assert bill.summary["应结订单总金额"] == 2000028


def test_http_client_can_be_injected(fake: FakeWeChatPay, clock: Clock) -> None:
    seen: list[str] = []

    def hook(request: httpx.Request) -> None:
        seen.append(request.headers["Authorization"].split(" ", 1)[0])

    with httpx.Client(event_hooks={"request": [hook]}, timeout=5) as http:
        c = WeChatPayClient(fake.merchant_config(), http_client=http, clock=clock)
        place(c, "HTTP-1")
        c.close()  # does not close a client it does not own
        place(c, "HTTP-2")
    assert seen == ["WECHATPAY2-SHA256-RSA2048"] * 2
