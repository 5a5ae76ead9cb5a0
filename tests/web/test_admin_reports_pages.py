"""Operator pages 渠道 and 报表 without a browser, on SQLite and PostgreSQL: the charts carry the
figures of tests/test_reports.py's hand-checked history, only operators get in, bad input is a
Chinese error next to the field (never a 500) and changes nothing."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from o2o.channels.models import Channel
from tests.support import World
from tests.test_reports import History, history  # noqa: F401
from tests.web.support import PageClient, field_error

SVG = "{http://www.w3.org/2000/svg}"
WINDOW = "from=2026-03-01&to=2026-03-02"
IN_HTML = WINDOW.replace("&", "&amp;")  # as an href attribute carries it


@pytest.fixture
def pages(app: Any) -> Iterator[PageClient]:
    with PageClient(app) as client:
        yield client


@pytest.fixture
def hand(request: pytest.FixtureRequest) -> History:
    return request.getfixturevalue("history")


def svgs(html: str) -> list[ET.Element]:
    return [ET.fromstring(m) for m in re.findall(r"<svg\b.*?</svg>", html, flags=re.S)]


def section(html: str, testid: str) -> str:
    match = re.search(rf'<section[^>]*data-testid="{testid}".*?</section>', html, flags=re.S)
    assert match, f"no section {testid}"
    return match.group(0)


def texts(svg: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in svg.iter(f"{SVG}text")]


def channel_count(world: World) -> int:
    with world.db.transaction(readonly=True) as s:
        return s.scalar(select(func.count()).select_from(Channel)) or 0


def test_operator_sees_the_three_charts_with_the_hand_checked_figures(
    pages: PageClient, world: World, hand: History
) -> None:
    r = pages.sign_in(world.operator_id).get(f"/admin/reports?{WINDOW}")
    assert r.status_code == 200, r.text
    html = r.text
    assert len(svgs(html)) >= 4  # funnels, channel GMV, daily columns, category GMV

    # (a) Funnel of wx: visits 4 → visitors 3 → checkouts 3 → paid 4 of 4 orders → consumed 3.
    funnel = section(html, "channel-funnel")
    wx = re.search(r'<figure class="chart-box" data-channel="wx">.*?</figure>', funnel, re.S)
    assert wx
    wx_svg = svgs(wx.group(0))[0]
    assert [int(r.get("data-value", -1)) for r in wx_svg.iter(f"{SVG}rect")] == [4, 3, 3, 4, 3]
    labels = texts(wx_svg)
    assert "↓ 访客/访问 75.0%" in labels and "↓ 访客→结算 100.0%" in labels
    assert "↓ 订单→支付 100.0%（4/4 单）" in labels and "↓ 支付→消费 75.0%" in labels
    assert "GMV ¥890.00" in wx.group(0)
    # Channels without traffic are named, not drawn; the direct row is drawn.
    assert "区间内无访问、无订单的渠道：闲置渠道" in funnel
    assert 'data-channel=""' in funnel
    # The total: 5 visits, 4 visitors, 6 checkouts, 6 paid of 7, 4 consumed; GMV ¥1500.00.
    total_svg = svgs(funnel)[0]
    assert [int(r.get("data-value", -1)) for r in total_svg.iter(f"{SVG}rect")] == [5, 4, 6, 6, 4]
    assert "GMV ¥1500.00" in funnel

    # (b) GMV by day: 03-01 O2O ¥300.00 + 电商 ¥590.00; 03-02 ¥100.00 + ¥510.00.
    daily = section(html, "daily-gmv")
    daily_svg = svgs(daily)[0]
    values = [int(r.get("data-value")) for r in daily_svg.iter(f"{SVG}rect") if r.get("data-value")]
    assert values == [30000, 59000, 10000, 51000]
    assert {"¥890.00", "¥610.00", "03-01", "03-02"} <= set(texts(daily_svg))
    assert "合计 ¥1500.00" in daily
    desc = daily_svg.find(f"{SVG}desc")
    assert desc is not None and "03-01：O2O（到店） ¥300.00，电商（商品） ¥590.00" in str(desc.text)

    # (c) O2O vs 电商 per category: 美食 O2O 40000 (O1 O2 O8 lines), 电商 6000 (O3); 数码
    # 电商 52000 (O7 L3 + L5, O5 L3 … see test_reports); each row has the service's reading.
    models = section(html, "models")
    cat_svg = svgs(models)[0]
    assert {"美食", "数码", "O2O", "电商", "¥400.00", "¥60.00"} <= set(texts(cat_svg))
    assert models.count('data-testid="reading"') >= 3  # 全平台 + 美食 + 数码
    assert "样本不足" in models  # fewer than 30 paid orders per model
    for what in ("GMV", "客单价", "核销率 / 收货率", "退款率", "复购率", "佣金收入"):
        assert f'<th scope="row">{what}</th>' in models
    # CSV links carry the window (and the models filter).
    assert f'href="/admin/reports/channels.csv?{IN_HTML}"' in html
    assert f'href="/admin/reports/daily.csv?{IN_HTML}"' in html
    assert f'href="/admin/reports/models.csv?{IN_HTML}"' in html


def test_models_filter_by_category_and_merchant(
    pages: PageClient, world: World, hand: History
) -> None:
    client = pages.sign_in(world.operator_id)
    r = client.get(f"/admin/reports?{WINDOW}&category_id={hand.ids['food']}")
    assert r.status_code == 200
    models = section(r.text, "models")
    assert 'data-category="火锅"' in models and 'data-category="美食（本类目）"' in models
    assert f"category_id={hand.ids['food']}" in r.text
    r = client.get(f"/admin/reports?{WINDOW}&merchant_id={world.b.id}")
    assert r.status_code == 200
    assert f'href="/admin/reports/models.csv?{IN_HTML}&amp;merchant_id={world.b.id}"' in r.text


def test_csv_downloads(pages: PageClient, world: World, hand: History) -> None:
    client = pages.sign_in(world.operator_id)
    r = client.get(f"/admin/reports/daily.csv?{WINDOW}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="daily_gmv_2026-03-01_2026-03-02.csv"' in r.headers["content-disposition"]
    lines = r.content.decode("utf-8-sig").splitlines()
    assert lines[1:] == [
        "2026-03-01,2,300.00,2,590.00,890.00",
        "2026-03-02,1,100.00,1,510.00,610.00",
    ]
    r = client.get(f"/admin/reports/channels.csv?{WINDOW}")
    assert r.status_code == 200 and "微信入口" in r.content.decode("utf-8-sig")
    r = client.get(f"/admin/reports/models.csv?{WINDOW}&category_id={hand.ids['food']}")
    assert r.status_code == 200 and "火锅" in r.content.decode("utf-8-sig")
    r = client.get("/admin/reports/daily.csv?from=2026-03-05&to=2026-03-01")
    assert r.status_code == 422 and "开始日期不能晚于结束日期" in r.text


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("from=2026-13-01", "date_from", "请输入有效的开始日期"),
        ("from=abc&to=2026-03-01", "date_from", "请输入有效的开始日期"),
        ("to=2026-02-30", "date_to", "请输入有效的结束日期"),
        ("from=2026-03-05&to=2026-03-01", "date_from", "开始日期不能晚于结束日期"),
        ("from=2024-01-01&to=2026-03-01", "date_to", "报表时间跨度最多 400 天"),
        ("from=1999-12-31&to=2000-01-02", "date_from", "日期须在"),
        ("category_id=abc", "category_id", "请选择有效的类目"),
        ("category_id=999999", "category_id", "类目不存在"),
        ("merchant_id=-1", "merchant_id", "请选择有效的商户"),
        ("merchant_id=999999", "merchant_id", "商户不存在"),
    ],
)
def test_bad_input_is_a_chinese_error_next_to_the_field(
    pages: PageClient, world: World, query: str, field: str, message: str
) -> None:
    r = pages.sign_in(world.operator_id).get(f"/admin/reports?{query}")
    assert r.status_code == 422, r.text
    error = field_error(r.text, field)
    assert error and message in error, (error, r.text[-2000:])
    assert 'aria-invalid="true"' in r.text


def test_only_operators_see_reports_and_channels(pages: PageClient, world: World) -> None:
    urls = [
        "/admin/reports",
        "/admin/reports/channels.csv",
        "/admin/reports/models.csv",
        "/admin/reports/daily.csv",
        "/admin/channels",
    ]
    for url in urls:
        r = pages.sign_in(None).get(url)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=/admin/")
        for user in (world.consumer_id, world.a.owner_id, world.a.clerk_id):
            r = pages.sign_in(user).get(url)
            assert r.status_code == 403, (url, r.status_code)
        assert pages.sign_in(world.operator_id).get(url).status_code == 200, url
    before = channel_count(world)
    r = pages.sign_in(world.a.owner_id).form_post(
        "/admin/channels", {"code": "sneaky", "name": "偷偷建", "kind": "other"}
    )
    assert r.status_code == 403 and channel_count(world) == before


def test_channels_list_with_promo_link_qr_and_recent_figures(
    pages: PageClient, world: World, hand: History
) -> None:
    client = pages.sign_in(world.operator_id)
    r = client.get("/admin/channels")
    assert r.status_code == 200
    assert 'href="http://127.0.0.1:8000/?ch=wx"' in r.text
    assert 'src="/admin/channels/wx/qr.svg"' in r.text
    assert "超级App入口" in r.text and "启用中" in r.text
    assert 'data-testid="recent"' in r.text
    qr = client.get("/admin/channels/wx/qr.svg")
    assert qr.status_code == 200 and qr.headers["content-type"].startswith("image/svg+xml")
    ET.fromstring(qr.content)
    assert client.get("/admin/channels/nope/qr.svg").status_code == 404


def test_create_channel_with_field_errors_then_ok(pages: PageClient, world: World) -> None:
    client = pages.sign_in(world.operator_id)
    r = client.form_post("/admin/channels", {"code": "坏 code!", "name": "", "kind": "tv"})
    assert r.status_code == 422
    assert "渠道编码只能包含" in (field_error(r.text, "code") or "")
    assert field_error(r.text, "name") == "请填写渠道名称（1–100 字）"
    assert field_error(r.text, "kind") == "请选择渠道类型"
    assert 'value="坏 code!"' in r.text  # what was typed stays
    assert channel_count(world) == 0

    r = client.form_post(
        "/admin/channels", {"code": "Metro-Line1", "name": "地铁1号线海报", "kind": "poster_qr"}
    )
    assert r.status_code == 303 and r.headers["location"] == "/admin/channels"
    page = client.get("/admin/channels").text
    assert "已创建渠道「地铁1号线海报」（metro-line1）" in page
    assert "?ch=metro-line1" in page

    # The same code again (any case): the error is on the code field; nothing is added.
    r = client.form_post(
        "/admin/channels", {"code": "METRO-line1", "name": "重复", "kind": "other"}
    )
    assert r.status_code == 409
    assert field_error(r.text, "code") == "渠道编码 metro-line1 已存在"
    assert channel_count(world) == 1


def test_deactivate_and_activate(pages: PageClient, world: World) -> None:
    with world.db.transaction() as s:
        s.add(Channel(code="flyer", name="传单", kind="poster_qr"))
    client = pages.sign_in(world.operator_id)
    r = client.form_post("/admin/channels/flyer/deactivate")
    assert r.status_code == 303
    with world.db.transaction(readonly=True) as s:
        assert s.scalar(select(Channel.is_active).where(Channel.code == "flyer")) is False
    assert "已停用渠道「传单」" in client.get("/admin/channels").text
    assert client.form_post("/admin/channels/flyer/activate").status_code == 303
    with world.db.transaction(readonly=True) as s:
        assert s.scalar(select(Channel.is_active).where(Channel.code == "flyer")) is True
    assert client.form_post("/admin/channels/nope/activate").status_code == 404
    # Without the CSRF token: refused, nothing changes.
    assert client.form_post("/admin/channels/flyer/deactivate", token=False).status_code == 403
    with world.db.transaction(readonly=True) as s:
        assert s.scalar(select(Channel.is_active).where(Channel.code == "flyer")) is True
