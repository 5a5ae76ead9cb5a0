"""Demo history: a month of consumers who arrive through the channels and buy, so that the
operator's reports (channel funnels, GMV by day, "O2O还是电商?") have something to say.

Forty demo consumers (phones 13910000001…; the demo password) land through a channel visit
(their anonymous visits linked to them when they sign up), then over the last ``DAYS`` days —
weekends busier — check out, pay, redeem at the store, take 随时退, get goods shipped and confirm
receipt, or leave an order unpaid until it times out or cancel it.

Everything goes through the real services (checkout with last-touch attribution, the sandbox
payment applied as a verified event, redemption by the merchant's staff, 随时退 and full refunds
with the sandbox's success, shipping, tracking and receipt), replayed in time order with the
clock set to each event's moment (``o2o.timeutil.clock_at``). So every row, number and ledger
posting carries the time it would have had, stock, sales, vouchers and the ledger agree, and
the settlement periods fall on the right days. Nothing is backdated afterwards.

The categories behave differently on purpose (see ``PRODUCTS``): hotpot and salon deals are
redeemed well, 数码 goods convert and are received best, the 休闲娱乐 deals see many 随时退,
the in-store phone service converts poorly. A few listings are added so that 美食, 数码 and 丽人
have both models: hotpot soup base and beef balls shipped home, an in-store phone service,
salon shampoo.

Deterministic (seeded) in its shape; idempotent (a marker in ``meta``): a second run makes
nothing. Order numbers and voucher codes stay random (``secrets``), as always.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from o2o import meta
from o2o.accounts.models import User
from o2o.catalog import service as catalog
from o2o.catalog.models import GOODS, PUBLISHED, Listing, Sku
from o2o.catalog.schemas import GoodsListingIn, ServiceListingIn, SkuIn
from o2o.channels import service as channels
from o2o.channels.models import Channel
from o2o.config import get_settings
from o2o.demo import CONSUMER, DEMO_PASSWORD
from o2o.errors import AppError
from o2o.fulfilment import redemption, vouchers
from o2o.fulfilment.models import Voucher
from o2o.merchants.access import Actor, load_actor
from o2o.merchants.models import Category, Membership, MembershipStore, Merchant
from o2o.orders import service as orders
from o2o.orders.models import CANCELLED_BY_CONSUMER, CANCELLED_BY_TIMEOUT, Order
from o2o.payments import service as payments
from o2o.payments.models import PENDING, Refund
from o2o.payments.providers import EVENT_SUCCEEDED, REFUND_SUCCEEDED, PaymentEvent, RefundEvent
from o2o.reports import facts
from o2o.security import hash_password
from o2o.shipping import service as shipping
from o2o.shipping.demo import TIMELINE, tracking_no
from o2o.timeutil import CHINA_TZ, clock_at, to_china, utcnow

log = logging.getLogger(__name__)

# After orders (40), vouchers (50), shipping (55) and reviews (60); before the ledger (99) and
# settlement, which then find a month of postings.
DEMO_ORDER = 70
MARKER = "demo_history_loaded_at"
SEED = 20260630
DAYS = 30
PHONE_PREFIX = "1391000"  # reserved for these consumers: 13910000001 … 13910000040
# Checkouts per ordinary weekday at the start of the month; weekends ×1.6, growing towards today.
TRIPS_PER_DAY = 5.0
WEEKEND = 1.6

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = ["晓彤", "子涵", "浩然", "雨桐", "俊杰", "思远", "佳怡", "一鸣", "欣然", "志强"]
CONSUMERS = [f"{SURNAMES[i % 20]}{GIVEN[(i * 7) % 10]}" for i in range(40)]

# Where the consumers come from (code, share); the codes are the channels demo's.
HOME_CHANNELS = [
    ("wechat-home", 0.45),
    ("dianping-partner", 0.25),
    ("search-ad", 0.18),
    ("metro-poster", 0.12),
]
ADDRESS_DISTRICTS = ["南山区", "福田区", "罗湖区", "宝安区", "龙华区"]


@dataclass(frozen=True)
class Profile:
    """How a kind of purchase goes. ``pay``: checkouts paid. Deals: each voucher is redeemed
    (``use``) or refunded 随时退 (``refund``), else left unused. Goods: a full refund before
    shipping (``refund``), else shipped and received."""

    pay: float
    use: float = 0.0
    refund: float = 0.0


HOTPOT = Profile(pay=0.93, use=0.9, refund=0.05)
RESTAURANT = Profile(pay=0.88, use=0.84, refund=0.08)
SALON = Profile(pay=0.9, use=0.9, refund=0.04)
LEISURE = Profile(pay=0.85, use=0.5, refund=0.45)  # 休闲娱乐: many 随时退
PHONE_SERVICE = Profile(pay=0.62, use=0.55, refund=0.2)
DIGITAL = Profile(pay=0.96, refund=0.02)
FOOD_GOODS = Profile(pay=0.9, refund=0.04)
FRUIT = Profile(pay=0.85, refund=0.1)
BOOKS = Profile(pay=0.9, refund=0.04)
SHAMPOO = Profile(pay=0.85, refund=0.05)


@dataclass(frozen=True)
class Product:
    merchant: str
    title_prefix: str
    profile: Profile
    weight: int  # copies in the deck the trips draw from
    quantities: tuple[int, ...] = (1,)


PRODUCTS = [
    # 美食 · O2O
    Product("蜀香居重庆老火锅", "重庆老火锅4人套餐", HOTPOT, 9),
    Product("潮汕八合里牛肉火锅", "潮汕牛肉火锅4人餐", HOTPOT, 7),
    Product("潮汕八合里牛肉火锅", "鲜切牛肉双人套餐", HOTPOT, 8, (1, 1, 2)),
    Product("湘里人家湘菜馆", "招牌剁椒鱼头", RESTAURANT, 5),
    Product("湘里人家湘菜馆", "湘味小炒双人餐", RESTAURANT, 5),
    Product("深蓝日料", "主厨刺身寿司双人套餐", RESTAURANT, 4),
    Product("深蓝日料", "三文鱼刺身拼盘", RESTAURANT, 3),
    Product("老街肠粉王", "招牌肠粉双人套餐", RESTAURANT, 4, (1, 2)),
    # 美食 · goods (added below)
    Product("蜀香居重庆老火锅", "蜀香居牛油火锅底料", FOOD_GOODS, 18, (1, 2, 3)),
    Product("潮汕八合里牛肉火锅", "潮汕手打牛肉丸", FOOD_GOODS, 14, (1, 2)),
    # 丽人
    Product("丝域造型沙龙", "烫染护理套餐", SALON, 6),
    Product("丝域造型沙龙", "丝域头皮护理洗发水", SHAMPOO, 4, (1, 2)),
    # 休闲娱乐
    Product("悦享足疗养生馆", "中式足疗60分钟", LEISURE, 5, (1, 2)),
    Product("悦享足疗养生馆", "足疗+肩颈推拿90分钟", LEISURE, 3),
    Product("嗨唱量贩KTV", "小包欢唱3小时", LEISURE, 4),
    Product("嗨唱量贩KTV", "中包欢唱4小时", LEISURE, 2),
    # 数码
    Product("华强北数码优品", "Apple iPhone 16", DIGITAL, 3),
    Product("华强北数码优品", "华为 FreeBuds", DIGITAL, 6),
    Product("华强北数码优品", "安克 65W", DIGITAL, 9, (1, 1, 2)),
    Product("华强北数码优品", "小米 20000mAh", DIGITAL, 8),
    Product("华强北数码优品", "手机贴膜+深度清洁", PHONE_SERVICE, 6),
    # 食品生鲜, 图书
    Product("鲜果园生鲜", "海南金煌芒果", FRUIT, 4),
    Product("鲜果园生鲜", "智利进口车厘子", FRUIT, 3),
    Product("深城书房", "《三体》", BOOKS, 3),
    Product("深城书房", "《猜猜我有多爱你》", BOOKS, 2, (1, 2)),
]


@dataclass(frozen=True)
class NewListing:
    """A listing this step adds so that a category has both models."""

    merchant: str
    title: str
    category: str
    description: str
    skus: tuple[tuple[str, int, int], ...] = ()  # goods: (name, price_fen, stock)
    shipping_fee_fen: int = 0
    price_fen: int = 0  # deal
    original_price_fen: int = 0


NEW_LISTINGS = [
    NewListing(
        "蜀香居重庆老火锅",
        "蜀香居牛油火锅底料 500g 家庭装",
        "火锅",
        "门店同款老火锅底料，在家也能涮出重庆味。常温保存，顺丰包邮。",
        skus=(("微辣", 3990, 600), ("特辣", 3990, 400)),
    ),
    NewListing(
        "潮汕八合里牛肉火锅",
        "潮汕手打牛肉丸 500g 冷链到家",
        "火锅",
        "每日现打，弹牙爆汁，冷链配送到家。",
        skus=(("牛肉丸", 4800, 400), ("牛筋丸", 4800, 300)),
        shipping_fee_fen=800,
    ),
    NewListing(
        "华强北数码优品",
        "手机贴膜+深度清洁 到店服务",
        "手机",
        "到店 15 分钟完成：高清钢化膜一张，手机深度清洁消毒。",
        price_fen=3900,
        original_price_fen=8800,
    ),
    NewListing(
        "丝域造型沙龙",
        "丝域头皮护理洗发水 500ml",
        "美发",
        "沙龙同款头皮护理洗发水，控油蓬松。",
        skus=(("控油型", 8900, 300), ("修护型", 8900, 300)),
    ),
]


# --- the cast ------------------------------------------------------------------------------------


@dataclass
class Buyable:
    listing_id: int
    kind: str
    merchant_id: int
    sku_ids: list[int]
    store_ids: list[int]
    product: Product


@dataclass
class Shopper:
    phone: str
    name: str
    visitor_id: str
    home: str  # channel code
    weight: float
    user_id: int | None = None
    address: dict[str, str] = field(default_factory=dict)


def _visitor(n: int) -> str:
    return hashlib.sha256(f"demo-history-visitor:{n}".encode()).hexdigest()[:24]


def _pick(rng: random.Random, weighted: list[tuple[Any, float]]) -> Any:
    return rng.choices([x for x, _ in weighted], [w for _, w in weighted])[0]


def _owner_and_staff(session: Session, merchant: Merchant) -> tuple[Actor, dict[int, Actor]]:
    """The owner's actor, and per store who redeems there (its clerk if it has one)."""
    members = session.scalars(
        select(Membership).where(Membership.merchant_id == merchant.id).order_by(Membership.id)
    ).all()
    owner_member = next(m for m in members if m.role == "owner")
    owner_user = session.get(User, owner_member.user_id)
    assert owner_user is not None
    owner = load_actor(session, owner_user)
    staff = {s.id: owner for s in merchant.stores}
    for member in members:
        if member.role != "clerk":
            continue
        clerk_user = session.get(User, member.user_id)
        assert clerk_user is not None
        clerk = load_actor(session, clerk_user)
        for ms in session.scalars(
            select(MembershipStore).where(MembershipStore.membership_id == member.id)
        ):
            staff[ms.store_id] = clerk
    return owner, staff


def _add_listings(session: Session, owners: dict[str, Actor]) -> int:
    categories = {c.name: c.id for c in session.scalars(select(Category))}
    created = 0
    for spec in NEW_LISTINGS:
        merchant = session.scalar(select(Merchant).where(Merchant.name == spec.merchant))
        actor = owners.get(spec.merchant)
        if merchant is None or actor is None or spec.category not in categories:
            continue
        if session.scalar(
            select(Listing.id).where(
                Listing.merchant_id == merchant.id, Listing.title == spec.title
            )
        ):
            continue
        data: GoodsListingIn | ServiceListingIn
        if spec.skus:
            data = GoodsListingIn(
                kind="goods",
                title=spec.title,
                description=spec.description,
                category_id=categories[spec.category],
                shipping_fee_fen=spec.shipping_fee_fen,
                skus=[SkuIn(name=n, price_fen=p, stock=s) for n, p, s in spec.skus],
            )
        else:
            data = ServiceListingIn(
                kind="service",
                title=spec.title,
                description=spec.description,
                category_id=categories[spec.category],
                price_fen=spec.price_fen,
                original_price_fen=spec.original_price_fen,
                store_ids=[s.id for s in merchant.stores],
                valid_days=90,
            )
        listing = catalog.create_listing(session, actor, merchant.id, data)
        catalog.publish(session, actor, listing.id)
        created += 1
    return created


def _buyables(session: Session) -> list[Buyable]:
    """The products on sale, resolved (deals without slots and without a per-user limit or a
    validity shorter than the month, so that nothing here expires or trips a limit)."""
    found = []
    for product in PRODUCTS:
        listing = session.scalar(
            select(Listing)
            .join(Merchant, Merchant.id == Listing.merchant_id)
            .where(
                Merchant.name == product.merchant,
                Listing.title.startswith(product.title_prefix),
                Listing.status == PUBLISHED,
            )
            .order_by(Listing.id)
            .limit(1)
        )
        if listing is None:
            continue
        if listing.kind != GOODS and (
            listing.requires_slot
            or listing.per_user_limit is not None
            or (listing.valid_days or 0) <= DAYS
        ):
            continue
        sku_ids = list(
            session.scalars(
                select(Sku.id)
                .where(Sku.listing_id == listing.id, Sku.is_active.is_(True))
                .order_by(Sku.id)
            )
        )
        if listing.kind == GOODS and not sku_ids:
            continue
        found.append(
            Buyable(
                listing.id,
                listing.kind,
                listing.merchant_id,
                sku_ids,
                sorted(listing.store_ids or []),
                product,
            )
        )
    return found


class Deck:
    """Products drawn without replacement from a shuffled deck (``weight`` copies each), dealt
    again when empty: each category gets its share whatever the day, not just on average."""

    def __init__(self, rng: random.Random, buyables: list[Buyable]) -> None:
        self.rng = rng
        self.cards = [b for b in buyables for _ in range(b.product.weight)]
        self.left: list[Buyable] = []

    def draw(self) -> Buyable:
        if not self.left:
            self.left = list(self.cards)
            self.rng.shuffle(self.left)
        return self.left.pop()


class Fates:
    """Outcomes dealt from shuffled decks of 20 per (profile, decision) in the profile's
    proportions: a category's rates come out near its profile whatever the day of the run."""

    SIZE = 20

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.decks: dict[tuple[Profile, str], list[str]] = {}

    def deal(self, profile: Profile, decision: str, shares: dict[str, float]) -> str:
        deck = self.decks.setdefault((profile, decision), [])
        if not deck:
            for outcome, share in shares.items():
                deck.extend([outcome] * round(share * self.SIZE))
            deck.extend(["other"] * (self.SIZE - len(deck)))
            self.rng.shuffle(deck)
        return deck.pop()

    def paid(self, profile: Profile) -> bool:
        return self.deal(profile, "pay", {"paid": profile.pay}) == "paid"

    def voucher(self, profile: Profile) -> str:
        """use | refund | other (kept unused)."""
        return self.deal(profile, "voucher", {"use": profile.use, "refund": profile.refund})

    def refunded(self, profile: Profile) -> bool:
        return self.deal(profile, "goods", {"refund": profile.refund}) == "refund"


# --- the simulation ------------------------------------------------------------------------------


class History:
    """A queue of events replayed in time order, each with the clock at its moment."""

    def __init__(self, session: Session, rng: random.Random, now: datetime) -> None:
        self.session = session
        self.rng = rng
        self.now = now
        self.settings = get_settings()
        self.rules = vouchers.redemption_settings()
        self.fates = Fates(rng)
        self.queue: list[tuple[datetime, int, Callable[[], None]]] = []
        self.seq = 0
        self.owners: dict[int, Actor] = {}
        self.staff: dict[int, dict[int, Actor]] = {}
        self.buyables: list[Buyable] = []
        self.orders_made = 0
        self.skipped = 0

    def at(self, moment: datetime, action: Callable[[], None]) -> None:
        """Schedule ``action`` at ``moment``; what would happen after now never happens."""
        if moment < self.now:
            self.seq += 1
            heapq.heappush(self.queue, (moment, self.seq, action))

    def run(self) -> None:
        while self.queue:
            moment, _, action = heapq.heappop(self.queue)
            with clock_at(moment):
                action()
                # Flush inside the clock: column defaults (created_at …) take this moment.
                self.session.flush()

    # --- a shopping trip -------------------------------------------------------------------

    def trip(self, shopper: Shopper, items: list[tuple[Buyable, int]], at: datetime) -> None:
        rng = self.rng
        cart = [
            orders.CartItem(b.listing_id, qty, sku_id=rng.choice(b.sku_ids) if b.sku_ids else None)
            for b, qty in items
        ]
        has_goods = any(b.kind == GOODS for b, _ in items)
        paid = self.fates.paid(min((b.product.profile for b, _ in items), key=lambda p: p.pay))
        pay_after = timedelta(seconds=rng.randrange(40, 480))
        cancel_after = timedelta(seconds=rng.randrange(90, 720))
        timeout = rng.random() < 0.6
        by_listing = {b.listing_id: b for b, _ in items}

        def checkout() -> None:
            assert shopper.user_id is not None
            try:
                with self.session.begin_nested():
                    body = orders.checkout(
                        self.session,
                        self.settings,
                        user_id=shopper.user_id,
                        items=cart,
                        shipping_address=shopper.address if has_goods else None,
                        visitor_id=shopper.visitor_id,  # last-touch attribution, as in the app
                    )
            except AppError as exc:  # e.g. sold out by now: this trip did not happen
                self.skipped += 1
                log.info("demo history: checkout skipped (%s)", exc)
                return
            self.orders_made += len(body["orders"])
            payment_no = body["payment"]["payment_no"]
            if paid:
                self.at(at + pay_after, lambda: self.pay(payment_no, shopper, by_listing))
            elif timeout:
                expires = at + orders.payment_window(self.settings)
                self.at(expires, lambda: self.close(payment_no, CANCELLED_BY_TIMEOUT))
            else:
                self.at(at + cancel_after, lambda: self.close(payment_no, CANCELLED_BY_CONSUMER))

        self.at(at, checkout)

    def close(self, payment_no: str, reason: str) -> None:
        payment = payments.lock_payment(self.session, payment_no=payment_no)
        assert payment is not None
        payments.close_payment(self.session, payment, reason, utcnow())

    def pay(self, payment_no: str, shopper: Shopper, by_listing: dict[int, Buyable]) -> None:
        """What the sandbox cashier does, minus HTTP: start, then the verified success."""
        payment = payments.lock_payment(self.session, payment_no=payment_no)
        assert payment is not None
        payment.provider, payment.method, payment.status = "sandbox", "cashier", PENDING
        payment.started_at = utcnow()
        self.session.flush()
        payments.apply_payment_event(
            self.session,
            PaymentEvent(
                "sandbox",
                payment_no,
                EVENT_SUCCEEDED,
                payment.amount_fen,
                provider_txn_id=f"SB{payment_no}",
            ),
        )
        paid_at = utcnow()
        for order in self.session.scalars(
            select(Order).where(Order.payment_id == payment.id).order_by(Order.id)
        ):
            lines = orders.lines_by_order(self.session, [order.id])[order.id]
            profile = by_listing[lines[0].listing_id].product.profile
            if order.kind == GOODS:
                self.plan_goods(order.order_no, order.merchant_id, shopper, profile, paid_at)
            else:
                self.plan_vouchers(order.id, order.order_no, order.merchant_id, shopper, paid_at)

    # --- deals -----------------------------------------------------------------------------

    def plan_vouchers(
        self, order_id: int, order_no: str, merchant_id: int, shopper: Shopper, paid_at: datetime
    ) -> None:
        rng = self.rng
        issued = self.session.execute(
            select(Voucher.code, Voucher.listing_id, Voucher.store_ids)
            .where(Voucher.order_id == order_id)
            .order_by(Voucher.id)
        ).all()
        profiles = {
            b.listing_id: b.product.profile for b in self.buyables if b.merchant_id == merchant_id
        }
        for code, listing_id, store_ids in issued:
            profile = profiles[listing_id]
            fate = self.fates.voucher(profile)
            if fate == "use":
                # At the store on a later day (or the same evening), in opening hours.
                day = to_china(paid_at).date() + timedelta(days=rng.choice([0, 1, 1, 2, 3, 5, 8]))
                when = datetime.combine(day, time(rng.randrange(11, 21), rng.randrange(60)))
                moment = max(when.replace(tzinfo=CHINA_TZ), paid_at + timedelta(hours=1))
                store_id = rng.choice(sorted(store_ids or []))
                self.at(moment, lambda c=code, s=store_id: self.redeem(merchant_id, c, s))
            elif fate == "refund":
                moment = paid_at + timedelta(minutes=rng.randrange(30, 4 * 24 * 60))
                self.at(moment, lambda c=code: self.refund_voucher(shopper, order_no, c))

    def redeem(self, merchant_id: int, code: str, store_id: int) -> None:
        staff = self.staff[merchant_id].get(store_id) or self.owners[merchant_id]
        redemption.redeem_in(self.session, staff, merchant_id, code, store_id, rules=self.rules)

    def refund_voucher(self, shopper: Shopper, order_no: str, code: str) -> None:
        assert shopper.user_id is not None
        refund = vouchers.refund_vouchers(
            self.session,
            user_id=shopper.user_id,
            order_no=order_no,
            codes=[code],
            reason=self.rng.choice(["计划有变", "朋友临时来不了", "买多了", "不想去了"]),
        )
        self.refund_succeeded(refund)

    def refund_succeeded(self, refund: Refund | None) -> None:
        """The sandbox pays back within the minute (what the worker's sweep would learn)."""
        if refund is None:
            return
        self.session.flush()
        with clock_at(utcnow() + timedelta(seconds=self.rng.randrange(20, 90))):
            payments.apply_refund_event(
                self.session,
                RefundEvent("sandbox", refund.refund_no, REFUND_SUCCEEDED, refund.amount_fen),
            )
            self.session.flush()

    # --- goods -----------------------------------------------------------------------------

    def plan_goods(
        self,
        order_no: str,
        merchant_id: int,
        shopper: Shopper,
        profile: Profile,
        paid_at: datetime,
    ) -> None:
        rng = self.rng
        if self.fates.refunded(profile):
            moment = paid_at + timedelta(minutes=rng.randrange(10, 180))
            self.at(moment, lambda: self.full_refund(shopper, order_no))
            return
        shipped_at = paid_at + timedelta(minutes=rng.randrange(3 * 60, 30 * 60))
        received_at = shipped_at + timedelta(hours=rng.randrange(26, 100))
        carrier = rng.choice(["SF", "SF", "ZTO", "JD"])
        self.at(shipped_at, lambda: self.ship(merchant_id, order_no, carrier))
        self.at(received_at, lambda: self.receive(shopper, order_no, carrier, shipped_at))

    def full_refund(self, shopper: Shopper, order_no: str) -> None:
        assert shopper.user_id is not None
        refund = payments.consumer_full_refund(
            self.session,
            user_id=shopper.user_id,
            order_no=order_no,
            reason=self.rng.choice(["拍错了规格", "不想要了", "地址填错了"]),
        )
        self.refund_succeeded(refund)

    def ship(self, merchant_id: int, order_no: str, carrier: str) -> None:
        order = self.session.scalar(select(Order).where(Order.order_no == order_no))
        assert order is not None
        shipping.ship(
            self.session,
            self.owners[merchant_id],
            merchant_id,
            order_no,
            carrier=carrier,
            tracking_no=tracking_no(carrier, order),
        )

    def receive(self, shopper: Shopper, order_no: str, carrier: str, shipped_at: datetime) -> None:
        assert shopper.user_id is not None
        order = self.session.scalar(select(Order).where(Order.order_no == order_no))
        assert order is not None
        now = utcnow()
        # The carrier's timeline up to delivery, spread between shipping and now.
        step = (now - shipped_at) / (len(TIMELINE) + 1)
        events = [
            shipping.Event(shipped_at + step * (i + 1), status, text, where)
            for i, (status, text, where) in enumerate(TIMELINE)
        ]
        shipping.apply_tracking(self.session, carrier, tracking_no(carrier, order), events, now=now)
        shipping.confirm_receipt(self.session, shopper.user_id, order_no, now=now)


# --- the step ------------------------------------------------------------------------------------


def _trip_moment(rng: random.Random, day: datetime) -> datetime:
    """A shopping moment on that China day: lunch and evening peaks."""
    hour = rng.choices(range(9, 24), [1, 2, 4, 6, 5, 3, 3, 3, 4, 6, 7, 6, 4, 3, 2])[0]
    return day + timedelta(hours=hour, minutes=rng.randrange(60), seconds=rng.randrange(60))


def load_demo(session: Session) -> int:
    if meta.get_value(session, MARKER) is not None:
        return 0
    if session.scalar(select(User.id).where(User.phone == f"{PHONE_PREFIX}0001")) is not None:
        return 0  # made by an earlier run (marker lost): never twice
    known = {c.code: c.id for c in session.scalars(select(Channel).where(Channel.is_active))}
    homes = [(code, share) for code, share in HOME_CHANNELS if code in known]
    if not homes:
        return 0  # the channels demo did not run
    rng = random.Random(SEED)
    now = utcnow()
    # The first of the ``DAYS`` China days ending today (the reports' default window).
    today = to_china(now).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=DAYS - 1)
    history = History(session, rng, now)
    created = 0

    # The merchants' people, and the listings that give 美食, 数码, 丽人 both models.
    merchant_names = {p.merchant for p in PRODUCTS}
    by_name: dict[str, Actor] = {}
    for merchant in session.scalars(
        select(Merchant).where(Merchant.name.in_(merchant_names), Merchant.status == "approved")
    ):
        owner, staff = _owner_and_staff(session, merchant)
        history.owners[merchant.id], history.staff[merchant.id] = owner, staff
        by_name[merchant.name] = owner
    with clock_at(start - timedelta(days=2)):
        created += _add_listings(session, by_name)
        session.flush()
    buyables = _buyables(session)
    if not buyables:
        return created
    history.buyables = buyables
    deck = Deck(rng, buyables)

    # The consumers: the demo password's hash computed once (argon2 is slow on purpose).
    demo_hash = session.scalar(select(User.password_hash).where(User.phone == CONSUMER[0]))
    if demo_hash is None or CONSUMER[1] != DEMO_PASSWORD:
        demo_hash = hash_password(DEMO_PASSWORD)
    shoppers = [
        Shopper(
            phone=f"{PHONE_PREFIX}{i + 1:04d}",
            name=name,
            visitor_id=_visitor(i),
            home=_pick(rng, homes),
            # A few regulars buy often: repeat purchases.
            weight=rng.choice([1.0, 1.0, 1.0, 1.5, 3.0]),
            address={
                "name": name,
                "phone": f"{PHONE_PREFIX}{i + 1:04d}",
                "province": "广东省",
                "city": "深圳市",
                "district": rng.choice(ADDRESS_DISTRICTS),
                "detail": f"幸福路{rng.randrange(1, 300)}号{rng.randrange(1, 30)}栋{rng.randrange(101, 2800)}",
            },
        )
        for i, name in enumerate(CONSUMERS)
    ]

    # Trips day by day: weekends busier, a little growth towards today.
    trips: list[tuple[datetime, Shopper]] = []
    for d in range(DAYS):
        day = start + timedelta(days=d)
        mean = TRIPS_PER_DAY * (WEEKEND if day.weekday() >= 5 else 1.0) * (0.85 + 0.3 * d / DAYS)
        for _ in range(max(1, round(rng.gauss(mean, mean / 4)))):
            moment = _trip_moment(rng, day)
            if moment < now - timedelta(minutes=30):
                trips.append((moment, _pick(rng, [(s, s.weight) for s in shoppers])))
    trips.sort(key=lambda t: t[0])

    touches: list[channels.Touch] = []
    first_seen: dict[str, datetime] = {}
    for moment, shopper in trips:
        arrived = moment - timedelta(minutes=rng.randrange(3, 40))
        if shopper.phone not in first_seen:
            # Landed anonymously through the home channel, signed up (the visits are linked).
            first_seen[shopper.phone] = arrived - timedelta(minutes=rng.randrange(5, 60))
            touches.append(
                channels.Touch(
                    shopper.home, shopper.visitor_id, "/", None, first_seen[shopper.phone]
                )
            )
        roll = rng.random()
        if roll < 0.8:  # came back through a channel: mostly the usual one
            code = shopper.home if rng.random() < 0.8 else _pick(rng, homes)
            touches.append(channels.Touch(code, shopper.visitor_id, "/search", None, arrived))
        # else: came back directly (attributed only if a visit is younger than the window)
        items = [deck.draw()]
        if rng.random() < 0.12:  # now and then two things in one checkout (one payment)
            other = deck.draw()
            if other.listing_id != items[0].listing_id:
                items.append(other)
        history.trip(shopper, [(b, rng.choice(b.product.quantities)) for b in items], moment)

    # The consumers exist from their first visit; their visits carry their id.
    for shopper in shoppers:
        if shopper.phone not in first_seen:
            continue
        with clock_at(first_seen[shopper.phone] + timedelta(minutes=2)):
            user = User(phone=shopper.phone, name=shopper.name, password_hash=demo_hash)
            session.add(user)
            session.flush()
        shopper.user_id = user.id
        created += 1
    user_ids = {s.visitor_id: s.user_id for s in shoppers}
    touches = [t._replace(user_id=user_ids.get(t.visitor_id)) for t in touches]
    touches.sort(key=lambda t: t.at)
    created += channels.store_visits(session, touches, known)

    history.run()
    created += history.orders_made
    # Facts for the reports now rather than at the worker's first round (exact either way).
    while facts.refresh(session):
        pass
    meta.set_value(session, MARKER, now.isoformat())
    log.info(
        "demo history: %d orders over %d days, %d trips skipped",
        history.orders_made,
        DAYS,
        history.skipped,
    )
    return created
