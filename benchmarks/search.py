"""Search benchmark: a realistic Shenzhen catalogue in a fresh database, then latency percentiles
of mixed queries, in-process (service call) and over HTTP (a uvicorn subprocess), on SQLite and
PostgreSQL.

    .venv/bin/python benchmarks/search.py                       # 20,000 stores, 100,000 listings
    .venv/bin/python benchmarks/search.py --listings 10000      # a quick run (stores = listings/5)
    O2O_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python benchmarks/search.py                   # PostgreSQL too (or --pg URL)
    .venv/bin/python benchmarks/search.py --no-sqlite --pg URL --keep-pg   # keep the loaded database
    .venv/bin/python benchmarks/search.py --no-sqlite --reuse-pg URL       # query it again (migrated
                                                                # to head and analysed first)

Query mixes (limit 20, default sort):
  keyword+near  a keyword within 3 km of the consumer (relevance)
  near          everything within 3 km (distance)
  keyword       a keyword anywhere in the city (relevance)
  category+near a category (with its sub-categories) within 3 km (distance)
Consumers stand near where the stores are (a random store, jittered by up to 1 km), as people
do; keywords are what users type, from specific (剪发) to broad (双人套餐).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from o2o import migrate  # noqa: E402
from o2o.catalog.models import Listing, ListingStore  # noqa: E402
from o2o.db import Database  # noqa: E402
from o2o.merchants.models import Category, Merchant, Store  # noqa: E402
from o2o.search import indexer, service, tokens  # noqa: E402

# --- the city -------------------------------------------------------------------------------

# (district, centre lat, centre lng, spread in km, share of stores)
DISTRICTS = [
    ("南山区", 22.5330, 113.9300, 4.0, 0.18),
    ("福田区", 22.5410, 114.0550, 3.5, 0.18),
    ("罗湖区", 22.5480, 114.1310, 3.0, 0.12),
    ("宝安区", 22.5550, 113.8830, 6.0, 0.17),
    ("龙岗区", 22.7200, 114.2470, 7.0, 0.13),
    ("龙华区", 22.6570, 114.0450, 4.5, 0.11),
    ("光明区", 22.7490, 113.9360, 4.0, 0.04),
    ("坪山区", 22.7080, 114.3460, 3.5, 0.03),
    ("盐田区", 22.5570, 114.2370, 2.5, 0.02),
    ("大鹏新区", 22.5940, 114.4790, 3.0, 0.02),
]
LANDMARKS = {
    "南山区": [
        "海岸城",
        "科技园",
        "深圳湾万象城",
        "来福士",
        "南山书城",
        "蛇口海上世界",
        "欢乐海岸",
        "西丽",
    ],
    "福田区": [
        "购物公园",
        "COCO Park",
        "卓悦中心",
        "车公庙",
        "华强北",
        "皇庭广场",
        "梅林",
        "香蜜湖",
    ],
    "罗湖区": ["万象城", "东门", "国贸", "KK MALL", "翠竹", "水贝"],
    "宝安区": ["壹方城", "宝安中心", "西乡", "福永", "沙井", "松岗"],
    "龙岗区": ["龙岗万达", "布吉", "坂田", "大运", "横岗", "平湖"],
    "龙华区": ["壹方天地", "民治", "观澜", "红山", "龙华汇"],
    "光明区": ["光明大街", "公明", "光明万达"],
    "坪山区": ["坪山中心", "坑梓"],
    "盐田区": ["沙头角", "大梅沙"],
    "大鹏新区": ["葵涌", "南澳"],
}
ROADS = [
    "深南大道",
    "滨海大道",
    "北环大道",
    "南海大道",
    "科苑路",
    "文心五路",
    "福华三路",
    "人民南路",
    "建设路",
    "宝安大道",
    "龙岗大道",
    "民治大道",
    "创业路",
    "沙河西路",
    "红荔路",
]

# Category tree: (name, kind sold, [(leaf, kind)]) — goods categories sell goods.
CATEGORIES = [
    ("美食", "service", ["火锅", "川湘菜", "烧烤烤肉", "日料", "自助餐", "小吃快餐", "饮品甜点"]),
    ("休闲娱乐", "service", ["KTV", "足疗按摩", "洗浴汗蒸", "密室桌游"]),
    ("丽人", "service", ["美发", "美甲美睫", "美容SPA"]),
    ("电影演出", "service", ["电影"]),
    ("运动健身", "service", ["健身房", "瑜伽", "游泳"]),
    ("数码", "goods", ["手机", "电脑配件", "耳机音箱"]),
    ("食品生鲜", "goods", ["水果", "零食", "茶叶"]),
    ("图书", "goods", ["童书", "文学小说"]),
]
BRANDS = [
    "蜀香居",
    "老街",
    "川味坊",
    "湘里人家",
    "渝味晓宇",
    "大龙燚",
    "小龙坎",
    "潮汕八合里",
    "捞王",
    "左庭右院",
    "蛙来哒",
    "木屋",
    "很久以前",
    "西贝",
    "太二",
    "喜茶",
    "奈雪",
    "一点点",
    "椰子鸡",
    "润园四季",
    "八合里",
    "海门鱼仔",
    "陈鹏鹏",
    "农耕记",
    "费大厨",
    "丰收日",
    "点都德",
    "炳胜",
    "大鸽饭",
    "鹿港小镇",
    "名匠",
    "首脑",
    "Tony",
    "丝域",
    "华夏良子",
    "足道",
    "江南足道",
    "唱吧",
    "纯K",
    "星光",
    "万达",
    "CGV",
    "百老汇",
    "超级猩猩",
    "乐刻",
    "威尔士",
    "一兆韦德",
    "优客",
    "华强",
    "赛格",
    "顺电",
    "百果园",
    "鲜丰",
    "良品铺子",
    "三只松鼠",
    "来伊份",
    "茶里",
    "西西弗",
    "覔书店",
    "言几又",
    "深蓝",
    "金鼎",
    "好运",
    "福满楼",
    "食尚",
    "悦享",
    "花间",
    "云上",
    "青禾",
    "木子",
    "阿强",
    "阿明",
    "老王",
    "李记",
    "陈记",
    "黄记",
    "林记",
    "张姐",
    "刘师傅",
    "小杨",
    "大胖",
]
SUFFIX = {
    "火锅": ["重庆老火锅", "火锅", "牛肉火锅", "椰子鸡火锅", "串串香"],
    "川湘菜": ["川菜馆", "湘菜馆", "小炒", "酸菜鱼"],
    "烧烤烤肉": ["烧烤", "烤肉", "韩式烤肉", "烤鱼"],
    "日料": ["日本料理", "寿司", "居酒屋"],
    "自助餐": ["自助餐厅", "海鲜自助"],
    "小吃快餐": ["粉面馆", "麻辣烫", "肠粉", "快餐"],
    "饮品甜点": ["奶茶", "咖啡", "甜品", "蛋糕店"],
    "KTV": ["KTV", "量贩KTV"],
    "足疗按摩": ["足道", "按摩", "养生馆"],
    "洗浴汗蒸": ["汗蒸馆", "温泉会所"],
    "密室桌游": ["密室逃脱", "剧本杀"],
    "美发": ["造型", "美发沙龙", "发型设计"],
    "美甲美睫": ["美甲", "美睫工作室"],
    "美容SPA": ["美容院", "SPA会所"],
    "电影": ["影城", "国际影城"],
    "健身房": ["健身", "健身工作室"],
    "瑜伽": ["瑜伽馆"],
    "游泳": ["游泳馆"],
    "手机": ["手机专营店", "数码"],
    "电脑配件": ["电脑城", "数码配件"],
    "耳机音箱": ["音响", "耳机馆"],
    "水果": ["水果", "鲜果"],
    "零食": ["零食铺", "食品"],
    "茶叶": ["茶行", "茶庄"],
    "童书": ["书店", "绘本馆"],
    "文学小说": ["书店", "书房"],
}
# Title templates per leaf: {a} {b} {c} are filled from the lists after it.
TITLES: dict[str, tuple[list[str], list[str], list[str]]] = {
    "火锅": (
        ["重庆", "成都", "潮汕", "麻辣", "鸳鸯", "牛油", "清汤", "番茄"],
        ["老火锅", "牛肉火锅", "火锅", "椰子鸡", "串串香", "猪肚鸡"],
        ["双人套餐", "4人餐", "单人餐", "100元代金券", "工作日午市套餐", "6人聚餐"],
    ),
    "川湘菜": (
        ["招牌", "经典", "地道", "家常"],
        ["酸菜鱼", "水煮鱼", "毛血旺", "剁椒鱼头", "小炒黄牛肉", "辣子鸡"],
        ["双人餐", "3-4人餐", "50元代金券", "单人套餐"],
    ),
    "烧烤烤肉": (
        ["韩式", "日式", "东北", "新疆", "炭火"],
        ["烤肉", "烤串", "烤鱼", "烤羊排", "雪花牛肉"],
        ["双人套餐", "4人餐", "100元代金券", "畅吃套餐"],
    ),
    "日料": (
        ["精致", "特选", "主厨", "北海道"],
        ["寿司拼盘", "刺身", "鳗鱼饭", "日式拉面", "天妇罗"],
        ["单人餐", "双人套餐", "200元代金券"],
    ),
    "自助餐": (
        ["海鲜", "烤肉", "日式", "国际"],
        ["自助午餐", "自助晚餐", "自助餐"],
        ["单人", "双人", "周末通用"],
    ),
    "小吃快餐": (
        ["招牌", "经典", "特色"],
        ["麻辣烫", "肠粉", "牛肉粉", "螺蛳粉", "黄焖鸡米饭", "猪脚饭"],
        ["单人餐", "20元代金券", "套餐"],
    ),
    "饮品甜点": (
        ["人气", "招牌", "季节限定"],
        ["奶茶", "杨枝甘露", "美式咖啡", "芝士蛋糕", "双皮奶", "水果捞"],
        ["2杯套餐", "单杯", "下午茶双人套餐", "6寸蛋糕"],
    ),
    "KTV": (
        ["欢唱", "周末", "工作日"],
        ["小包", "中包", "大包"],
        ["3小时", "畅唱套餐", "含酒水套餐"],
    ),
    "足疗按摩": (
        ["中式", "泰式", "精油"],
        ["足疗", "全身按摩", "推拿", "肩颈调理"],
        ["60分钟", "90分钟", "双人套餐"],
    ),
    "洗浴汗蒸": (["温泉", "汗蒸", "洗浴"], ["单人票", "双人票", "通票"], ["含自助餐", "", "夜场"]),
    "密室桌游": (["沉浸式", "恐怖", "情感"], ["密室逃脱", "剧本杀"], ["单人票", "4人票", "包场"]),
    "美发": (
        ["男士", "女士", "精致", "明星"],
        ["精剪", "洗剪吹", "洗剪发套餐", "烫发", "染发", "头皮护理", "精剪发型设计"],
        ["", "套餐", "单次体验", "总监服务"],
    ),
    "美甲美睫": (
        ["日式", "韩式", "法式"],
        ["美甲", "美睫", "手部护理"],
        ["单色", "款式任选", "套餐"],
    ),
    "美容SPA": (
        ["补水", "深层清洁", "抗衰"],
        ["面部护理", "SPA", "身体护理"],
        ["单次", "3次卡", "体验套餐"],
    ),
    "电影": (
        ["2D", "3D", "IMAX", "杜比"],
        ["电影票", "观影套餐"],
        ["单人", "双人", "含爆米花可乐"],
    ),
    "健身房": (["单次", "月卡", "私教"], ["健身", "私教课", "团课"], ["体验", "套餐", "10次卡"]),
    "瑜伽": (["空中", "哈他", "流瑜伽"], ["瑜伽课"], ["单次体验", "10次卡", "月卡"]),
    "游泳": (["恒温", "室内"], ["游泳"], ["单次票", "10次卡", "儿童课"]),
    "手机": (
        ["Apple", "华为", "小米", "OPPO", "vivo", "荣耀"],
        ["iPhone15 手机", "Mate60 手机", "14 Pro 手机", "Reno11 5G手机", "X100 手机"],
        ["256G", "512G", "全网通", "官方标配"],
    ),
    "电脑配件": (
        ["罗技", "雷蛇", "绿联"],
        ["无线鼠标", "机械键盘", "扩展坞", "移动硬盘"],
        ["", "套装", "Type-C"],
    ),
    "耳机音箱": (
        ["索尼", "漫步者", "JBL", "华为"],
        ["蓝牙耳机", "降噪耳机", "蓝牙音箱"],
        ["", "无线", "运动款"],
    ),
    "水果": (
        ["海南", "泰国", "新西兰", "智利"],
        ["榴莲", "芒果", "车厘子", "奇异果", "荔枝"],
        ["2斤装", "5斤装", "礼盒"],
    ),
    "零食": (
        ["坚果", "网红", "办公室"],
        ["零食大礼包", "每日坚果", "牛肉干", "辣条"],
        ["30包", "礼盒装", "500g"],
    ),
    "茶叶": (
        ["云南", "福建", "杭州"],
        ["普洱茶", "铁观音", "龙井", "大红袍"],
        ["250g", "礼盒", "罐装"],
    ),
    "童书": (
        ["经典", "获奖", "幼儿"],
        ["绘本", "科普百科", "儿童故事书"],
        ["全10册", "套装", "精装"],
    ),
    "文学小说": (
        ["畅销", "经典", "新版"],
        ["长篇小说", "散文集", "推理小说"],
        ["", "精装", "套装"],
    ),
}
KEYWORDS = [
    "火锅",
    "重庆火锅",
    "牛肉火锅",
    "椰子鸡",
    "烤肉",
    "烧烤",
    "烤鱼",
    "自助餐",
    "奶茶",
    "咖啡",
    "蛋糕",
    "日料",
    "寿司",
    "酸菜鱼",
    "麻辣烫",
    "螺蛳粉",
    "剪发",
    "洗剪吹",
    "烫发",
    "美甲",
    "按摩",
    "足疗",
    "KTV",
    "密室",
    "剧本杀",
    "电影",
    "IMAX",
    "健身",
    "瑜伽",
    "游泳",
    "手机",
    "iphone",
    "华为 手机",
    "蓝牙耳机",
    "榴莲",
    "车厘子",
    "零食",
    "普洱",
    "绘本",
    "南山 火锅",
    "福田 烧烤",
    "海岸城",
    "万象城 日料",
    "双人套餐",
    "代金券",
    "下午茶",
]


def _point(rng: random.Random, lat: float, lng: float, km: float) -> tuple[float, float]:
    dlat = rng.gauss(0, km) / 111.2
    dlng = rng.gauss(0, km) / (111.2 * math.cos(math.radians(lat)))
    return round(lat + dlat, 6), round(lng + dlng, 6)


def generate(db: Database, stores: int, listings: int, seed: int) -> dict[str, Any]:
    """Categories, merchants (1–8 stores each), stores, listings; bulk inserts."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    with db.transaction() as s:
        leaves: list[tuple[int, str, str]] = []  # (id, name, kind)
        parents: dict[str, int] = {}
        for name, kind, children in CATEGORIES:
            parent = Category(name=name, commission_bp=500)
            s.add(parent)
            s.flush()
            parents[name] = parent.id
            for child in children:
                c = Category(name=child, parent_id=parent.id, commission_bp=500)
                s.add(c)
                s.flush()
                leaves.append((c.id, child, kind))

        merchant_rows, store_rows = [], []
        district_weights = [d[4] for d in DISTRICTS]
        store_of_merchant: list[list[int]] = []
        merchant_leaf: list[tuple[int, str, str]] = []
        next_store = 0
        while next_store < stores:
            leaf = rng.choice(leaves)
            n_stores = min(stores - next_store, rng.choice([1, 1, 1, 1, 2, 2, 3, 4, 6, 8]))
            name = rng.choice(BRANDS) + rng.choice(SUFFIX[leaf[1]])
            merchant_rows.append(
                {
                    "name": name,
                    "contact_phone": "13700000000",
                    "license_no": f"9144030{len(merchant_rows):09d}",
                    "category_id": leaf[0],
                    "description": "",
                    "status": "approved",
                    "status_reason": "",
                    "created_at": now,
                }
            )
            merchant_leaf.append(leaf)
            ids = []
            for _ in range(n_stores):
                d = rng.choices(DISTRICTS, district_weights)[0]
                lat, lng = _point(rng, d[1], d[2], d[3])
                mark = rng.choice(LANDMARKS[d[0]])
                store_rows.append(
                    {
                        "merchant_id": len(merchant_rows),
                        "name": f"{mark}店",
                        "address": f"{rng.choice(ROADS)}{rng.randint(1, 9999)}号{mark}{rng.randint(1, 6)}楼",
                        "city": "深圳市",
                        "district": d[0],
                        "lat": lat,
                        "lng": lng,
                        "phone": "0755-86000000",
                        "opening_hours": "10:00-22:00",
                        "is_active": True,
                        "created_at": now,
                    }
                )
                next_store += 1
                ids.append(next_store)
            store_of_merchant.append(ids)
        _bulk(s, Merchant, merchant_rows)
        _bulk(s, Store, store_rows)

        listing_rows, link_rows = [], []
        for i in range(listings):
            m = rng.randrange(len(merchant_rows))
            leaf_id, leaf, kind = merchant_leaf[m]
            a, b, c = TITLES[leaf]
            title = f"{rng.choice(a)}{rng.choice(b)}{rng.choice(c)}"
            price = rng.choice([990, 1990, 2990, 3990, 5990, 8800, 12800, 19900, 29900, 59900])
            sales = min(200_000, int(rng.paretovariate(1.1) * 5) - 5)
            ratings = rng.randint(0, max(1, sales // 3))
            listing_rows.append(
                {
                    "merchant_id": m + 1,
                    "kind": kind,
                    "title": title[:100],
                    "description": "",
                    "category_id": leaf_id,
                    "images": [],
                    "status": "published" if rng.random() < 0.95 else "draft",
                    "price_fen": price,
                    "original_price_fen": int(price * rng.choice([1, 1.2, 1.5, 2])),
                    "shipping_fee_fen": 0,
                    "refund_anytime": True,
                    "auto_refund_on_expiry": True,
                    "requires_slot": False,
                    "sales_count": sales,
                    "rating_sum": ratings * rng.randint(3, 5),
                    "rating_count": ratings,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            if kind == "service":
                ids = store_of_merchant[m]
                for store_id in rng.sample(ids, k=min(len(ids), rng.choice([1, 2, 3, len(ids)]))):
                    link_rows.append({"listing_id": i + 1, "store_id": store_id})
        _bulk(s, Listing, listing_rows)
        _bulk(s, ListingStore, link_rows)
    return {
        "merchants": len(merchant_rows),
        "stores": len(store_rows),
        "listings": len(listing_rows),
        "listing_stores": len(link_rows),
        "store_points": [(r["lat"], r["lng"]) for r in store_rows],
        "categories": {"parents": parents, "leaves": [leaf[0] for leaf in leaves]},
    }


def _bulk(session: Any, model: Any, rows: list[dict[str, Any]], chunk: int = 5000) -> None:
    for start in range(0, len(rows), chunk):
        session.execute(insert(model.__table__), rows[start : start + chunk])


# --- queries --------------------------------------------------------------------------------


def make_queries(data: dict[str, Any], n: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(seed)

    def place() -> dict[str, Any]:
        lat, lng = rng.choice(data["store_points"])
        lat, lng = _point(rng, lat, lng, 0.5)
        return {"lat": lat, "lng": lng, "radius_m": 3000}

    categories = list(data["categories"]["parents"].values()) + data["categories"]["leaves"]
    return {
        "keyword+near": [{"q": rng.choice(KEYWORDS), **place()} for _ in range(n)],
        "near": [place() for _ in range(n)],
        "keyword": [{"q": rng.choice(KEYWORDS)} for _ in range(n)],
        "category+near": [{"category_id": rng.choice(categories), **place()} for _ in range(n)],
    }


def percentiles(samples: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50": qs[49], "p95": qs[94], "p99": qs[98], "max": max(samples)}


def run_in_process(db: Database, queries: list[dict[str, Any]]) -> tuple[list[float], int]:
    times, hits = [], 0
    for params in queries:
        start = time.perf_counter()
        with db.transaction(readonly=True) as s:
            page = service.search(s, limit=20, **params)
        times.append((time.perf_counter() - start) * 1000)
        hits += len(page["items"])
    return times, hits


def run_http(base: str, queries: list[dict[str, Any]]) -> tuple[list[float], int]:
    times, hits = [], 0
    with httpx.Client(base_url=base, timeout=30) as client:
        for params in queries:
            start = time.perf_counter()
            r = client.get("/api/v1/search", params={**params, "limit": 20})
            times.append((time.perf_counter() - start) * 1000)
            r.raise_for_status()
            hits += len(r.json()["items"])
    return times, hits


@contextmanager
def server(url: str, workdir: Path) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "O2O_DATABASE_URL": url,
        "O2O_DEMO": "false",
        "O2O_EMBEDDED_WORKER": "false",
        "O2O_SECRET_KEY": secrets.token_urlsafe(48),
        "O2O_DATA_DIR": str(workdir),
        "O2O_LOG_LEVEL": "warning",
    }
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "o2o.app:served_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=workdir)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# --- one backend ----------------------------------------------------------------------------


def loaded_data(db: Database) -> dict[str, Any]:
    """What generate() returned, read back from a database it filled (for --reuse-pg): store
    points and categories in id order, so the same seed makes the same queries."""
    with db.engine.connect() as conn:
        points = conn.exec_driver_sql("SELECT lat, lng FROM stores ORDER BY id").fetchall()
        cats = conn.exec_driver_sql(
            "SELECT id, name, parent_id FROM categories ORDER BY id"
        ).fetchall()
        counts = conn.exec_driver_sql(
            "SELECT (SELECT count(*) FROM merchants), (SELECT count(*) FROM listings),"
            " (SELECT count(*) FROM listing_stores)"
        ).one()
    return {
        "merchants": counts[0],
        "stores": len(points),
        "listings": counts[1],
        "listing_stores": counts[2],
        "store_points": [(lat, lng) for lat, lng in points],
        "categories": {
            "parents": {name: id_ for id_, name, parent in cats if parent is None},
            "leaves": [id_ for id_, _name, parent in cats if parent is not None],
        },
    }


def bench_backend(
    name: str,
    url: str,
    args: argparse.Namespace,
    workdir: Path,
    report: list[dict[str, Any]],
    *,
    reuse: bool = False,
) -> None:
    print(f"\n== {name}: {args.stores:,} stores, {args.listings:,} listings ==", flush=True)
    t0 = time.perf_counter()
    migrate.upgrade(url)
    db = Database.from_url(url)
    try:
        if reuse:
            data = loaded_data(db)
            print(f"reusing {data['stores']:,} stores, {data['listings']:,} listings", flush=True)
            _analyze(db)
            tokens.warm_up()
        else:
            data = _load(db, args, t0)
        queries = make_queries(data, args.queries, args.seed + 1)
        warm = make_queries(data, 50, args.seed + 2)
        for qs in warm.values():
            run_in_process(db, qs)
        for mix, qs in queries.items():
            times, hits = run_in_process(db, qs)
            report.append(
                {
                    "db": name,
                    "via": "in-process",
                    "mix": mix,
                    "hits": hits / len(qs),
                    **percentiles(times),
                }
            )
            _print_row(report[-1])
    finally:
        db.dispose()
    if args.no_http:
        return
    with server(url, workdir) as base:
        for qs in make_queries(data, 50, args.seed + 2).values():
            run_http(base, qs)
        for mix, qs in queries.items():
            times, hits = run_http(base, qs)
            report.append(
                {
                    "db": name,
                    "via": "HTTP",
                    "mix": mix,
                    "hits": hits / len(qs),
                    **percentiles(times),
                }
            )
            _print_row(report[-1])


def _load(db: Database, args: argparse.Namespace, t0: float) -> dict[str, Any]:
    """Generate the catalogue, index it, and leave fresh statistics behind."""
    data = generate(db, args.stores, args.listings, args.seed)
    t1 = time.perf_counter()
    print(
        f"generated {data['merchants']:,} merchants, {data['stores']:,} stores,"
        f" {data['listings']:,} listings, {data['listing_stores']:,} listing-store links"
        f" in {t1 - t0:.1f} s",
        flush=True,
    )
    _analyze(db)  # fresh statistics, as autovacuum (PostgreSQL) would have them
    tokens.warm_up()
    with db.transaction() as s:
        indexed = indexer.rebuild_all(s)
    t2 = time.perf_counter()
    print(f"indexed {indexed:,} searchable listings in {t2 - t1:.1f} s", flush=True)
    _analyze(db)
    return data


def _analyze(db: Database) -> None:
    """What autovacuum (PostgreSQL) or `PRAGMA optimize` (SQLite) keep up to date."""
    with db.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()


def _print_row(row: dict[str, Any]) -> None:
    print(
        f"  {row['db']:<10} {row['via']:<10} {row['mix']:<14} p50 {row['p50']:6.2f}  "
        f"p95 {row['p95']:6.2f}  p99 {row['p99']:6.2f}  max {row['max']:7.2f} ms"
        f"  ({row['hits']:.1f} hits/query)",
        flush=True,
    )


def print_table(report: list[dict[str, Any]]) -> None:
    print("\n| database | via | query mix | p50 ms | p95 ms | p99 ms | target p99 | hits/query |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in report:
        target = 20 if r["via"] == "in-process" else 40
        ok = "ok" if r["p99"] <= target else "MISSED"
        print(
            f"| {r['db']} | {r['via']} | {r['mix']} | {r['p50']:.2f} | {r['p95']:.2f} |"
            f" {r['p99']:.2f} | ≤ {target} {ok} | {r['hits']:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listings", type=int, default=100_000)
    parser.add_argument("--stores", type=int, help="default: listings / 5")
    parser.add_argument("--queries", type=int, default=400, help="queries per mix")
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument(
        "--pg",
        default=os.environ.get("O2O_TEST_POSTGRES_URL"),
        help="PostgreSQL server URL where a database may be created",
    )
    parser.add_argument(
        "--keep-pg", action="store_true", help="keep the PostgreSQL database and print its URL"
    )
    parser.add_argument(
        "--reuse-pg",
        metavar="URL",
        help="query a database an earlier --keep-pg run loaded (no generation)",
    )
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--no-http", action="store_true")
    args = parser.parse_args()
    args.stores = args.stores or max(1, args.listings // 5)

    report: list[dict[str, Any]] = []
    workdir = Path(tempfile.mkdtemp(prefix="o2o-search-bench-"))
    try:
        if not args.no_sqlite:
            bench_backend("SQLite", f"sqlite:///{workdir / 'bench.db'}", args, workdir, report)
        if args.reuse_pg and not args.no_pg:
            bench_backend("PostgreSQL", args.reuse_pg, args, workdir, report, reuse=True)
        elif args.pg and not args.no_pg:
            admin = args.pg.replace("postgresql://", "postgresql+psycopg://", 1)
            name = f"o2o_search_bench_{secrets.token_hex(4)}"
            engine = create_engine(admin, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            url = make_url(args.pg).set(database=name).render_as_string(hide_password=False)
            try:
                bench_backend("PostgreSQL", url, args, workdir, report)
            finally:
                if args.keep_pg:
                    print(f"\nkept the PostgreSQL database: --reuse-pg {url}", flush=True)
                else:
                    with engine.connect() as conn:
                        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                engine.dispose()
        elif not args.no_pg:
            print("\nPostgreSQL skipped: pass --pg URL or set O2O_TEST_POSTGRES_URL")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(report)


if __name__ == "__main__":
    main()
