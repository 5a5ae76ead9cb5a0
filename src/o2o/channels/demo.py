"""Demo channels and a month of visits through them (deterministic, idempotent)."""

from __future__ import annotations

import hashlib
import random
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from o2o.accounts.models import User
from o2o.channels.models import Channel, Visit
from o2o.channels.service import Touch, store_visits
from o2o.demo import CONSUMER
from o2o.timeutil import utcnow

DEMO_ORDER = 30

# (code, name, kind, visits per day on average, share of returning visitors)
CHANNELS: list[tuple[str, str, str, int, float]] = [
    ("wechat-home", "微信首页入口", "superapp_entry", 40, 0.35),
    ("dianping-partner", "大众点评合作页", "partner_site", 18, 0.25),
    ("metro-poster", "地铁海报二维码", "poster_qr", 8, 0.10),
    ("search-ad", "搜索广告", "search_ad", 12, 0.15),
]
DAYS = 30
PATHS = ["/", "/search?q=火锅", "/search?q=美发", "/listings", "/api/v1/search?q=咖啡"]


def _visitor(code: str, n: int) -> str:
    return hashlib.sha256(f"demo-visitor:{code}:{n}".encode()).hexdigest()[:24]


def load_demo(session: Session) -> int:
    created = 0
    channels: dict[str, Channel] = {}
    for code, name, kind, _, _ in CHANNELS:
        channel = session.scalar(select(Channel).where(Channel.code == code))
        if channel is None:
            channel = Channel(code=code, name=name, kind=kind, is_active=True)
            session.add(channel)
            session.flush()
            created += 1
        channels[code] = channel
    ids = [c.id for c in channels.values()]
    if session.scalar(select(func.count()).select_from(Visit).where(Visit.channel_id.in_(ids))):
        return created  # visits were loaded before

    rng = random.Random(20260601)
    # The demo consumer (see o2o.demo.CONSUMER) came in through the WeChat entry twice.
    consumer_id = session.scalar(select(User.id).where(User.phone == CONSUMER[0]))
    now = utcnow()
    touches: list[Touch] = []
    for code, _, _, per_day, returning in CHANNELS:
        visitors = 0
        for day in range(DAYS, 0, -1):
            # Weekends bring more; the trend grows a little towards today.
            weekday = (now - timedelta(days=day)).weekday()
            mean = per_day * (1.4 if weekday >= 5 else 1.0) * (0.8 + 0.4 * (DAYS - day) / DAYS)
            for _ in range(max(0, int(rng.gauss(mean, mean / 4)))):
                if visitors and rng.random() < returning:
                    visitor = _visitor(code, rng.randrange(visitors))
                else:
                    visitor = _visitor(code, visitors)
                    visitors += 1
                at = now - timedelta(days=day, seconds=rng.randrange(0, 86_400))
                touches.append(Touch(code, visitor, rng.choice(PATHS), None, at))
    if consumer_id is not None:
        for days_ago in (12, 3):
            touches.append(
                Touch(
                    "wechat-home",
                    _visitor("consumer", 0),
                    "/",
                    consumer_id,
                    now - timedelta(days=days_ago),
                )
            )
    touches.sort(key=lambda t: t.at)
    return created + store_visits(session, touches, {c: ch.id for c, ch in channels.items()})
