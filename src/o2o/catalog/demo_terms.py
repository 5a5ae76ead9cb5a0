"""团购详情 of the demo deals (o2o.catalog.demo): what each contains and its rules.

Demo deals state no usable hours (营业时间内可用): the demo history (o2o.reports.demo) redeems
vouchers at simulated times of day, and the browser tests redeem whenever they run. Holiday
exclusions are future dates and only on deals the tests do not redeem.
"""

from __future__ import annotations

from typing import Any

HOLIDAYS_2027 = ["2027-02-05", "2027-02-06", "2027-02-07"]  # 除夕至初二


def _items(*rows: tuple[str, int, int]) -> list[dict[str, Any]]:
    return [{"name": n, "quantity": q, "unit_price_fen": p} for n, q, p in rows]


def _rules(**kw: Any) -> dict[str, Any]:
    return {"booking": "none", "combinable": False, **kw}


HOTPOT = ["锅底另收：牛油红锅 ¥38 / 鸳鸯锅 ¥48", "茶位费 ¥3/人"]

TERMS: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = {
    "重庆老火锅双人套餐": (
        _items(
            ("鲜毛肚", 1, 6800),
            ("嫩牛肉", 1, 4800),
            ("鸭肠", 1, 3200),
            ("黄喉", 1, 3200),
            ("时蔬拼盘", 1, 2800),
            ("手工虾滑", 1, 3800),
            ("酸梅汤", 2, 1600),
        ),
        _rules(people_min=2, people_max=2, extra_charges=HOTPOT),
    ),
    "重庆老火锅4人套餐": (
        _items(
            ("鲜毛肚", 2, 6800),
            ("雪花肥牛", 2, 5800),
            ("虾滑", 2, 3800),
            ("黄喉", 1, 3200),
            ("时蔬拼盘", 2, 2800),
            ("酸梅汤（扎）", 1, 2800),
        ),
        _rules(people_min=3, people_max=4, extra_charges=HOTPOT[1:]),
    ),
    "100元代金券": (
        _items(("代金券面值", 1, 10000)),
        _rules(combinable=True, extra_charges=["酒水不可用"], excluded_dates=HOLIDAYS_2027),
    ),
    "潮汕牛肉火锅4人餐": (
        _items(
            ("吊龙", 1, 12800),
            ("匙柄", 1, 9800),
            ("嫩肉", 1, 8800),
            ("五花趾", 1, 8800),
            ("手打牛肉丸", 1, 4800),
            ("清汤锅底", 1, 2800),
            ("时蔬", 1, 2400),
        ),
        _rules(
            people_min=3, people_max=4, booking="advance", booking_note="周末请提前 1 天电话预约"
        ),
    ),
    "鲜切牛肉双人套餐": (
        _items(
            ("吊龙", 1, 12800),
            ("嫩肉", 1, 8800),
            ("牛肉丸", 1, 4800),
            ("时蔬拼盘", 1, 2400),
            ("手打粿条", 1, 1600),
        ),
        _rules(people_min=2, people_max=2, excluded_dates=HOLIDAYS_2027),
    ),
    "招牌剁椒鱼头3-4人餐": (
        _items(
            ("剁椒鱼头", 1, 16800),
            ("农家小炒肉", 1, 6800),
            ("手撕包菜", 1, 3200),
            ("擂辣椒皮蛋", 1, 3800),
            ("米饭", 4, 300),
        ),
        _rules(people_min=3, people_max=4, excluded_dates=HOLIDAYS_2027),
    ),
    "湘味小炒双人餐": (
        _items(
            ("辣椒炒肉", 1, 6800), ("酸豆角肉末", 1, 4200), ("清炒时蔬", 1, 2800), ("米饭", 2, 300)
        ),
        _rules(people_min=2, people_max=2, excluded_dates=HOLIDAYS_2027),
    ),
    "主厨刺身寿司双人套餐": (
        _items(
            ("刺身拼盘（三文鱼/北极贝/甜虾）", 1, 32800),
            ("主厨握寿司", 8, 2800),
            ("味噌汤", 2, 1200),
        ),
        _rules(
            people_min=2,
            people_max=2,
            booking="advance",
            booking_note="请提前 2 小时预约座位",
            excluded_dates=HOLIDAYS_2027,
        ),
    ),
    "三文鱼刺身拼盘": (
        _items(("挪威三文鱼刺身（片）", 12, 1400)),
        _rules(excluded_dates=HOLIDAYS_2027),
    ),
    "鲜虾肠粉+艇仔粥 单人早餐": (
        _items(("鲜虾肠粉", 1, 1600), ("艇仔粥", 1, 1200)),
        _rules(people_min=1, people_max=1, combinable=True),
    ),
    "招牌肠粉双人套餐": (
        _items(("鲜虾肠粉", 1, 1600), ("牛肉肠粉", 1, 1400), ("叉烧包", 2, 600), ("豆浆", 2, 500)),
        _rules(people_min=2, people_max=2),
    ),
    "资深发型师洗剪吹": (
        _items(("洗发", 1, 3800), ("资深发型师精剪", 1, 6800), ("吹造型", 1, 2200)),
        _rules(booking="advance", booking_note="购买时选择预约时段", people_min=1, people_max=1),
    ),
    "烫染护理套餐": (
        _items(("烫发或染发（二选一）", 1, 48800), ("深层护理", 1, 20000)),
        _rules(
            booking="advance",
            booking_note="请提前 1 天电话预约",
            extra_charges=["超长发（过腰）加收 ¥100"],
            excluded_dates=HOLIDAYS_2027,
        ),
    ),
    "中式足疗60分钟": (
        _items(("中药泡脚", 1, 3800), ("足底按摩 60 分钟", 1, 13000)),
        _rules(people_min=1, people_max=1, excluded_dates=HOLIDAYS_2027),
    ),
    "足疗+肩颈推拿90分钟": (
        _items(("足疗 60 分钟", 1, 16800), ("肩颈推拿 30 分钟", 1, 9000)),
        _rules(people_min=1, people_max=1, excluded_dates=HOLIDAYS_2027),
    ),
    "2D电影票 单人": (
        _items(("2D 电影票", 1, 6000)),
        _rules(
            booking="advance",
            booking_note="购买时选择场次",
            people_min=1,
            people_max=1,
            extra_charges=["特殊场次（首映/点映）不可用"],
        ),
    ),
    "IMAX 3D电影票 单人": (
        _items(("IMAX 3D 电影票", 1, 9000), ("3D 眼镜", 1, 900)),
        _rules(booking="advance", booking_note="购买时选择场次", people_min=1, people_max=1),
    ),
    "双人观影套餐（2张2D票+爆米花可乐）": (
        _items(("2D 电影票", 2, 6000), ("中份爆米花", 1, 2400), ("可乐", 2, 600)),
        _rules(people_min=2, people_max=2, excluded_dates=HOLIDAYS_2027),
    ),
    "小包欢唱3小时（含果盘）": (
        _items(("小包欢唱 3 小时", 1, 16800), ("果盘", 1, 3000)),
        _rules(
            people_min=2,
            people_max=4,
            extra_charges=["超时按 ¥48/小时计"],
            excluded_dates=HOLIDAYS_2027,
        ),
    ),
    "中包欢唱4小时+啤酒一打": (
        _items(("中包欢唱 4 小时", 1, 35800), ("啤酒", 12, 1000), ("小吃拼盘", 1, 2000)),
        _rules(
            people_min=5,
            people_max=8,
            extra_charges=["超时按 ¥68/小时计"],
            excluded_dates=HOLIDAYS_2027,
        ),
    ),
    # Added by o2o.fulfilment.demo and o2o.reports.demo.
    "工作日午市双人餐（不支持退款）": (
        _items(("招牌小炒", 2, 5800), ("例汤", 2, 1600), ("米饭", 2, 300)),
        # Its description says 工作日 11:00–14:00; the rule is not set as data because the demo
        # history redeems it at simulated times (see the module's note).
        _rules(people_min=2, people_max=2),
    ),
    "手机贴膜+深度清洁 到店服务": (
        _items(("高清钢化膜", 1, 5800), ("手机深度清洁消毒", 1, 3000)),
        _rules(people_min=1, people_max=1, combinable=True),
    ),
}

# Opening hours by the merchant's category (Monday first).
_DAILY = [[{"start": "10:00", "end": "22:00"}]] * 7
_LATE_WEEKEND = [[{"start": "11:00", "end": "23:00"}]] * 4 + [[{"start": "11:00", "end": "02:00"}]] * 2 + [[{"start": "11:00", "end": "23:00"}]]  # fmt: skip
STORE_HOURS: dict[str, list[list[dict[str, str]]]] = {
    "火锅": _LATE_WEEKEND,
    "川湘菜": [[{"start": "10:30", "end": "14:00"}, {"start": "16:30", "end": "21:30"}]] * 7,
    "日料": [[{"start": "11:30", "end": "14:30"}, {"start": "17:30", "end": "22:30"}]] * 7,
    "小吃快餐": [[{"start": "06:30", "end": "14:00"}]] * 7,
    "美发": [[{"start": "10:00", "end": "21:00"}]] * 7,
    "足疗按摩": [[{"start": "12:00", "end": "02:00"}]] * 7,
    "电影": [[{"start": "09:00", "end": "01:00"}]] * 7,
    "KTV": [[{"start": "12:00", "end": "02:00"}]] * 7,
}
STORE_CLOSED_DATES = ["2027-02-06"]  # 春节初一


def store_hours_for(category: str) -> dict[str, Any]:
    return {"weekly": STORE_HOURS.get(category, _DAILY), "closed_dates": STORE_CLOSED_DATES}
