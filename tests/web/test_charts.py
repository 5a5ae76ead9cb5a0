"""The server-side SVG charts (o2o.web.charts): well-formed XML, accessible, proportional,
safe with zero or no data, and every text escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from markupsafe import Markup

from o2o.web import charts
from o2o.web.charts import BarItem, FunnelStep, Series

NS = {"s": "http://www.w3.org/2000/svg"}
EVIL = '<script>alert("x")</script> & 渠道'


def parse(svg: Markup) -> ET.Element:
    assert isinstance(svg, Markup)
    root = ET.fromstring(str(svg))  # raises on anything not well-formed
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("role") == "img"
    title, desc = root.find("s:title", NS), root.find("s:desc", NS)
    assert title is not None and title.text and desc is not None and desc.text
    # aria-labelledby points at the title and the desc.
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    return root


def bars(root: ET.Element) -> list[tuple[float, float, int]]:
    """(width, height, data-value) of every data rect (legend swatches have no data-value)."""
    return [
        (float(r.get("width", 0)), float(r.get("height", 0)), int(r.get("data-value", 0)))
        for r in root.iter("{http://www.w3.org/2000/svg}rect")
        if r.get("data-value") is not None
    ]


def texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]


def test_bar_lengths_are_proportional_and_numbers_are_printed() -> None:
    root = parse(
        charts.bar_chart(
            "各渠道 GMV", [BarItem("微信", 400, "¥4.00"), BarItem("海报", 100), BarItem("无", 0)]
        )
    )
    (w1, _, v1), (w2, _, v2), (w3, _, v3) = bars(root)
    assert (v1, v2, v3) == (400, 100, 0)
    assert w1 > 0 and w2 == pytest.approx(w1 / 4) and w3 == 0
    labels = texts(root)
    assert {"微信", "海报", "¥4.00", "100", "0"} <= set(labels)
    assert "微信 ¥4.00" in root.find("s:desc", NS).text  # type: ignore[union-attr, operator]


def test_grouped_bars_share_one_scale() -> None:
    root = parse(
        charts.grouped_bar_chart(
            "类目 GMV",
            ["美食", "数码"],
            [
                Series("O2O", [300, 0], charts.O2O_COLOUR, ["¥3.00", "¥0.00"]),
                Series("电商", [150, 600], charts.GOODS_COLOUR),
            ],
        )
    )
    widths = {value: width for width, _, value in bars(root)}
    assert widths[300] == pytest.approx(widths[600] / 2)
    assert widths[150] == pytest.approx(widths[600] / 4)
    assert widths[0] == 0
    assert {"美食", "数码", "O2O", "电商", "¥3.00", "600"} <= set(texts(root))


def test_stacked_column_heights_add_up_and_are_proportional() -> None:
    root = parse(
        charts.stacked_column_chart(
            "每日 GMV",
            ["03-01", "03-02", "03-03"],
            [
                Series("O2O", [100, 50, 0], charts.O2O_COLOUR),
                Series("电商", [100, 0, 0], charts.GOODS_COLOUR),
            ],
            totals=["¥2.00", "¥0.50", "¥0.00"],
        )
    )
    heights = [h for _, h, _ in bars(root)]
    # Columns in order, O2O then 电商: day 1 = 200 (the tallest), day 2 = 50, day 3 = 0.
    assert heights[0] == heights[1] and heights[0] + heights[1] > 0
    assert heights[2] == pytest.approx((heights[0] + heights[1]) / 4)
    assert heights[3] == heights[4] == heights[5] == 0
    labels = texts(root)
    assert {"03-01", "¥2.00", "¥0.50"} <= set(labels)
    assert "¥0.00" not in labels  # no total over an empty column
    assert "03-02：O2O 50，电商 0，合计 ¥0.50" in root.find("s:desc", NS).text  # type: ignore[union-attr, operator]


def test_many_columns_thin_out_the_axis_labels() -> None:
    days = [f"d{i}" for i in range(60)]
    root = parse(
        charts.stacked_column_chart("60 天", days, [Series("O2O", [1] * 60, charts.O2O_COLOUR)])
    )
    shown = [t for t in texts(root) if t.startswith("d")]
    assert 1 < len(shown) <= 12 and shown[0] == "d0"


def test_funnel_widths_and_conversion_texts() -> None:
    root = parse(
        charts.funnel_chart(
            "微信 转化漏斗",
            [
                FunnelStep("访问", 200),
                FunnelStep("独立访客", 100, "访客/访问 50.0%"),
                FunnelStep("结算", 0, "访客→结算 0.0%"),
            ],
        )
    )
    (w1, _, _), (w2, _, _), (w3, _, _) = bars(root)
    assert w2 == pytest.approx(w1 / 2) and w3 == 0
    labels = texts(root)
    assert "↓ 访客/访问 50.0%" in labels and "200" in labels and "0" in labels


@pytest.mark.parametrize(
    "svg",
    [
        lambda: charts.bar_chart("空", []),
        lambda: charts.bar_chart("零", [BarItem("a", 0), BarItem("b", 0)]),
        lambda: charts.grouped_bar_chart("空", [], []),
        lambda: charts.grouped_bar_chart("零", ["x"], [Series("O2O", [0], charts.O2O_COLOUR)]),
        lambda: charts.stacked_column_chart("空", [], []),
        lambda: charts.stacked_column_chart("零", ["d"], [Series("a", [0], charts.O2O_COLOUR)]),
        lambda: charts.funnel_chart("空", []),
        lambda: charts.funnel_chart("零", [FunnelStep("访问", 0), FunnelStep("访客", 0, "—")]),
    ],
)
def test_zero_or_no_data_draws_an_empty_chart(svg: object) -> None:
    root = parse(svg())  # type: ignore[operator]
    for width, height, _ in bars(root):
        assert width == 0 or height == 0
    if not bars(root):
        assert "暂无数据" in texts(root)


def test_every_text_is_escaped() -> None:
    for svg in (
        charts.bar_chart(EVIL, [BarItem(EVIL, 5, EVIL)]),
        charts.grouped_bar_chart(EVIL, [EVIL], [Series(EVIL, [1], '"><script>', [EVIL])]),
        charts.stacked_column_chart(EVIL, [EVIL], [Series(EVIL, [1], charts.O2O_COLOUR)]),
        charts.funnel_chart(EVIL, [FunnelStep(EVIL, 3), FunnelStep(EVIL, 1, EVIL)]),
    ):
        root = parse(svg)
        assert not list(root.iter("script")) and not list(root.iter(f"{{{NS['s']}}}script"))
        assert "<script>" not in str(svg)
        assert EVIL in root.find("s:title", NS).text  # type: ignore[union-attr, operator]


def test_long_labels_are_shortened_but_kept_in_the_description() -> None:
    name = "一个名字非常非常长的合作渠道入口页面"
    root = parse(charts.bar_chart("渠道", [BarItem(name, 1)]))
    shown = texts(root)[0]
    assert shown.endswith("…") and len(shown) < len(name)
    assert name in root.find("s:desc", NS).text  # type: ignore[union-attr, operator]
