"""Chinese-aware tokens for the index and the query.

Why jieba *and* character n-grams:
- Users type substrings of titles: `剪发` must find `男士精剪发型设计`, but jieba cuts that title
  into 精剪 / 发型设计, so a word index alone misses it. Every Han character (unigram) and every
  pair of adjacent Han characters (bigram) is therefore indexed too: a query word of n ≥ 2
  characters matches when all its n-1 bigrams are present — a substring test that works for any
  word boundary jieba chose, on both databases' inverted indexes (FTS5, GIN), without pg_trgm
  (whose trigrams cannot serve two-character Chinese words, the most common query length).
- jieba cuts the *query* into words so `南山火锅` (typed without a space) means 南山 AND 火锅
  instead of the contiguous string, splits compounds into dictionary parts (重庆火锅 → 重庆 +
  火锅, finding 重庆老火锅) and rejoins runs of single characters it could not place (洗/剪/吹 →
  `洗剪吹`, matched as a substring).
- jieba cuts *titles* (cut_for_search) into words, indexed with a mark (`剪发w`): a title that
  holds the query words as words ranks above one that merely contains them as substrings
  (`精致洗剪发套餐` — 洗/剪发/套餐 — above `男士精剪发型设计` — 精剪/发型设计 — for 剪发).
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


# Marks a jieba word in the title ("剪发" + "w"). Never typed: query pieces are pure Han or
# pure non-Han, so no query term can equal or prefix-match a marked word by accident.
WORD_MARK = "w"


def index_tokens(text: str, *, words: bool = False) -> list[str]:
    """The tokens a document holds for ``text`` (order is irrelevant: no phrase queries):
    characters and bigrams of Han runs, other runs whole, and with ``words`` the jieba words
    of Han runs, marked."""
    text = normalize(text)
    tokens: list[str] = []
    for piece in _pieces(text):
        if is_han(piece):
            tokens.extend(piece)
            tokens.extend(bigrams(piece))
        else:
            tokens.append(piece)
    if words:
        # No HMM guessing of unknown words (a third of jieba's time); the query side skips
        # it too, so both cut the same way.
        for word in jieba_module().cut_for_search(text, HMM=False):
            if is_han(word):
                tokens.append(word + WORD_MARK)
    return tokens


@dataclass(frozen=True)
class Term:
    token: str
    prefix: bool = False


@dataclass(frozen=True)
class QueryWord:
    """One word of the query and the terms that find it.

    ``substring``: all must be present for the word to occur anywhere as a substring (its
    bigrams; or for a compound jieba can split, its parts' bigrams: 重庆火锅 → 重庆 + 火锅, so
    it also finds 重庆老火锅). ``whole``: the same, as jieba words of a title.
    """

    text: str
    substring: tuple[Term, ...]
    whole: tuple[Term, ...]


def _han_word(word: str, cut: list[str]) -> QueryWord:
    """A Han query word (``cut``: how jieba cut it) and the terms that find it."""
    parts = cut if len(cut) > 1 else [word]
    if len(cut) == 1 and len(word) > 2:
        # A compound jieba knows whole: its dictionary parts, if they cover it.
        found = [
            p for p in jieba_module().cut_for_search(word, HMM=False) if 2 <= len(p) < len(word)
        ]
        covered: set[int] = set()
        for part in found:
            start = word.find(part)
            while start >= 0:
                covered.update(range(start, start + len(part)))
                start = word.find(part, start + 1)
        if found and len(covered) == len(word):
            parts = found
    if len(cut) > 1:
        # Single characters glued to a neighbour (海岸+城, 老+火锅): the word as typed.
        substring = tuple(Term(b) for b in dict.fromkeys(bigrams(word)))
    else:
        substring = tuple(
            dict.fromkeys(Term(b) for p in parts for b in (bigrams(p) if len(p) > 1 else [p]))
        )
    whole = tuple(Term(p + WORD_MARK) for p in dict.fromkeys(parts))
    return QueryWord(word, substring, whole)


def _glue_singles(cut: list[str]) -> list[list[str]]:
    """Attach each single character jieba left alone to the next word (else the previous):
    重庆/老/火锅 → 重庆, 老火锅; 海岸/城 → 海岸城; 洗/剪/吹 → 洗剪吹."""
    groups: list[list[str]] = []
    pending: list[str] = []
    for word in cut:
        if len(word) == 1:
            pending.append(word)
            continue
        groups.append([*pending, word])
        pending = []
    if pending:
        if groups:
            groups[-1].extend(pending)
        else:
            groups.append(pending)
    return groups


def parse_query(q: str) -> list[QueryWord]:
    """The words every match must contain (AND); [] when ``q`` has nothing searchable."""
    result: list[QueryWord] = []
    seen: set[str] = set()
    jieba = jieba_module()
    for piece in _pieces(normalize(q)):
        if is_han(piece):
            groups = _glue_singles(list(jieba.cut(piece, HMM=False)))
            words = [("".join(g), g) for g in groups]
        else:
            words = [(piece, [piece])]
        for word, cut in words:
            if word in seen:
                continue
            seen.add(word)
            if is_han(word):
                result.append(_han_word(word, cut))
            else:
                term = (Term(word, prefix=True),)
                result.append(QueryWord(word, term, term))
    return result


def _terms(words: list[QueryWord], whole: bool) -> list[Term]:
    return list(dict.fromkeys(t for w in words for t in (w.whole if whole else w.substring)))


def fts5_query(words: list[QueryWord], *, whole: bool = False) -> str:
    """SQLite FTS5 MATCH expression: every term (AND)."""
    return " AND ".join(
        '"' + t.token.replace('"', '""') + '"' + ("*" if t.prefix else "")
        for t in _terms(words, whole)
    )


def tsquery(words: list[QueryWord], *, whole: bool = False) -> str:
    """PostgreSQL tsquery text for ``to_tsquery('simple', …)``: every term (AND)."""
    return " & ".join(t.token + (":*" if t.prefix else "") for t in _terms(words, whole))


def substring_words(words: list[QueryWord]) -> list[str]:
    """The query words, for plain substring checks (e.g. store names)."""
    return [w.text for w in words]
