"""Failover to WeChat Pay's backup domain (api2.mch.weixin.qq.com): when the primary cannot be
reached — connection refused, or no answer within the timeout — the same request goes to the
backup; an answer from the primary (a 4xx, even a 5xx) is never sent elsewhere. The fake plays
the backup; the primary is a closed port or a socket that never answers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from o2o.config import Settings
from o2o.payments.providers import PaymentRequest, ProviderUnavailable, SubOrder
from o2o.payments.wechatpay import (
    DEFAULT_BACKUP_BASE_URL,
    DEFAULT_BASE_URL,
    WeChatPayClient,
    WeChatPayError,
    WeChatPayNetworkError,
)
from o2o.payments.wechatpay_provider import build_provider
from o2o.timeutil import CHINA_TZ
from tests.fakes.wechatpay_server import FakeWeChatPay


def closed_port() -> str:
    """A URL nothing listens on (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Silent:
    """Accepts connections and never answers (a primary that times out); counts them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeWeChatPay]:
    with FakeWeChatPay() as server:
        yield server


@pytest.fixture
def silent() -> Iterator[Silent]:
    primary = Silent()
    yield primary
    primary.close()


def prepay(client: WeChatPayClient, no: str) -> str:
    return client.native_prepay(
        out_trade_no=no,
        description="双人套餐",
        amount_fen=1000,
        time_expire=datetime.now(CHINA_TZ) + timedelta(minutes=15),
    )


def test_primary_refusing_connections_fails_over_to_the_backup(fake: FakeWeChatPay) -> None:
    config = fake.merchant_config(base_url=closed_port(), backup_base_url=fake.base_url)
    with WeChatPayClient(config) as client:
        code_url = prepay(client, "FO-1")
        assert code_url.startswith("weixin://")
        assert client.query_order("FO-1")["trade_state"] == "NOTPAY"
    assert [r.path for r in fake.requests[-2:]] == [
        "/v3/pay/transactions/native",
        "/v3/pay/transactions/out-trade-no/FO-1",
    ]


def test_primary_timing_out_fails_over_and_is_skipped_for_a_while(
    fake: FakeWeChatPay, silent: Silent
) -> None:
    config = fake.merchant_config(base_url=silent.url, backup_base_url=fake.base_url, timeout=0.5)
    with WeChatPayClient(config) as client:
        prepay(client, "FO-2")
        assert len(silent.accepted) == 1
        # The primary just failed: the next requests go to the backup first.
        client.query_order("FO-2")
        client.query_order("FO-2")
        assert len(silent.accepted) == 1
    assert fake.order("FO-2").trade_state == "NOTPAY"


def test_an_answer_from_the_primary_is_final(fake: FakeWeChatPay) -> None:
    # The "backup" is a closed port: had the client failed over, it would report a network
    # error instead of WeChat Pay's own answer.
    config = fake.merchant_config(backup_base_url=closed_port())
    with WeChatPayClient(config) as client:
        fake.fail_next(400, "PARAM_ERROR", "参数错误")
        with pytest.raises(WeChatPayError) as exc:
            prepay(client, "FO-3")
        assert (exc.value.status, exc.value.code) == (400, "PARAM_ERROR")
        fake.fail_next(500, "SYSTEM_ERROR")
        with pytest.raises(WeChatPayError) as exc:
            client.query_order("FO-3")
        assert exc.value.status == 500


def test_both_unreachable_is_a_network_error(silent: Silent, fake: FakeWeChatPay) -> None:
    config = fake.merchant_config(base_url=closed_port(), backup_base_url=silent.url, timeout=0.3)
    with WeChatPayClient(config) as client, pytest.raises(WeChatPayNetworkError):
        client.query_order("FO-4")


def test_the_backup_domain_by_default_and_from_the_environment(fake: FakeWeChatPay) -> None:
    assert fake.merchant_config(base_url=DEFAULT_BASE_URL).backup_base_url == (
        DEFAULT_BACKUP_BASE_URL
    )
    # A custom gateway has no implicit backup; an explicit empty one turns failover off.
    assert fake.merchant_config().backup_base_url == ""
    assert fake.merchant_config(base_url=DEFAULT_BASE_URL, backup_base_url="").backup_base_url == ""

    env = fake.provider_env()
    settings = Settings(database_url="sqlite://", secret_key="k" * 40, demo=False)
    values = {k.removeprefix("O2O_WECHATPAY_").lower(): v for k, v in env.items()}
    values.update(base_url=closed_port(), backup_base_url=fake.base_url)
    provider = build_provider(settings, **values)
    assert provider is not None
    request = PaymentRequest(
        payment_no="FO-5",
        amount_fen=800,
        description="火锅双人餐",
        expires_at=datetime.now(CHINA_TZ) + timedelta(minutes=15),
        sub_orders=(SubOrder(order_no="FO-5-O1", amount_fen=800, description="订单"),),
    )
    try:
        assert "code_url" in provider.prepare(request, method="native")
        assert provider.query(request).status == "pending"
    finally:
        provider.close_client()
    values["backup_base_url"] = ""
    no_backup = build_provider(settings, **values)
    assert no_backup is not None
    try:
        with pytest.raises(ProviderUnavailable):
            no_backup.query(request)
    finally:
        no_backup.close_client()
