"""The ``wechatpay`` provider against the local fake WeChat Pay over real HTTP (no database)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from o2o.config import Settings
from o2o.payments.providers import (
    EVENT_CLOSED,
    EVENT_FAILED,
    EVENT_PENDING,
    EVENT_SUCCEEDED,
    REFUND_ABNORMAL,
    REFUND_FAILED,
    REFUND_PROCESSING,
    REFUND_SUCCEEDED,
    NotificationRejected,
    PaymentEvent,
    PaymentProvider,
    PaymentRequest,
    ProviderRefused,
    ProviderUnavailable,
    RefundEvent,
    RefundRequest,
    SubOrder,
)
from o2o.payments.wechatpay import WeChatPayError
from o2o.payments.wechatpay_crypto import jsapi_sign_message, response_message, rsa_sign, rsa_verify
from o2o.payments.wechatpay_provider import (
    NOTIFY_PATH,
    WeChatPayProvider,
    WeChatPaySettings,
    build_provider,
    payment_status,
    refund_status,
)
from o2o.timeutil import CHINA_TZ
from tests.fakes.wechatpay_server import FakeWeChatPay, fake_rsa_key

T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=CHINA_TZ)
SUB_A = "1900000201"
SUB_B = "1900000202"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def settings_from(env: dict[str, str], **overrides: Any) -> WeChatPaySettings:
    values: dict[str, Any] = {k.removeprefix("O2O_WECHATPAY_").lower(): v for k, v in env.items()}
    return WeChatPaySettings(**{**values, **overrides})


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
def direct(fake: FakeWeChatPay, clock: Clock) -> Iterator[WeChatPayProvider]:
    provider = WeChatPayProvider(settings_from(fake.provider_env()), clock=clock)
    yield provider
    provider.close_client()


@pytest.fixture
def partner(fake: FakeWeChatPay, clock: Clock) -> Iterator[WeChatPayProvider]:
    provider = WeChatPayProvider(settings_from(fake.provider_env(partner=True)), clock=clock)
    yield provider
    provider.close_client()


def payment(
    no: str,
    *orders: tuple[str, int, str | None],
    expires_at: datetime | None = None,
) -> PaymentRequest:
    subs = tuple(
        SubOrder(order_no=o, amount_fen=fen, description=f"订单 {o}", sub_mchid=sub)
        for o, fen, sub in orders
    )
    return PaymentRequest(
        payment_no=no,
        amount_fen=sum(s.amount_fen for s in subs),
        description="火锅双人餐",
        expires_at=expires_at or T0 + timedelta(minutes=15),
        sub_orders=subs,
    )


def single(no: str = "P20240501001", fen: int = 1234, sub: str | None = None) -> PaymentRequest:
    return payment(no, (f"{no}-O1", fen, sub))


def combined(no: str = "P20240501C01") -> PaymentRequest:
    return payment(no, (f"{no}-A", 1999, SUB_A), (f"{no}-B", 3001, SUB_B))


def verify_pay_sign(fake: FakeWeChatPay, mchid: str, params: dict[str, str]) -> bool:
    message = jsapi_sign_message(
        params["appId"], params["timeStamp"], params["nonceStr"], params["package"]
    )
    public_key = fake.merchant(mchid).private_key.public_key()
    return rsa_verify(public_key, message, params["paySign"])


# --------------------------------------------------------------------------- settings


def test_it_is_a_payment_provider(direct: WeChatPayProvider) -> None:
    provider: PaymentProvider = direct
    assert provider.name == "wechatpay"


def test_settings_from_the_environment(
    fake: FakeWeChatPay, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = fake.provider_env()
    key_file = tmp_path / "apiclient_key.pem"
    key_file.write_text(env["O2O_WECHATPAY_PRIVATE_KEY"])
    pub_file = tmp_path / "pub_key.pem"
    pub_file.write_text(env["O2O_WECHATPAY_PUBLIC_KEY"])
    env.pop("O2O_WECHATPAY_NOTIFY_URL")
    env["O2O_WECHATPAY_PRIVATE_KEY"] = str(key_file)  # a path
    env["O2O_WECHATPAY_PUBLIC_KEY"] = str(pub_file)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(public_base_url="https://o2o.example.cn/")
    wechat = WeChatPaySettings.from_settings(settings)
    assert wechat.enabled, wechat.problems()
    assert wechat.notify_url == "https://o2o.example.cn" + NOTIFY_PATH
    assert wechat.notify_url.endswith("/api/v1/payments/notify/wechatpay")
    assert wechat.mode == "direct"
    config = wechat.to_config()
    assert config.private_key.startswith("-----BEGIN PRIVATE KEY-----")
    assert config.platform_serial == fake.platform_serial
    assert config.base_url == fake.base_url
    # Secrets stay out of reprs and logs.
    assert env["O2O_WECHATPAY_APIV3_KEY"] not in repr(wechat)
    provider = build_provider(settings)
    assert isinstance(provider, WeChatPayProvider)
    assert provider.config.notify_url == wechat.notify_url
    provider.close_client()

    # A PEM squeezed into one line with \n escapes, as .env files and CI secrets often hold it.
    one_line = key_file.read_text().replace("\n", "\\n")
    monkeypatch.setenv("O2O_WECHATPAY_PRIVATE_KEY", one_line)
    assert WeChatPaySettings.from_settings(settings).to_config().private_key.count("\n") > 3


def test_settings_not_configured_or_incomplete(
    fake: FakeWeChatPay, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in fake.provider_env():
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    empty = WeChatPaySettings.from_settings(settings)
    assert not empty.enabled
    assert empty.notify_url == "http://127.0.0.1:8000" + NOTIFY_PATH
    assert build_provider(settings) is None
    with pytest.raises(ValueError, match="not configured"):
        WeChatPayProvider(empty)

    env = fake.provider_env()
    complete = settings_from(env)
    assert complete.enabled
    for missing, hint in [
        ("O2O_WECHATPAY_MCHID", "MCHID"),
        ("O2O_WECHATPAY_APPID", "APPID"),
        ("O2O_WECHATPAY_PRIVATE_KEY", "PRIVATE_KEY"),
        ("O2O_WECHATPAY_CERT_SERIAL_NO", "CERT_SERIAL_NO"),
        ("O2O_WECHATPAY_APIV3_KEY", "APIV3_KEY"),
        ("O2O_WECHATPAY_PUBLIC_KEY", "PUBLIC_KEY"),
        ("O2O_WECHATPAY_PUBLIC_KEY_ID", "PUBLIC_KEY_ID"),
    ]:
        partial = settings_from({k: v for k, v in env.items() if k != missing})
        assert not partial.enabled, missing
        assert any(hint in p for p in partial.problems()), (missing, partial.problems())
    short_key = settings_from(env, apiv3_key="too-short")
    assert any("32" in p for p in short_key.problems())
    no_file = settings_from(env, private_key=str(tmp_path / "nope.pem"))
    assert not no_file.enabled
    # Configured but unusable (not a key): the registry gets None, the other providers live on.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("O2O_WECHATPAY_PRIVATE_KEY", "-----BEGIN PRIVATE KEY-----\\nnot a key")
    assert WeChatPaySettings.from_settings(settings).enabled
    assert build_provider(settings) is None
    assert settings_from(env, mode="partner").partner
    with pytest.raises(ValueError):
        settings_from(env, mode="platform")


def test_platform_certificate_mode_and_key_rotation(clock: Clock) -> None:
    with FakeWeChatPay(platform_mode="certificate") as cert_fake:
        cert_fake.clock = clock
        env = cert_fake.provider_env()
        assert "O2O_WECHATPAY_PUBLIC_KEY" not in env
        provider = WeChatPayProvider(settings_from(env), clock=clock)
        provider.prepare(single("CERT001"), method="native")
        event = provider.parse_notification(*_note(cert_fake.pay("CERT001")))
        assert isinstance(event, PaymentEvent) and event.status == EVENT_SUCCEEDED
        provider.close_client()

        # Migrating to the public key: notifications signed with either key are accepted.
        with FakeWeChatPay(fresh_keys=True) as key_fake:
            key_env = key_fake.provider_env()
            both = dict(
                env,
                O2O_WECHATPAY_PUBLIC_KEY=key_env["O2O_WECHATPAY_PUBLIC_KEY"],
                O2O_WECHATPAY_PUBLIC_KEY_ID=key_env["O2O_WECHATPAY_PUBLIC_KEY_ID"],
            )
            rotating = WeChatPayProvider(settings_from(both), clock=clock)
            resource = {"mchid": env["O2O_WECHATPAY_MCHID"], **_PAID}
            for signer in (cert_fake, key_fake):
                headers, body = signer.build_notification(
                    "TRANSACTION.SUCCESS",
                    resource,
                    apiv3_key=env["O2O_WECHATPAY_APIV3_KEY"],
                    timestamp=int(clock()),
                )
                assert rotating.parse_notification(headers, body).payment_no == "N-1"
            rotating.close_client()


def _note(note: Any) -> tuple[dict[str, str], bytes]:
    return note.headers, note.body


# --------------------------------------------------------------------------- direct mode


def test_direct_jsapi_prepay_and_pay_sign(fake: FakeWeChatPay, direct: WeChatPayProvider) -> None:
    pay = single("P20240501001", 1234)
    params = direct.prepare(pay, method="jsapi", payer_openid=OPENID, client_ip="10.0.0.8")
    assert set(params) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
    assert params["appId"] == direct.config.appid
    assert params["signType"] == "RSA"
    assert params["timeStamp"] == str(int(T0.timestamp()))
    assert params["package"].startswith("prepay_id=wx")
    assert verify_pay_sign(fake, direct.config.mchid, params)
    tampered = dict(params, package="prepay_id=wx0000")
    assert not verify_pay_sign(fake, direct.config.mchid, tampered)

    sent = fake.requests[-1]
    assert sent.path == "/v3/pay/transactions/jsapi"
    assert sent.body["out_trade_no"] == "P20240501001"
    assert sent.body["mchid"] == direct.config.mchid
    assert sent.body["appid"] == direct.config.appid
    assert sent.body["amount"] == {"total": 1234, "currency": "CNY"}
    assert sent.body["payer"] == {"openid": OPENID}
    assert sent.body["time_expire"] == "2024-05-01T10:15:00+08:00"
    assert sent.body["notify_url"] == direct.config.notify_url
    assert "sub_mchid" not in sent.body

    # Asking again (the consumer reopened the cashier) gives the same prepay id.
    again = direct.prepare(pay, method="jsapi", payer_openid=OPENID)
    assert again["package"] == params["package"]
    assert len(fake.orders) == 1


def test_direct_native_code_url(fake: FakeWeChatPay, direct: WeChatPayProvider) -> None:
    answer = direct.prepare(single("P20240501N01", 990), method="native")
    assert set(answer) == {"code_url"}
    assert answer["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    assert fake.requests[-1].path == "/v3/pay/transactions/native"
    assert fake.order("P20240501N01").total == 990
    assert direct.prepare(single("P20240501N01", 990), method="native") == answer


def test_direct_mode_pays_several_orders_as_one_plain_order(
    fake: FakeWeChatPay, direct: WeChatPayProvider
) -> None:
    """Single-merchant operator: sub_mchid on the records is ignored, the total is one order."""
    pay = payment("P20240501M01", ("O-A", 1000, SUB_A), ("O-B", 2345, None))
    direct.prepare(pay, method="jsapi", payer_openid=OPENID)
    sent = fake.requests[-1]
    assert sent.path == "/v3/pay/transactions/jsapi"
    assert sent.body["out_trade_no"] == "P20240501M01"
    assert sent.body["amount"]["total"] == 3345
    assert "sub_mchid" not in sent.body
    event = direct.parse_notification(*_note(fake.pay("P20240501M01")))
    assert isinstance(event, PaymentEvent)
    assert (event.payment_no, event.status, event.amount_fen) == ("P20240501M01", "succeeded", 3345)
    assert event.provider_txn_id.startswith("4200")
    assert event.sub_txn_ids == {}


def test_prepare_refuses_bad_requests_before_calling(
    fake: FakeWeChatPay, direct: WeChatPayProvider, partner: WeChatPayProvider
) -> None:
    too_late = payment("P-LATE", ("O-1", 100, None), expires_at=T0 + timedelta(hours=2, seconds=1))
    with pytest.raises(ValueError, match="2 hours"):
        direct.prepare(too_late, method="native")
    naive = payment("P-NAIVE", ("O-1", 100, None), expires_at=datetime(2024, 5, 1, 3, 0))
    with pytest.raises(ValueError, match="timezone"):
        direct.prepare(naive, method="native")
    with pytest.raises(ValueError, match="openid"):
        direct.prepare(single("P-NOOPENID"), method="jsapi")
    with pytest.raises(ValueError, match="unsupported"):
        direct.prepare(single("P-MICRO"), method="micropay")
    with pytest.raises(ValueError, match="IP address"):
        direct.prepare(single("P-H5"), method="h5")
    wrong_total = PaymentRequest(
        payment_no="P-SUM",
        amount_fen=101,
        description="x",
        expires_at=T0 + timedelta(minutes=15),
        sub_orders=(SubOrder("O-1", 100, "x"),),
    )
    with pytest.raises(ValueError, match="add up"):
        direct.prepare(wrong_total, method="native")
    usd = PaymentRequest(
        payment_no="P-USD",
        amount_fen=100,
        description="x",
        expires_at=T0 + timedelta(minutes=15),
        sub_orders=(SubOrder("O-1", 100, "x"),),
        currency="USD",
    )
    with pytest.raises(ValueError, match="CNY"):
        direct.prepare(usd, method="native")
    # Partner mode: a merchant without a sub-merchant id cannot be paid (no pooling).
    with pytest.raises(ValueError, match="sub_mchid"):
        partner.prepare(single("P-NOSUB"), method="native")
    with pytest.raises(ValueError, match="sub_mchid"):
        partner.prepare(
            payment("P-NOSUB2", ("O-A", 100, SUB_A), ("O-B", 100, None)), method="native"
        )
    assert fake.requests == []  # nothing reached WeChat Pay

    # Exactly the 2-hour validity is fine, in any time zone.
    edge = payment(
        "P-EDGE", ("O-1", 100, None), expires_at=(T0 + timedelta(hours=2)).astimezone(UTC)
    )
    assert "code_url" in direct.prepare(edge, method="native")
    assert fake.requests[-1].body["time_expire"] == "2024-05-01T12:00:00+08:00"


def test_long_descriptions_are_cut_to_what_wechat_accepts(
    fake: FakeWeChatPay, direct: WeChatPayProvider
) -> None:
    pay = PaymentRequest(
        payment_no="P-LONGDESC",
        amount_fen=100,
        description="超长商品名称" * 30,
        expires_at=T0 + timedelta(minutes=15),
        sub_orders=(SubOrder("O-1", 100, "x"),),
    )
    direct.prepare(pay, method="native")
    sent = fake.requests[-1].body["description"]
    assert 0 < len(sent.encode()) <= 127
    assert sent.startswith("超长商品名称")


# --------------------------------------------------------------------------- partner mode


def test_partner_single_order(fake: FakeWeChatPay, partner: WeChatPayProvider) -> None:
    pay = single("P20240501S01", 5000, SUB_A)
    params = partner.prepare(pay, method="jsapi", payer_openid=OPENID)
    sent = fake.requests[-1]
    assert sent.path == "/v3/pay/partner/transactions/jsapi"
    assert sent.body["sp_mchid"] == partner.config.mchid
    assert sent.body["sp_appid"] == partner.config.appid
    assert sent.body["sub_mchid"] == SUB_A
    assert sent.body["out_trade_no"] == "P20240501S01"
    assert sent.body["payer"] == {"sp_openid": OPENID}
    assert params["appId"] == partner.config.appid
    assert verify_pay_sign(fake, partner.config.mchid, params)

    assert partner.query(pay).status == EVENT_PENDING
    event = partner.parse_notification(*_note(fake.pay("P20240501S01")))
    assert isinstance(event, PaymentEvent)
    assert (event.payment_no, event.status, event.amount_fen) == ("P20240501S01", "succeeded", 5000)
    queried = partner.query(pay)
    assert queried.status == EVENT_SUCCEEDED
    assert queried.provider_txn_id == event.provider_txn_id
    assert fake.requests[-1].query == {"sp_mchid": partner.config.mchid, "sub_mchid": SUB_A}

    native = single("P20240501S02", 700, SUB_B)
    assert partner.prepare(native, method="native")["code_url"].startswith("weixin://")
    assert fake.requests[-1].path == "/v3/pay/partner/transactions/native"
    assert fake.order("P20240501S02").sub_mchid == SUB_B


def test_combined_payment_with_two_sub_merchants(
    fake: FakeWeChatPay, partner: WeChatPayProvider
) -> None:
    pay = combined("P20240501C01")
    params = partner.prepare(pay, method="jsapi", payer_openid=OPENID, client_ip="10.1.2.3")
    sent = fake.requests[-1]
    assert sent.path == "/v3/combine-transactions/jsapi"
    assert sent.body["combine_out_trade_no"] == "P20240501C01"
    assert sent.body["combine_mchid"] == partner.config.mchid
    assert sent.body["combine_payer_info"] == {"openid": OPENID}
    assert [
        (s["out_trade_no"], s["sub_mchid"], s["amount"]["total_amount"])
        for s in sent.body["sub_orders"]
    ] == [
        ("P20240501C01-A", SUB_A, 1999),
        ("P20240501C01-B", SUB_B, 3001),
    ]
    assert {s["attach"] for s in sent.body["sub_orders"]} == {"P20240501C01"}
    assert verify_pay_sign(fake, partner.config.mchid, params)
    assert partner.query(pay).status == EVENT_PENDING

    note = fake.pay("P20240501C01")
    event = partner.parse_notification(note.headers, note.body)
    assert isinstance(event, PaymentEvent)
    assert event.payment_no == "P20240501C01"
    assert event.status == EVENT_SUCCEEDED
    assert event.amount_fen == 5000 == pay.amount_fen
    assert event.currency == "CNY"
    txn_a = fake.order("P20240501C01-A").transaction_id
    txn_b = fake.order("P20240501C01-B").transaction_id
    assert event.sub_txn_ids == {"P20240501C01-A": txn_a, "P20240501C01-B": txn_b}
    assert txn_a != txn_b
    assert event.paid_at == T0
    assert event.raw["event_type"] == "TRANSACTION.SUCCESS"

    queried = partner.query(pay)
    assert (queried.status, queried.amount_fen, dict(queried.sub_txn_ids)) == (
        EVENT_SUCCEEDED,
        5000,
        dict(event.sub_txn_ids),
    )
    # A replayed notification decodes to the same event; applying it once is the core's job.
    again = partner.parse_notification(note.headers, note.body)
    assert (again.payment_no, again.amount_fen) == (event.payment_no, event.amount_fen)


def test_combined_native_needs_the_payer_ip(
    fake: FakeWeChatPay, partner: WeChatPayProvider
) -> None:
    with pytest.raises(ValueError, match="IP"):
        partner.prepare(combined("P20240501C02"), method="native")
    with pytest.raises(ValueError, match="IP"):
        partner.prepare(combined("P20240501C02"), method="native", client_ip="testclient")
    answer = partner.prepare(combined("P20240501C02"), method="native", client_ip="10.0.0.1")
    assert answer["code_url"].startswith("weixin://")
    assert fake.requests[-1].path == "/v3/combine-transactions/native"
    assert fake.requests[-1].body["scene_info"] == {"payer_client_ip": "10.0.0.1"}


# --------------------------------------------------------------------------- query and close


@pytest.mark.parametrize(
    ("trade_state", "status"),
    [
        ("NOTPAY", EVENT_PENDING),
        ("USERPAYING", EVENT_PENDING),
        ("SUCCESS", EVENT_SUCCEEDED),
        ("REFUND", EVENT_SUCCEEDED),
        ("CLOSED", EVENT_CLOSED),
        ("REVOKED", EVENT_CLOSED),
        ("PAYERROR", EVENT_FAILED),
    ],
)
def test_query_maps_each_trade_state(
    fake: FakeWeChatPay, direct: WeChatPayProvider, trade_state: str, status: str
) -> None:
    pay = single("P20240501Q01", 4321)
    direct.prepare(pay, method="native")
    if trade_state in {"SUCCESS", "REFUND"}:
        fake.pay("P20240501Q01")
    fake.order("P20240501Q01").trade_state = trade_state
    event = direct.query(pay)
    assert (event.payment_no, event.status, event.amount_fen) == ("P20240501Q01", status, 4321)
    assert event.raw["trade_state"] == trade_state
    if status == EVENT_SUCCEEDED:
        assert event.provider_txn_id and event.paid_at == T0
    else:
        assert event.paid_at is None
    assert payment_status(trade_state) == status
    if status == EVENT_FAILED:
        assert event.raw["reason"] == "PAYERROR 支付失败"  # the core records it as the cause
    else:
        assert "reason" not in event.raw


def test_query_of_a_payment_wechat_never_saw(
    direct: WeChatPayProvider, partner: WeChatPayProvider
) -> None:
    for provider, pay in ((direct, single("P-UNKNOWN")), (partner, combined("P-UNKNOWNC"))):
        event = provider.query(pay)
        assert (event.status, event.amount_fen) == (EVENT_PENDING, 0)
        assert event.raw["code"] == "ORDER_NOT_EXIST"


def test_close_plain_and_combined(
    fake: FakeWeChatPay, direct: WeChatPayProvider, partner: WeChatPayProvider
) -> None:
    plain = single("P20240501X01")
    direct.prepare(plain, method="native")
    direct.close(plain)
    assert fake.requests[-1].path == "/v3/pay/transactions/out-trade-no/P20240501X01/close"
    assert direct.query(plain).status == EVENT_CLOSED
    direct.close(plain)  # closing twice is harmless
    direct.close(single("P-NEVER"))  # so is closing what WeChat Pay never saw

    sub = single("P20240501X02", 100, SUB_A)
    partner.prepare(sub, method="native")
    partner.close(sub)
    assert fake.order("P20240501X02").trade_state == "CLOSED"

    both = combined("P20240501X03")
    partner.prepare(both, method="native", client_ip="10.0.0.1")
    partner.close(both)
    sent = fake.requests[-1]
    assert sent.path == "/v3/combine-transactions/out-trade-no/P20240501X03/close"
    assert [(s["out_trade_no"], s["sub_mchid"]) for s in sent.body["sub_orders"]] == [
        ("P20240501X03-A", SUB_A),
        ("P20240501X03-B", SUB_B),
    ]
    event = partner.query(both)
    assert (event.status, event.amount_fen) == (EVENT_CLOSED, 5000)


def test_close_of_a_paid_payment_is_refused(fake: FakeWeChatPay, direct: WeChatPayProvider) -> None:
    pay = single("P20240501X04")
    direct.prepare(pay, method="native")
    fake.pay("P20240501X04")
    with pytest.raises(ProviderRefused) as exc:
        direct.close(pay)
    assert exc.value.code == "ORDERPAID"
    assert direct.query(pay).status == EVENT_SUCCEEDED
    with pytest.raises(ProviderRefused) as exc:
        direct.prepare(pay, method="native")
    assert exc.value.code == "ORDERPAID"


# --------------------------------------------------------------------------- refunds


def refund_of(
    pay: PaymentRequest, refund_no: str, fen: int, *, order: int = 0, combined: bool = False
) -> RefundRequest:
    sub = pay.sub_orders[order]
    return RefundRequest(
        refund_no=refund_no,
        payment_no=pay.payment_no,
        order_no=sub.order_no,
        amount_fen=fen,
        trade_total_fen=sub.amount_fen if combined else pay.amount_fen,
        reason="不想要了",
        sub_mchid=sub.sub_mchid,
        combined=combined,
    )


def test_refund_lifecycle(fake: FakeWeChatPay, direct: WeChatPayProvider) -> None:
    pay = single("P20240501R01", 10000)
    direct.prepare(pay, method="jsapi", payer_openid=OPENID)
    paid = direct.parse_notification(*_note(fake.pay("P20240501R01")))
    assert paid.status == EVENT_SUCCEEDED

    request = refund_of(pay, "RF20240501001", 3000)
    started = direct.refund(request)
    assert isinstance(started, RefundEvent)
    assert (started.refund_no, started.status, started.amount_fen) == (
        "RF20240501001",
        REFUND_PROCESSING,
        3000,
    )
    assert started.provider_refund_id
    sent = fake.requests[-1].body
    assert sent["out_trade_no"] == "P20240501R01"
    assert sent["amount"] == {"refund": 3000, "total": 10000, "currency": "CNY"}
    assert sent["notify_url"] == direct.config.notify_url
    assert sent["reason"] == "不想要了"
    # Retried with the same number: the same refund, not a second one.
    assert direct.refund(request).provider_refund_id == started.provider_refund_id
    assert len(fake.refunds) == 1
    assert direct.query_refund(request).status == REFUND_PROCESSING

    note = fake.complete_refund("RF20240501001")
    done = direct.parse_notification(note.headers, note.body)
    assert isinstance(done, RefundEvent)
    assert (done.refund_no, done.status, done.amount_fen) == (
        "RF20240501001",
        REFUND_SUCCEEDED,
        3000,
    )
    assert done.provider_refund_id == started.provider_refund_id
    assert done.raw["event_type"] == "REFUND.SUCCESS"
    assert direct.query_refund(request).status == REFUND_SUCCEEDED
    assert direct.query(pay).status == EVENT_SUCCEEDED  # REFUND trade_state: it was paid

    # More than what is left is a definitive refusal.
    with pytest.raises(ProviderRefused) as exc:
        direct.refund(refund_of(pay, "RF20240501002", 7001))
    assert exc.value.code == "INVALID_REQUEST"


@pytest.mark.parametrize(
    ("final", "status"), [("ABNORMAL", REFUND_ABNORMAL), ("CLOSED", REFUND_FAILED)]
)
def test_refund_that_does_not_arrive_is_abnormal_or_failed(
    fake: FakeWeChatPay, direct: WeChatPayProvider, final: str, status: str
) -> None:
    pay = single("P20240501R02", 500)
    direct.prepare(pay, method="native")
    fake.pay("P20240501R02")
    request = refund_of(pay, "RF20240501003", 500)
    direct.refund(request)
    event = direct.parse_notification(*_note(fake.complete_refund("RF20240501003", status=final)))
    assert isinstance(event, RefundEvent) and event.status == status
    assert event.raw["reason"].startswith(final)
    assert event.raw["event_type"] == f"REFUND.{final}"
    queried = direct.query_refund(request)
    assert queried.status == status and queried.raw["reason"].startswith(final)
    assert refund_status(final) == status


def test_refund_of_one_sub_order_of_a_combined_payment(
    fake: FakeWeChatPay, partner: WeChatPayProvider
) -> None:
    pay = combined("P20240501R03")
    partner.prepare(pay, method="jsapi", payer_openid=OPENID)
    fake.pay("P20240501R03")
    request = refund_of(pay, "RF20240501004", 3001, order=1, combined=True)
    event = partner.refund(request)
    assert event.status == REFUND_PROCESSING
    sent = fake.requests[-1].body
    assert sent["out_trade_no"] == "P20240501R03-B"
    assert sent["sub_mchid"] == SUB_B
    assert sent["amount"] == {"refund": 3001, "total": 3001, "currency": "CNY"}
    assert partner.query_refund(request).status == REFUND_PROCESSING
    assert fake.requests[-1].query == {"sub_mchid": SUB_B}
    note = fake.complete_refund("RF20240501004", sub_mchid=SUB_B)
    done = partner.parse_notification(note.headers, note.body)
    assert isinstance(done, RefundEvent) and done.status == REFUND_SUCCEEDED
    with pytest.raises(ValueError, match="sub_mchid"):
        partner.refund(
            RefundRequest("RF-X", pay.payment_no, "O", 1, 1, combined=True, sub_mchid=None)
        )


def test_direct_refund_of_one_order_of_a_pooled_payment(
    fake: FakeWeChatPay, direct: WeChatPayProvider
) -> None:
    """Direct mode paid two orders as one plain order: the refund names that order and its
    whole total, whatever sub-order total the core passed."""
    pay = payment("P20240501R04", ("O-A", 1000, SUB_A), ("O-B", 2000, None))
    direct.prepare(pay, method="native")
    fake.pay("P20240501R04")
    event = direct.refund(refund_of(pay, "RF20240501005", 2000, order=1, combined=True))
    assert event.status == REFUND_PROCESSING
    sent = fake.requests[-1].body
    assert sent["out_trade_no"] == "P20240501R04"
    assert sent["amount"] == {"refund": 2000, "total": 3000, "currency": "CNY"}
    assert "sub_mchid" not in sent


def test_refund_query_resubmits_a_refund_wechat_never_received(
    fake: FakeWeChatPay, direct: WeChatPayProvider
) -> None:
    pay = single("P20240501R05", 800)
    direct.prepare(pay, method="native")
    fake.pay("P20240501R05")
    request = refund_of(pay, "RF20240501006", 800)
    fake.fail_next(503, "SYSTEM_ERROR", path_contains="/refund/")
    with pytest.raises(ProviderUnavailable):
        direct.refund(request)
    assert fake.refunds == {}
    event = direct.query_refund(request)
    assert (event.refund_no, event.status, event.amount_fen) == (
        "RF20240501006",
        REFUND_PROCESSING,
        800,
    )
    assert len(fake.refunds) == 1


def test_refund_waits_for_balance(fake: FakeWeChatPay, direct: WeChatPayProvider) -> None:
    pay = single("P20240501R06", 800)
    direct.prepare(pay, method="native")
    fake.pay("P20240501R06")
    request = refund_of(pay, "RF20240501007", 800)
    fake.fail_next(403, "NOT_ENOUGH", "基本账户余额不足", path_contains="/refund/")
    with pytest.raises(ProviderUnavailable):
        direct.refund(request)
    assert direct.refund(request).status == REFUND_PROCESSING


# --------------------------------------------------------------------------- notifications


_PAID = {
    "out_trade_no": "N-1",
    "transaction_id": "4200000000000000000000000001",
    "trade_state": "SUCCESS",
    "success_time": "2024-05-01T10:00:00+08:00",
    "amount": {"total": 1, "payer_total": 1, "currency": "CNY"},
}


def paid_resource(provider: WeChatPayProvider) -> dict[str, Any]:
    return {"mchid": provider.config.mchid, "appid": provider.config.appid, **_PAID}


def build(
    fake: FakeWeChatPay, provider: WeChatPayProvider, **kw: Any
) -> tuple[dict[str, str], bytes]:
    resource = kw.pop("resource", None) or paid_resource(provider)
    return fake.build_notification(
        kw.pop("event_type", "TRANSACTION.SUCCESS"), resource, mchid=provider.config.mchid, **kw
    )


def rejected(provider: WeChatPayProvider, headers: dict[str, str], body: bytes) -> str:
    with pytest.raises(NotificationRejected) as exc:
        provider.parse_notification(headers, body)
    return exc.value.reason


def test_genuine_notification(fake: FakeWeChatPay, direct: WeChatPayProvider) -> None:
    headers, body = build(fake, direct)
    event = direct.parse_notification(headers, body)
    assert isinstance(event, PaymentEvent)
    assert (event.provider, event.payment_no, event.status, event.amount_fen) == (
        "wechatpay",
        "N-1",
        EVENT_SUCCEEDED,
        1,
    )
    assert event.provider_txn_id == "4200000000000000000000000001"
    assert event.paid_at == datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
    # Header names as any framework spells them.
    lower = {k.lower(): v for k, v in headers.items()}
    assert direct.parse_notification(lower, body).payment_no == "N-1"


def test_notification_with_a_bad_signature(fake: FakeWeChatPay, direct: WeChatPayProvider) -> None:
    headers, body = build(fake, direct, sign_key=fake_rsa_key("attacker"))
    assert rejected(direct, headers, body).startswith("signature")
    headers, body = build(fake, direct)
    altered = body.replace(b"TRANSACTION.SUCCESS", b"TRANSACTION.SUCCESZ")
    assert rejected(direct, headers, altered).startswith("signature")


def test_notification_with_a_wrong_serial(fake: FakeWeChatPay, direct: WeChatPayProvider) -> None:
    headers, body = build(fake, direct, serial="PUB_KEY_ID_0000000000000000000000000001")
    assert rejected(direct, headers, body).startswith("serial")


@pytest.mark.parametrize("offset", [-301, 301, -3600])
def test_notification_with_a_stale_timestamp(
    fake: FakeWeChatPay, direct: WeChatPayProvider, clock: Clock, offset: int
) -> None:
    headers, body = build(fake, direct, timestamp=int(clock()) + offset)
    assert rejected(direct, headers, body).startswith("timestamp")


def test_notification_just_inside_five_minutes(
    fake: FakeWeChatPay, direct: WeChatPayProvider, clock: Clock
) -> None:
    headers, body = build(fake, direct)
    clock.advance(299)  # delivered late, still inside the window
    assert direct.parse_notification(headers, body).payment_no == "N-1"
    clock.advance(2)
    assert rejected(direct, headers, body).startswith("timestamp")


def test_notification_with_a_tampered_ciphertext(
    fake: FakeWeChatPay, direct: WeChatPayProvider
) -> None:
    headers, body = build(fake, direct)
    envelope = json.loads(body)
    raw = bytearray(base64.b64decode(envelope["resource"]["ciphertext"]))
    raw[0] ^= 0x01
    envelope["resource"]["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    resigned = json.dumps(envelope).encode()
    # Signed again with the genuine platform key: only the AES-GCM tag can catch it.
    headers["Wechatpay-Signature"] = rsa_sign(
        fake.platform_private_key,
        response_message(headers["Wechatpay-Timestamp"], headers["Wechatpay-Nonce"], resigned),
    )
    assert rejected(direct, headers, resigned).startswith("decrypt")
    other_key = build(fake, direct, apiv3_key="k" * 32)
    assert rejected(direct, *other_key).startswith("decrypt")


def test_notification_malformed_foreign_or_unknown(
    fake: FakeWeChatPay, direct: WeChatPayProvider, partner: WeChatPayProvider
) -> None:
    _, body = build(fake, direct)
    assert rejected(direct, {}, body).startswith("malformed")
    # Genuinely signed and encrypted, but about another merchant id.
    foreign = build(fake, direct, resource={**_PAID, "mchid": "1900009999"})
    assert rejected(direct, *foreign).startswith("merchant")
    # A partner provider does not accept a direct merchant's notification either.
    assert rejected(partner, *build(fake, direct)).startswith("decrypt")
    unknown = build(fake, direct, event_type="COMPLAINT.CREATE", original_type="complaint")
    assert rejected(direct, *unknown).startswith("unsupported")
    # 分账动账 is understood, but needs its out_order_no and receiver.
    sharing = build(fake, direct, event_type="PROFITSHARING.SUCCESS", original_type="profitsharing")
    assert rejected(direct, *sharing).startswith("malformed")
    no_number = build(
        fake, direct, resource={"mchid": direct.config.mchid, "trade_state": "SUCCESS"}
    )
    assert rejected(direct, *no_number).startswith("malformed")


def test_answers(direct: WeChatPayProvider) -> None:
    ok = direct.answer(True)
    assert (ok.status_code, ok.body) == (204, b"")
    failed = direct.answer(False, "验签失败")
    assert failed.status_code == 500
    assert failed.media_type == "application/json"
    assert json.loads(failed.body) == {"code": "FAIL", "message": "验签失败"}
    assert direct.answer(False, "签名错误", status_code=401).status_code == 401
    assert json.loads(direct.answer(False).body)["code"] == "FAIL"
    with pytest.raises(ValueError):
        direct.answer(False, "x", status_code=200)


# --------------------------------------------------------------------------- failures


def test_retryable_failure_then_retry_with_the_same_number(
    fake: FakeWeChatPay, direct: WeChatPayProvider
) -> None:
    pay = single("P20240501F01")
    fake.fail_next(500, "SYSTEM_ERROR")
    with pytest.raises(ProviderUnavailable, match="SYSTEM_ERROR"):
        direct.prepare(pay, method="jsapi", payer_openid=OPENID)
    params = direct.prepare(pay, method="jsapi", payer_openid=OPENID)
    assert params["package"].startswith("prepay_id=")
    assert len(fake.orders) == 1

    # Applied at WeChat Pay but the answer was lost: the retry finds the same prepay id.
    lost = single("P20240501F02")
    fake.fail_next(500, "SYSTEM_ERROR", after=True)
    with pytest.raises(ProviderUnavailable):
        direct.prepare(lost, method="jsapi", payer_openid=OPENID)
    retried = direct.prepare(lost, method="jsapi", payer_openid=OPENID)
    assert retried["package"] == f"prepay_id={fake.order('P20240501F02').prepay_id}"

    fake.fail_next(429, "FREQUENCY_LIMITED", "频率超限")
    with pytest.raises(ProviderUnavailable):
        direct.query(pay)
    fake.fail_next(400, "PARAM_ERROR", "参数错误")
    with pytest.raises(ProviderRefused) as exc:
        direct.query(pay)
    assert (exc.value.code, exc.value.message) == ("PARAM_ERROR", "参数错误")


def test_unverifiable_answers_and_network_errors_are_unavailable(
    fake: FakeWeChatPay, direct: WeChatPayProvider, clock: Clock
) -> None:
    pay = single("P20240501F03")
    fake.tamper_next_response("signature")
    with pytest.raises(ProviderUnavailable, match="unverifiable"):
        direct.prepare(pay, method="native")
    assert direct.prepare(pay, method="native")["code_url"]

    env = fake.provider_env()
    slow = WeChatPayProvider(settings_from(env, timeout=0.2), clock=clock)
    fake.delay_next(1.0)
    with pytest.raises(ProviderUnavailable):
        slow.query(pay)
    slow.close_client()

    gone = WeChatPayProvider(settings_from(env, base_url="http://127.0.0.1:9"), clock=clock)
    with pytest.raises(ProviderUnavailable):
        gone.close(pay)
    gone.close_client()


def test_events_keep_their_times_through_the_notification_log() -> None:
    """A refund the provider accepted carries ``accepted_at``: storing it with its notification
    (a JSON column) must not fail, and the replay reads back the same event."""
    from o2o.payments.notification_log import event_from_json, event_json

    accepted = datetime(2026, 12, 7, 8, 30, tzinfo=UTC)
    refund = RefundEvent(
        provider="wechatpay",
        refund_no="R1",
        status=REFUND_PROCESSING,
        amount_fen=100,
        accepted_at=accepted,
    )
    paid = PaymentEvent(
        provider="wechatpay",
        payment_no="P1",
        status=EVENT_SUCCEEDED,
        amount_fen=100,
        paid_at=accepted,
    )
    for event in (refund, paid):
        stored = json.loads(json.dumps(event_json(event)))
        assert event_from_json(stored) == event


# --------------------------------------------------------------------------- H5 and sub_openid


def test_h5_sends_the_payer_ip_and_h5_info_and_gives_the_h5_url(
    fake: FakeWeChatPay, direct: WeChatPayProvider, partner: WeChatPayProvider
) -> None:
    got = direct.prepare(single("P-H5-1"), method="h5", client_ip="203.0.113.7")
    sent = fake.requests[-1]
    assert sent.path == "/v3/pay/transactions/h5" and sent.status == 200
    assert sent.body["scene_info"] == {
        "payer_client_ip": "203.0.113.7",
        "h5_info": {"type": "Wap"},
    }
    assert got["h5_url"].startswith(fake.base_url + "/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=")
    # The same payment again: the same URL (WeChat Pay dedupes on out_trade_no).
    assert direct.prepare(single("P-H5-1"), method="h5", client_ip="203.0.113.7") == got
    # Partner mode, one merchant and a combined (合单) payment of two.
    partner.prepare(single("P-H5-2", sub=SUB_A), method="h5", client_ip="203.0.113.7")
    assert fake.requests[-1].path == "/v3/pay/partner/transactions/h5"
    assert fake.requests[-1].body["sub_mchid"] == SUB_A
    both = partner.prepare(combined("P-H5-C"), method="h5", client_ip="203.0.113.7")
    sent = fake.requests[-1]
    assert sent.path == "/v3/combine-transactions/h5" and sent.status == 200
    assert sent.body["scene_info"]["h5_info"] == {"type": "Wap"}
    assert [s["sub_mchid"] for s in sent.body["sub_orders"]] == [SUB_A, SUB_B]
    assert "h5_url" in both
    # No address, no H5 (WeChat Pay compares it with the browser that opens the URL).
    with pytest.raises(ValueError, match="IP address"):
        partner.prepare(combined("P-H5-D"), method="h5", client_ip="testclient")


def test_the_fake_refuses_h5_without_scene_info(
    fake: FakeWeChatPay, direct: WeChatPayProvider
) -> None:
    body = {
        "appid": direct.config.appid,
        "mchid": direct.config.mchid,
        "description": "x",
        "out_trade_no": "P-H5-BAD",
        "notify_url": direct.config.notify_url,
        "amount": {"total": 1, "currency": "CNY"},
    }
    for scene in (None, {"payer_client_ip": "203.0.113.7"}, {"h5_info": {"type": "Wap"}}):
        payload = {**body, **({"scene_info": scene} if scene else {})}
        with pytest.raises(WeChatPayError) as refused:
            direct.client._call("POST", "/v3/pay/transactions/h5", body=payload)
        assert refused.value.code == "PARAM_ERROR"


def test_jsapi_with_a_sub_appid_openid_pays_as_sub_openid(
    fake: FakeWeChatPay, clock: Clock
) -> None:
    sub_appid = "wxsubapp000000001"
    provider = WeChatPayProvider(
        settings_from(fake.provider_env(partner=True)), clock=clock, sub_appid=sub_appid
    )
    try:
        assert provider.payer_appids() == [provider.config.appid, sub_appid]
        params = provider.prepare(
            single("P-SUB-1", sub=SUB_A), payer_openid=OPENID, payer_appid=sub_appid
        )
        sent = fake.requests[-1].body
        assert sent["payer"] == {"sub_openid": OPENID} and sent["sub_appid"] == sub_appid
        assert params["appId"] == sub_appid
        assert verify_pay_sign(fake, provider.config.mchid, params)
        # The platform's own openid pays as sp_openid with the sp_appid.
        params = provider.prepare(single("P-SUB-2", sub=SUB_A), payer_openid=OPENID)
        assert fake.requests[-1].body["payer"] == {"sp_openid": OPENID}
        assert params["appId"] == provider.config.appid
        # An openid of an app this merchant cannot pay for is refused before any call.
        with pytest.raises(ValueError, match="cannot pay here"):
            provider.prepare(single("P-SUB-3", sub=SUB_A), payer_openid=OPENID, payer_appid="wxx")
        # 合单 pays with the sp_appid's openid only.
        with pytest.raises(ValueError, match="sp_appid"):
            provider.prepare(combined("P-SUB-C"), payer_openid=OPENID, payer_appid=sub_appid)
    finally:
        provider.close_client()
