"""Demo reviews with merchant replies: the demo consumer reviews the goods the shipping demo
delivered, two more demo shoppers review what they received, and service orders whose voucher
was redeemed (if the vouchers demo redeemed any) are reviewed too.

Through the real services only (orders received via ship + confirm receipt), so every rating
aggregate and the search index agree. Idempotent: a line is reviewed once; demo shoppers'
orders are found again by their note.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from o2o.accounts import service as accounts
from o2o.accounts.models import User
from o2o.demo import CONSUMER, DEMO_PASSWORD
from o2o.errors import AppError
from o2o.orders import service as orders
from o2o.orders.models import Order
from o2o.reviews import service
from o2o.reviews.models import Review
from o2o.shipping.demo import Pick, owner_actor, received_demo_order

DEMO_ORDER = 60

SHOPPERS = [("13900000011", "李思思"), ("13900000012", "王大力")]

# (rating, text, merchant reply or None), used in turn.
WORDS = [
    (5, "包装很用心，物流也快，第二天就到了，好评！", "感谢您的支持，期待再次光临！"),
    (4, "东西不错，和描述一致，就是快递慢了一点。", "抱歉让您久等了，我们会督促快递提速。"),
    (5, "品质很好，已经回购第二次了。", None),
    (3, "还可以，包装有点简陋。", "感谢反馈，我们已经升级了包装。"),
    (5, "服务很贴心，环境也很好，下次还来。", "谢谢您的认可，欢迎常来！"),
]

SHOPPER_ORDERS = [
    ([Pick("深城书房", "《三体》")], "演示评价：三体"),
    ([Pick("鲜果园生鲜", "海南金煌芒果")], "演示评价：芒果"),
    ([Pick("华强北数码优品", "安克 65W")], "演示评价：充电器"),
]


def _shopper(session: Session, phone: str, name: str) -> User:
    user = accounts.find_by_phone(session, phone)
    return user or accounts.register(session, phone=phone, password=DEMO_PASSWORD, name=name)


def _review_open_lines(session: Session, user: User, order: Order, turn: int) -> int:
    """Review every line of the order that can be and is not yet; reply where the words say."""
    created = 0
    for line in orders.lines_by_order(session, [order.id])[order.id]:
        if session.scalar(select(Review.id).where(Review.order_line_id == line.id)) is not None:
            continue
        if not service.consumption(session, order, line)[0]:
            continue
        rating, text, reply = WORDS[(turn + created) % len(WORDS)]
        if order.kind != "goods":
            rating, text, reply = WORDS[4]
        review = service.create_review(
            session, user.id, order.order_no, rating=rating, text=text, line_id=line.id
        )
        if reply:
            service.reply(
                session,
                owner_actor(session, order.merchant_id),
                order.merchant_id,
                review.id,
                reply,
            )
        created += 1
    return created


def load_demo(session: Session) -> int:
    created = 0
    consumer = accounts.find_by_phone(session, CONSUMER[0])
    if consumer is not None:
        # Everything the demo consumer has received or used (goods received; a service order
        # counts once a voucher of it was redeemed: consumption() checks the line).
        mine = session.scalars(
            select(Order)
            .where(Order.user_id == consumer.id, Order.status.in_(("completed", "paid")))
            .order_by(Order.id)
        ).all()
        for turn, order in enumerate(mine):
            try:
                created += _review_open_lines(session, consumer, order, turn)
            except AppError:  # e.g. a line refunded meanwhile: leave it
                continue
    for i, (phone, name) in enumerate(SHOPPERS):
        shopper = _shopper(session, phone, name)
        for j, (picks, note) in enumerate(SHOPPER_ORDERS):
            order, _new = received_demo_order(session, shopper, picks, note, days_ago=5 + i + j)
            if order is not None:
                created += _review_open_lines(session, shopper, order, i + j + 1)
    return created
