"""Demo listings for the demo merchants (o2o.demo): goods with SKUs for the shops, deals for the
restaurants, salon, spa and KTV, and deals with time slots for the cinema and the salon.

Idempotent: a listing is looked up by merchant and title; slots are topped up so the next
seven days always have shows and appointments, however often the step runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from o2o.accounts.models import User
from o2o.catalog import service
from o2o.catalog.demo_terms import TERMS
from o2o.catalog.models import Listing
from o2o.catalog.schemas import GoodsListingIn, ServiceListingIn, SkuIn, SlotIn
from o2o.merchants.access import OWNER, load_actor
from o2o.merchants.models import Category, Membership, Merchant
from o2o.timeutil import CHINA_TZ, to_china, utcnow

DEMO_ORDER = 20
SLOT_DAYS = 7


@dataclass(frozen=True)
class Goods:
    title: str
    category: str
    description: str
    skus: tuple[tuple[str, int, int], ...]  # (name, price_fen, stock)
    shipping_fee_fen: int = 0


@dataclass(frozen=True)
class Deal:
    title: str
    description: str
    price_fen: int
    original_price_fen: int
    valid_days: int = 90
    stock: int | None = None
    per_user_limit: int | None = None
    refund_anytime: bool = True
    auto_refund_on_expiry: bool = True
    # Daily slots (China time): start times, length in minutes, capacity.
    slot_starts: tuple[str, ...] = ()
    slot_minutes: int = 60
    slot_capacity: int = 0
    category: str | None = None  # default: the merchant's category


@dataclass(frozen=True)
class Catalogue:
    merchant: str
    items: tuple[Goods | Deal, ...] = field(default_factory=tuple)


HOURLY = tuple(f"{h:02d}:00" for h in range(10, 21))

CATALOGUES: list[Catalogue] = [
    Catalogue(
        "深城书房",
        (
            Goods(
                "《三体》全三册 刘慈欣科幻经典",
                "图书",
                "雨果奖获奖作品，中国科幻里程碑。正版现货，塑封发货。",
                (("平装套装", 9300, 120), ("精装典藏版", 16800, 40)),
            ),
            Goods(
                "《明朝那些事儿》全九册",
                "图书",
                "当年明月著，通俗有趣的明史读本。",
                (("平装全套", 19800, 60),),
            ),
            Goods(
                "《深圳传：未来的世界之城》",
                "图书",
                "讲述深圳四十余年的城市故事。",
                (("单册", 5800, 80),),
            ),
            Goods(
                "《猜猜我有多爱你》儿童绘本",
                "图书",
                "经典亲子共读绘本，适合 3–6 岁。",
                (("平装", 3280, 200), ("精装", 4980, 100)),
            ),
        ),
    ),
    Catalogue(
        "华强北数码优品",
        (
            Goods(
                "Apple iPhone 16 5G手机 国行正品",
                "手机",
                "A18 芯片，4800 万像素融合式主摄。全国联保，顺丰包邮。",
                (
                    ("黑色 128GB", 599900, 20),
                    ("白色 128GB", 599900, 15),
                    ("黑色 256GB", 699900, 10),
                ),
            ),
            Goods(
                "华为 FreeBuds Pro 4 无线降噪蓝牙耳机",
                "数码",
                "智慧动态降噪，高清空间音频，续航 33 小时。",
                (("冰霜银", 129900, 30), ("雅川青", 129900, 25)),
            ),
            Goods(
                "安克 65W 氮化镓快充充电器",
                "电脑配件",
                "三口快充，手机笔记本一个搞定，小巧便携。",
                (("单充电头", 14900, 200), ("充电头+C to C 数据线", 17900, 120)),
            ),
            Goods(
                "小米 20000mAh 充电宝 22.5W快充",
                "电脑配件",
                "大容量双向快充，可带上飞机。",
                (("黑色", 12900, 150),),
            ),
        ),
    ),
    Catalogue(
        "鲜果园生鲜",
        (
            Goods(
                "海南金煌芒果 产地直发",
                "水果",
                "单果 300g 以上，香甜少纤维，坏果包赔。",
                (("5斤装", 5990, 100), ("10斤装", 10900, 60)),
            ),
            Goods(
                "智利进口车厘子 礼盒装",
                "水果",
                "空运直达，冷链配送，果径 28mm 以上。",
                (("JJ级 2斤", 13900, 50), ("JJJ级 2斤", 17900, 30)),
            ),
            Goods(
                "当季鲜果拼盘礼盒",
                "水果",
                "五种当季水果搭配，同城冷链到家。",
                (("标准装 约4斤", 8800, 40),),
                shipping_fee_fen=800,
            ),
        ),
    ),
    Catalogue(
        "蜀香居重庆老火锅",
        (
            Deal(
                "重庆老火锅双人套餐",
                "牛油红锅/鸳鸯锅底任选，含鲜毛肚、嫩牛肉、鸭肠、黄喉等 10 道菜品。",
                19800,
                29800,
                per_user_limit=5,
            ),
            Deal(
                "重庆老火锅4人套餐",
                "鸳鸯锅底，含鲜毛肚、雪花肥牛、虾滑等 16 道菜品，赠酸梅汤一扎。",
                36800,
                56800,
            ),
            Deal(
                "100元代金券",
                "全场通用，可叠加使用，酒水除外。",
                8800,
                10000,
                stock=500,
                per_user_limit=2,
            ),
        ),
    ),
    Catalogue(
        "潮汕八合里牛肉火锅",
        (
            Deal(
                "潮汕牛肉火锅4人餐",
                "清汤锅底，吊龙、匙柄、嫩肉、五花趾、牛肉丸，现切鲜牛肉 1.5 斤。",
                38800,
                52800,
            ),
            Deal(
                "鲜切牛肉双人套餐",
                "吊龙、嫩肉、牛肉丸、时蔬拼盘、手打粿条。",
                21800,
                29800,
            ),
        ),
    ),
    Catalogue(
        "湘里人家湘菜馆",
        (
            Deal(
                "招牌剁椒鱼头3-4人餐",
                "剁椒鱼头、农家小炒肉、手撕包菜、擂辣椒皮蛋、米饭 4 份。",
                23800,
                33600,
            ),
            Deal(
                "湘味小炒双人餐",
                "辣椒炒肉、酸豆角肉末、清炒时蔬、米饭 2 份。",
                12800,
                17600,
            ),
        ),
    ),
    Catalogue(
        "深蓝日料",
        (
            Deal(
                "主厨刺身寿司双人套餐",
                "三文鱼、北极贝、甜虾刺身拼盘，主厨握寿司 8 贯，味噌汤 2 份。",
                39800,
                58800,
                valid_days=60,
            ),
            Deal("三文鱼刺身拼盘", "挪威三文鱼刺身 12 片，现切现上。", 12800, 16800),
        ),
    ),
    Catalogue(
        "老街肠粉王",
        (
            Deal("鲜虾肠粉+艇仔粥 单人早餐", "现拉鲜虾肠粉一份，艇仔粥一碗。", 1990, 2800),
            Deal("招牌肠粉双人套餐", "鲜虾肠、牛肉肠各一份，叉烧包 2 个，豆浆 2 杯。", 3990, 5600),
        ),
    ),
    Catalogue(
        "丝域造型沙龙",
        (
            Deal(
                "资深发型师洗剪吹",
                "资深发型师一对一设计，含洗发、精剪、吹造型。需提前预约时段。",
                6800,
                12800,
                valid_days=30,
                slot_starts=HOURLY,
                slot_minutes=60,
                slot_capacity=3,
            ),
            Deal(
                "烫染护理套餐",
                "进口药水烫发或染发任选其一，含深层护理，长短发同价。",
                39800,
                68800,
                valid_days=60,
            ),
        ),
    ),
    Catalogue(
        "悦享足疗养生馆",
        (
            Deal("中式足疗60分钟", "中药泡脚 + 足底按摩，舒缓疲劳。", 9800, 16800),
            Deal("足疗+肩颈推拿90分钟", "足疗 60 分钟 + 肩颈推拿 30 分钟。", 15800, 25800),
        ),
    ),
    Catalogue(
        "光影星空影城",
        (
            Deal(
                "2D电影票 单人",
                "任选 2D 场次，选座以影城现场为准。按场次预订，场次开始后不可使用。",
                3990,
                6000,
                valid_days=30,
                per_user_limit=6,
                slot_starts=("10:30", "13:15", "16:00", "19:00", "21:40"),
                slot_minutes=140,
                slot_capacity=96,
            ),
            Deal(
                "IMAX 3D电影票 单人",
                "IMAX 巨幕厅，含 3D 眼镜。按场次预订。",
                6990,
                9900,
                valid_days=30,
                per_user_limit=6,
                slot_starts=("11:00", "14:30", "18:30", "21:20"),
                slot_minutes=150,
                slot_capacity=180,
            ),
            Deal(
                "双人观影套餐（2张2D票+爆米花可乐）",
                "2D 电影票 2 张，中份爆米花 1 桶，可乐 2 杯。30 天内到店兑换。",
                9900,
                15600,
                valid_days=30,
            ),
        ),
    ),
    Catalogue(
        "嗨唱量贩KTV",
        (
            Deal(
                "小包欢唱3小时（含果盘）",
                "周一至周日 12:00–18:00 可用，2–4 人小包，赠果盘一份。",
                8800,
                19800,
            ),
            Deal(
                "中包欢唱4小时+啤酒一打",
                "全时段可用，5–8 人中包，含啤酒 12 支、小吃拼盘。",
                26800,
                49800,
            ),
        ),
    ),
]


def _slots_for(deal: Deal, store_ids: list[int], now: datetime) -> list[SlotIn]:
    today = to_china(now).date()
    slots = []
    for day in range(SLOT_DAYS):
        date = today + timedelta(days=day)
        for start in deal.slot_starts:
            hour, minute = (int(x) for x in start.split(":"))
            starts_at = datetime.combine(date, time(hour, minute), tzinfo=CHINA_TZ)
            if starts_at <= now + timedelta(minutes=5):
                continue
            for store_id in store_ids:
                slots.append(
                    SlotIn(
                        store_id=store_id,
                        starts_at=starts_at,
                        ends_at=starts_at + timedelta(minutes=deal.slot_minutes),
                        capacity=deal.slot_capacity,
                    )
                )
    return slots


def load_demo(session: Session) -> int:
    created = 0
    categories = {c.name: c.id for c in session.scalars(select(Category))}
    now = utcnow()
    for catalogue in CATALOGUES:
        merchant = session.scalar(select(Merchant).where(Merchant.name == catalogue.merchant))
        if merchant is None or merchant.status != "approved":
            continue
        owner = session.scalar(
            select(User)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.merchant_id == merchant.id, Membership.role == OWNER)
            .order_by(Membership.id)
        )
        if owner is None:
            continue
        actor = load_actor(session, owner)
        store_ids = [s.id for s in merchant.stores]
        for spec in catalogue.items:
            listing = session.scalar(
                select(Listing).where(
                    Listing.merchant_id == merchant.id, Listing.title == spec.title
                )
            )
            if listing is None:
                listing = service.create_listing(
                    session, actor, merchant.id, _listing_in(spec, merchant, store_ids, categories)
                )
                # Published once when created; a later unpublish by the merchant stands.
                service.publish(session, actor, listing.id)
                created += 1
            if isinstance(spec, Deal) and spec.slot_starts and listing.requires_slot:
                stores = [s for s in store_ids if s in listing.store_ids]
                slots = _slots_for(spec, stores, now)
                if slots:
                    created += len(
                        service.add_slots(session, actor, listing.id, slots, skip_existing=True)
                    )
    return created


def _listing_in(
    spec: Goods | Deal, merchant: Merchant, store_ids: list[int], categories: dict[str, int]
) -> GoodsListingIn | ServiceListingIn:
    if isinstance(spec, Goods):
        return GoodsListingIn(
            kind="goods",
            title=spec.title,
            description=spec.description,
            category_id=categories[spec.category],
            shipping_fee_fen=spec.shipping_fee_fen,
            skus=[SkuIn(name=n, price_fen=p, stock=s) for n, p, s in spec.skus],
        )
    category_id = categories[spec.category] if spec.category else merchant.category_id
    assert category_id is not None
    return ServiceListingIn(
        kind="service",
        title=spec.title,
        description=spec.description,
        category_id=category_id,
        price_fen=spec.price_fen,
        original_price_fen=spec.original_price_fen,
        store_ids=store_ids,
        valid_days=spec.valid_days,
        stock=spec.stock,
        per_user_limit=spec.per_user_limit,
        refund_anytime=spec.refund_anytime,
        auto_refund_on_expiry=spec.auto_refund_on_expiry,
        requires_slot=bool(spec.slot_starts),
    )


def load_deal_terms(session: Session) -> int:
    """团购详情 for every demo deal that has none (o2o.demo runs this after every other step:
    some demo deals are made by later steps). A deal not in TERMS gets itself as its one item."""
    from o2o.demo import MERCHANTS

    changed = 0
    for listing in session.scalars(
        select(Listing)
        .join(Merchant, Merchant.id == Listing.merchant_id)
        .where(
            Merchant.name.in_([m.name for m in MERCHANTS]),
            Listing.kind == "service",
        )
        .order_by(Listing.id)
    ):
        if listing.deal_rules:  # (a JSON null is not SQL NULL: checked here)
            continue
        owner = session.scalar(
            select(User)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.merchant_id == listing.merchant_id, Membership.role == OWNER)
            .order_by(Membership.id)
        )
        if owner is None:
            continue
        items, rules = TERMS.get(
            listing.title,
            (
                [
                    {
                        "name": listing.title,
                        "quantity": 1,
                        "unit_price_fen": listing.original_price_fen,
                    }
                ],
                {},
            ),
        )
        changes = {"items": items, "rules": rules}
        service.update_listing(session, load_actor(session, owner), listing.id, changes)
        changed += 1
    return changed
