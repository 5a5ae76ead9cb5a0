"""Demo data around Shenzhen, loaded on first start of the embedded default and by ``o2o demo``.

Every step is idempotent (it looks for its records by natural key first), so ``o2o demo`` can run
any number of times. Later domains append their own steps to ``DEMO_STEPS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from o2o import meta
from o2o.accounts import service as accounts
from o2o.accounts.models import User
from o2o.config import Settings
from o2o.db import Database
from o2o.merchants.models import Category, Membership, MembershipStore, Merchant, Store
from o2o.registry import domain_modules
from o2o.timeutil import utcnow

DEMO_LOADED_KEY = "demo_loaded_at"

# Credentials the README lists.
OPERATOR = ("13800000000", "o2o-admin-2026", "平台运营小王")
CONSUMER = ("13900000001", "o2o-demo-2026", "张小凡")
DEMO_PASSWORD = "o2o-demo-2026"

CATEGORIES: list[tuple[str, str, int, list[str]]] = [
    # (name, icon, commission bp, children)
    ("美食", "🍲", 600, ["火锅", "川湘菜", "日料", "小吃快餐"]),
    ("休闲娱乐", "🎤", 800, ["KTV", "足疗按摩"]),
    ("丽人", "💇", 1000, ["美发", "美甲"]),
    ("电影", "🎬", 500, []),
    ("数码", "📱", 300, ["手机", "电脑配件"]),
    ("食品生鲜", "🍎", 400, ["水果", "零食"]),
    ("图书", "📚", 200, []),
]


@dataclass(frozen=True)
class DemoStore:
    name: str
    address: str
    district: str
    lat: float
    lng: float


@dataclass(frozen=True)
class DemoMerchant:
    name: str
    category: str
    owner_phone: str
    owner_name: str
    description: str
    stores: tuple[DemoStore, ...]
    clerk_phone: str | None = None


MERCHANTS: list[DemoMerchant] = [
    DemoMerchant(
        "蜀香居重庆老火锅",
        "火锅",
        "13700000001",
        "李老板",
        "正宗重庆牛油火锅，现切鲜毛肚",
        (
            DemoStore("南山海岸城店", "文心五路33号海岸城购物中心4楼", "南山区", 22.5170, 113.9360),
            DemoStore("福田购物公园店", "福华三路购物公园B1层", "福田区", 22.5347, 114.0520),
        ),
        clerk_phone="13600000001",
    ),
    DemoMerchant(
        "潮汕八合里牛肉火锅",
        "火锅",
        "13700000002",
        "陈老板",
        "每日鲜宰潮汕黄牛，吊龙匙柄现切",
        (DemoStore("车公庙店", "深南大道6015号本元大厦1楼", "福田区", 22.5380, 114.0230),),
    ),
    DemoMerchant(
        "湘里人家湘菜馆",
        "川湘菜",
        "13700000003",
        "周老板",
        "地道湘味小炒，剁椒鱼头招牌",
        (DemoStore("科技园店", "科苑路15号科兴科学园B座", "南山区", 22.5405, 113.9530),),
    ),
    DemoMerchant(
        "深蓝日料",
        "日料",
        "13700000004",
        "林老板",
        "新鲜刺身与寿司，主厨定制套餐",
        (DemoStore("罗湖万象城店", "宝安南路1881号万象城L5", "罗湖区", 22.5410, 114.1110),),
    ),
    DemoMerchant(
        "老街肠粉王",
        "小吃快餐",
        "13700000005",
        "黄老板",
        "广式现拉肠粉，早茶点心",
        (DemoStore("东门老街店", "解放路东门老街步行街12号", "罗湖区", 22.5480, 114.1180),),
    ),
    DemoMerchant(
        "丝域造型沙龙",
        "美发",
        "13700000006",
        "吴老板",
        "资深发型师洗剪吹、烫染护理",
        (
            DemoStore(
                "南山后海店", "后海大道2388号怡化金融科技大厦1楼", "南山区", 22.5230, 113.9400
            ),
        ),
    ),
    DemoMerchant(
        "悦享足疗养生馆",
        "足疗按摩",
        "13700000007",
        "郑老板",
        "中式足疗、肩颈推拿，环境安静",
        (DemoStore("福田中心店", "福华路88号中心商务大厦2楼", "福田区", 22.5360, 114.0590),),
    ),
    DemoMerchant(
        "光影星空影城",
        "电影",
        "13700000008",
        "冯老板",
        "IMAX 巨幕，杜比全景声",
        (DemoStore("南山欢乐颂店", "南海大道2163号来福士广场5楼", "南山区", 22.5190, 113.9270),),
    ),
    DemoMerchant(
        "嗨唱量贩KTV",
        "KTV",
        "13700000009",
        "何老板",
        "大中小包厢，欢唱套餐含果盘酒水",
        (DemoStore("罗湖国贸店", "人民南路3002号国贸商住大厦3楼", "罗湖区", 22.5390, 114.1190),),
    ),
    DemoMerchant(
        "深城书房",
        "图书",
        "13700000010",
        "许老板",
        "人文社科与童书，正版图书包邮",
        (DemoStore("福田中心书城店", "福中一路2014号中心书城北区", "福田区", 22.5430, 114.0560),),
    ),
    DemoMerchant(
        "华强北数码优品",
        "手机",
        "13700000011",
        "邓老板",
        "手机、耳机、充电配件，正品行货",
        (DemoStore("华强北店", "华强北路1002号赛格广场3楼", "福田区", 22.5440, 114.0860),),
    ),
    DemoMerchant(
        "鲜果园生鲜",
        "水果",
        "13700000012",
        "曾老板",
        "产地直采当季水果，冷链到家",
        (DemoStore("东门店", "东门中路2033号", "罗湖区", 22.5485, 114.1200),),
    ),
]

PENDING_APPLICATION = DemoMerchant(
    "小蛮腰烧烤", "小吃快餐", "13700000099", "马老板", "夜宵烧烤，新店申请入驻", ()
)


def _user(session: Session, phone: str, name: str, password: str = DEMO_PASSWORD) -> User:
    user = accounts.find_by_phone(session, phone)
    return user or accounts.register(session, phone=phone, password=password, name=name)


def load_accounts_and_merchants(session: Session) -> int:
    created = 0
    if accounts.find_by_phone(session, OPERATOR[0]) is None:
        accounts.create_admin(session, phone=OPERATOR[0], password=OPERATOR[1], name=OPERATOR[2])
        created += 1
    if accounts.find_by_phone(session, CONSUMER[0]) is None:
        _user(session, CONSUMER[0], CONSUMER[2], CONSUMER[1])
        created += 1

    categories: dict[str, Category] = {c.name: c for c in session.scalars(select(Category)).all()}
    for sort_order, (name, icon, rate, children) in enumerate(CATEGORIES):
        parent = categories.get(name)
        if parent is None:
            parent = Category(name=name, icon=icon, commission_bp=rate, sort_order=sort_order)
            session.add(parent)
            session.flush()
            categories[name] = parent
            created += 1
        for child_order, child in enumerate(children):
            if child not in categories:
                node = Category(
                    name=child, parent_id=parent.id, commission_bp=rate, sort_order=child_order
                )
                session.add(node)
                session.flush()
                categories[child] = node
                created += 1

    now = utcnow()
    for spec in [*MERCHANTS, PENDING_APPLICATION]:
        if session.scalar(select(Merchant).where(Merchant.name == spec.name)) is not None:
            continue
        owner = _user(session, spec.owner_phone, spec.owner_name)
        approved = bool(spec.stores)
        merchant = Merchant(
            name=spec.name,
            contact_phone=spec.owner_phone,
            license_no=f"91440300MA5{owner.id:07d}",
            category_id=categories[spec.category].id,
            description=spec.description,
            status="approved" if approved else "pending",
            reviewed_at=now if approved else None,
        )
        session.add(merchant)
        session.flush()
        session.add(Membership(user_id=owner.id, merchant_id=merchant.id, role="owner"))
        stores = []
        for s in spec.stores:
            store = Store(
                merchant_id=merchant.id,
                name=s.name,
                address=s.address,
                city="深圳市",
                district=s.district,
                lat=s.lat,
                lng=s.lng,
                phone="0755-" + spec.owner_phone[-8:],
                opening_hours="10:00-22:00",
            )
            session.add(store)
            stores.append(store)
        session.flush()
        if spec.clerk_phone:
            clerk = _user(session, spec.clerk_phone, "店员小刘")
            membership = Membership(user_id=clerk.id, merchant_id=merchant.id, role="clerk")
            membership.stores = [MembershipStore(store_id=stores[0].id)]
            session.add(membership)
        created += 1 + len(stores)
        session.flush()
    return created


def demo_steps() -> list[Callable[[Session], int]]:
    """The base step, then each domain's ``o2o/<domain>/demo.py`` (``load_demo(session)``),
    ordered by its ``DEMO_ORDER``. Every step must be idempotent."""
    modules = sorted(domain_modules("demo"), key=lambda m: getattr(m, "DEMO_ORDER", 100))
    from o2o.catalog.demo import load_deal_terms

    # Last: contents and rules of every demo deal, including those later steps made.
    return [load_accounts_and_merchants, *(m.load_demo for m in modules), load_deal_terms]


def load(db: Database, settings: Settings | None = None) -> int:
    """Every step; with ``settings``, also the pictures (they need the media directory)."""
    created = 0
    for step in demo_steps():
        with db.transaction() as session:
            created += step(session)
    if settings is not None:
        from o2o.media.demo_pictures import load_images
        from o2o.media.storage import storage_for

        created += load_images(db, storage_for(settings))
    with db.transaction() as session:
        meta.set_value(session, DEMO_LOADED_KEY, utcnow().isoformat())
    return created


def load_on_first_start(db: Database, settings: Settings | None = None) -> bool:
    """Load the demo once per database; later starts leave the data alone."""
    with db.transaction(readonly=True) as session:
        if meta.get_value(session, DEMO_LOADED_KEY) is not None:
            return False
    load(db, settings)
    return True
