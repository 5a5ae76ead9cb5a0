"""Certificate mode (merchants still on 平台证书): byte-wise serials, the download from
``GET /v3/certificates`` (decrypted with the APIv3 key, signed answer), rotation (several kept,
refreshed on an unknown serial, not per request) — against the fake WeChat Pay server serving
encrypted certificates as WeChat Pay does. Public-key mode stays the default elsewhere."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from o2o.config import Settings
from o2o.payments.providers import EVENT_SUCCEEDED, PaymentEvent
from o2o.payments.wechatpay import (
    WeChatPayClient,
    WeChatPayConfig,
    WeChatPayVerificationError,
)
from o2o.payments.wechatpay_certs import UNKNOWN_SERIAL_GAP
from o2o.payments.wechatpay_provider import WeChatPayProvider, WeChatPaySettings, build_provider
from o2o.timeutil import CHINA_TZ
from tests.fakes.wechatpay_server import FakeWeChatPay, merchant_name

T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=CHINA_TZ)
# A serial whose first byte is below 0x10: WeChat Pay writes it 0798AB…, never 798AB….
LOW_SERIAL = 0x0798AB5C1E2F3A4B5C6D7E8F90A1B2C3


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def fake(clock: Clock) -> Iterator[FakeWeChatPay]:
    with FakeWeChatPay(
        platform_mode="certificate", certificate_serial_number=LOW_SERIAL, clock=clock
    ) as server:
        yield server


def downloading(fake: FakeWeChatPay, **overrides: Any) -> WeChatPayConfig:
    """Certificate mode with nothing configured but the APIv3 key: everything downloaded."""
    return fake.merchant_config(
        platform_public_key="", platform_serial="", download_certificates=True, **overrides
    )


def downloads(fake: FakeWeChatPay) -> int:
    return sum(1 for r in fake.requests if r.path == "/v3/certificates")


def place(client: WeChatPayClient, no: str) -> None:
    client.native_prepay(
        out_trade_no=no,
        description="双人套餐",
        amount_fen=1000,
        time_expire=T0 + timedelta(minutes=15),
    )


def test_the_fake_writes_serials_byte_wise_and_a_configured_certificate_verifies(
    fake: FakeWeChatPay, clock: Clock
) -> None:
    assert fake.platform_serial.startswith("0798AB")
    assert len(fake.platform_serial) == 32
    # Configured with the certificate (no download): responses and notifications name
    # 0798AB… and must verify — with format(n, "X") every one failed as "serial".
    with WeChatPayClient(fake.merchant_config(), clock=clock) as client:
        place(client, "LOW-1")
        note = fake.pay("LOW-1")
        assert note.headers["Wechatpay-Serial"] == fake.platform_serial
        parsed = client.parse_notification(note.headers, note.body)
        assert parsed["resource"]["trade_state"] == "SUCCESS"
        assert client.query_order("LOW-1")["trade_state"] == "SUCCESS"


def test_download_once_then_cached(fake: FakeWeChatPay, clock: Clock) -> None:
    with WeChatPayClient(downloading(fake), clock=clock) as client:
        for i in range(5):
            place(client, f"C-{i}")
            client.query_order(f"C-{i}")
        note = fake.pay("C-0")
        client.parse_notification(note.headers, note.body)
        assert downloads(fake) == 1  # not per request
        assert client.platform_serial_for_encryption == fake.platform_serial
        # Twelve hours later the list is fetched again (rotation announced in advance).
        clock.advance(12 * 3600 + 1)
        client.query_order("C-1")
        assert downloads(fake) == 2


def test_the_download_answer_is_checked(fake: FakeWeChatPay, clock: Clock) -> None:
    # Encrypted with the merchant's APIv3 key: another key cannot read it.
    other_key = downloading(fake, apiv3_key="k" * 32)
    with WeChatPayClient(other_key, clock=clock) as client:
        with pytest.raises(WeChatPayVerificationError) as exc:
            client.download_certificates()
        assert exc.value.reason == "decrypt"
    # A signature that does not verify with the certificates it carries: refused.
    with WeChatPayClient(downloading(fake), clock=clock) as client:
        fake.tamper_next_response("signature")
        with pytest.raises(WeChatPayVerificationError) as exc:
            client.download_certificates()
        assert exc.value.reason == "signature"
        [cert] = client.download_certificates()
        assert cert.serial_no == fake.platform_serial


def test_rotation_keeps_both_and_refreshes_on_the_new_serial(
    fake: FakeWeChatPay, clock: Clock
) -> None:
    with WeChatPayClient(downloading(fake), clock=clock) as client:
        place(client, "R-1")
        old_serial = fake.platform_serial
        old_note = fake.pay("R-1")  # signed with the old certificate, delivered later
        assert downloads(fake) == 1

        fake.rotate_certificate()
        new_serial = fake.platform_serial
        assert new_serial != old_serial
        # The next answer is signed with the new certificate: an unknown serial makes the
        # client download the list again (once) and verify.
        assert client.query_order("R-1")["trade_state"] == "SUCCESS"
        assert downloads(fake) == 2
        client.query_order("R-1")
        assert downloads(fake) == 2
        # Both are kept during the rotation: a redelivered notification under the old serial
        # still verifies.
        assert client.parse_notification(old_note.headers, old_note.body)["resource"]
        # Sensitive fields go out encrypted with the newest certificate, and say so.
        assert client.platform_serial_for_encryption == new_serial
        client.add_profit_sharing_receiver(
            type="MERCHANT_ID",
            account=fake.merchant().mchid,
            relation_type="PARTNER",
            name=merchant_name(fake.merchant().mchid),
        )
        assert fake.received_names == [merchant_name(fake.merchant().mchid)]


def test_unknown_serials_cannot_make_us_hammer_the_api(fake: FakeWeChatPay, clock: Clock) -> None:
    with WeChatPayClient(downloading(fake), clock=clock) as client:
        place(client, "F-1")
        assert downloads(fake) == 1
        forged_key = fake.platform_private_key
        for i in range(5):
            headers, body = fake.build_notification(
                "TRANSACTION.SUCCESS",
                {"mchid": fake.merchant().mchid, "out_trade_no": "F-1"},
                serial=f"0{i}FFFFFFFFFFFFFFFF",
                sign_key=forged_key,
            )
            with pytest.raises(WeChatPayVerificationError) as exc:
                client.parse_notification(headers, body)
            assert exc.value.reason == "serial"
        # One more download at most per minute, however many unknown serials arrive.
        assert downloads(fake) <= 2
        clock.advance(UNKNOWN_SERIAL_GAP + 1)
        with pytest.raises(WeChatPayVerificationError):
            client.parse_notification(headers, body)
        assert downloads(fake) <= 3


def test_certificate_mode_from_the_environment(fake: FakeWeChatPay, clock: Clock) -> None:
    env = fake.provider_env()
    env["O2O_WECHATPAY_PLATFORM_CERTIFICATE"] = "download"
    wechat = WeChatPaySettings(
        **{k.removeprefix("O2O_WECHATPAY_").lower(): v for k, v in env.items()}
    )
    assert wechat.enabled and wechat.download_certificates
    provider = WeChatPayProvider(wechat, clock=clock)
    try:
        assert downloads(fake) == 0  # lazily, not at start-up
        place(provider.client, "E-1")
        fake.rotate_certificate(serial_number=0x01_23456789ABCDEF0123456789ABCDEF)
        note = fake.pay("E-1")
        assert note.headers["Wechatpay-Serial"].startswith("0123456789")
        event = provider.parse_notification(note.headers, note.body)
        assert isinstance(event, PaymentEvent) and event.status == EVENT_SUCCEEDED
        assert downloads(fake) == 2
    finally:
        provider.close_client()
    # Neither a public key nor a certificate: not configured (no silent certificate mode).
    del env["O2O_WECHATPAY_PLATFORM_CERTIFICATE"]
    settings = Settings(database_url="sqlite://", secret_key="k" * 40, demo=False)
    assert (
        build_provider(
            settings, **{k.removeprefix("O2O_WECHATPAY_").lower(): v for k, v in env.items()}
        )
        is None
    )


def test_public_key_mode_never_downloads(clock: Clock) -> None:
    with (
        FakeWeChatPay(clock=clock) as fake,
        WeChatPayClient(fake.merchant_config(), clock=clock) as client,
    ):
        place(client, "PK-1")
        assert client.query_order("PK-1")["trade_state"] == "NOTPAY"
        assert downloads(fake) == 0
        assert client.platform_serial_for_encryption == fake.platform_serial
