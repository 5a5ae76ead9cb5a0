"""Chinese-aware tokens for the index and the query.

Why jieba *and* character n-grams:
- Users type substrings of titles: `剪发` must find `男士精剪发型设计`, but jieba cuts that title
  into 精剪 / 发型设计, so a word index alone misses it. Every Han character (unigram) and every
  pair of adjacent Han characters (bigram) is therefore indexed too: a query word of n ≥ 2
  characters matches when all its n-1 bigrams are present — a substring test that works for any
  word boundary jieba chose, on both databases' inverted indexes (FTS5, GIN), without pg_trgm
  (whose trigrams cannot serve two-character Chinese words, the most common query length).
- jieba cuts the *query* into words so `南山火锅` (typed without a space) means 南山 AND 火锅
  instead of the contiguous string, and it rejoins runs of single characters it could not place
  (洗/剪/吹 → `洗剪吹`, matched as a substring). Its longer words (≥ 3 characters, from
  cut_for_search) are indexed as well and offered as an alternative for long query words, so a
  document holding the whole word ranks above one that merely holds its bigrams.
- Latin letters and digits (`iphone15`, `4`) stay whole and are matched as prefixes.

Tokens contain only letters and digits (NFKC-normalised, lower case), so they are safe inside
FTS5 strings and PostgreSQL tsquery text, and both databases' tokenizers see them unchanged.

jieba loads its dictionary lazily (~1 s). ``warm_up()`` does it once per process; the API starts
it in a background thread when the app starts (o2o.search.api), so `o2o serve` is not delayed and
the first search rarely waits.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from dataclasses import dataclass
from typing import Any

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_RUN = re.compile(r"[^\W_]+")
_SCRIPT = re.compile(rf"[{_HAN}]+|[^{_HAN}]+")
_IS_HAN = re.compile(rf"[{_HAN}]+")

_jieba: Any = None
_jieba_lock = threading.Lock()


def jieba_module() -> Any:
    """The initialised jieba module (loaded once per process, thread-safe)."""
    global _jieba
    if _jieba is None:
        with _jieba_lock:
            if _jieba is None:
                import jieba

                jieba.setLogLevel(logging.WARNING)
                jieba.initialize()
                _jieba = jieba
    return _jieba


def warm_up() -> None:
    jieba_module()


def warm_up_in_background() -> threading.Thread:
    thread = threading.Thread(target=warm_up, name="jieba-warm-up", daemon=True)
    thread.start()
    return thread


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def _pieces(text: str) -> list[str]:
    """Runs of letters/digits, split where Han meets other scripts."""
    return [p for run in _RUN.findall(text) for p in _SCRIPT.findall(run)]


def is_han(piece: str) -> bool:
    return _IS_HAN.fullmatch(piece) is not None


def bigrams(han: str) -> list[str]:
    return [han[i : i + 2] for i in range(len(han) - 1)]


def index_tokens(text: str) -> list[str]:
    """The tokens a document holds for ``text`` (order is irrelevant: no phrase queries)."""
    text = normalize(text)
    tokens: list[str] = []
    for piece in _pieces(text):
        if is_han(piece):
            tokens.extend(piece)
            tokens.extend(bigrams(piece))
        else:
            tokens.append(piece)
    for word in jieba_module().cut_for_search(text):
        if len(word) >= 3 and is_han(word):
            tokens.append(word)
    return tokens


@dataclass(frozen=True)
class Term:
    token: str
    prefix: bool = False


# A query is an AND of groups; a group is an OR of alternatives; an alternative an AND of terms.
Alternative = tuple[Term, ...]
Group = tuple[Alternative, ...]


def _han_group(word: str) -> Group:
    """A Han query word matches as a whole word, or as its parts: the shorter dictionary words
    jieba finds inside it when they cover it (重庆火锅 → 重庆 + 火锅, so it also finds
    重庆老火锅), else its bigrams (a substring test)."""
    if len(word) <= 2:
        return ((Term(word),),)
    parts = [p for p in jieba_module().cut_for_search(word) if 2 <= len(p) < len(word)]
    covered = set()
    for part in parts:
        start = word.find(part)
        while start >= 0:
            covered.update(range(start, start + len(part)))
            start = word.find(part, start + 1)
    pieces = parts if len(covered) == len(word) else [word]
    looser = tuple(dict.fromkeys(Term(b) for p in pieces for b in bigrams(p)))
    return ((Term(word),), looser)


def parse_query(q: str) -> list[Group]:
    """The groups every match must satisfy; [] when ``q`` has nothing searchable."""
    groups: list[Group] = []
    seen: set[Group] = set()
    jieba = jieba_module()
    for piece in _pieces(normalize(q)):
        if not is_han(piece):
            words = [piece]
        else:
            # Rejoin runs of single characters jieba could not place: 洗/剪/吹 → 洗剪吹.
            words, single = [], ""
            for word in jieba.cut(piece):
                if len(word) == 1:
                    single += word
                    continue
                if single:
                    words.append(single)
                    single = ""
                words.append(word)
            if single:
                words.append(single)
        for word in words:
            group = _han_group(word) if is_han(word) else ((Term(word, prefix=True),),)
            if group not in seen:
                seen.add(group)
                groups.append(group)
    return groups


def fts5_query(groups: list[Group], *, column: str | None = None) -> str:
    """SQLite FTS5 MATCH expression (restricted to one column if given)."""

    def term(t: Term) -> str:
        return '"' + t.token.replace('"', '""') + '"' + ("*" if t.prefix else "")

    def alternative(a: Alternative) -> str:
        return " AND ".join(term(t) for t in a)

    expr = " AND ".join(
        "(" + " OR ".join("(" + alternative(a) + ")" for a in g) + ")" for g in groups
    )
    return f"{column} : ({expr})" if column else expr


def tsquery(groups: list[Group]) -> str:
    """PostgreSQL tsquery text for ``to_tsquery('simple', …)``."""

    def term(t: Term) -> str:
        return t.token + (":*" if t.prefix else "")

    def alternative(a: Alternative) -> str:
        return " & ".join(term(t) for t in a)

    return " & ".join("(" + " | ".join("(" + alternative(a) + ")" for a in g) + ")" for g in groups)


def substring_words(groups: list[Group]) -> list[str]:
    """One representative string per group, for plain substring checks (e.g. store names)."""
    return [g[0][0].token for g in groups]
