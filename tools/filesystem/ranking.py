"""What a file search returns and how it ranks, the same for the index and for a live
walk (tools.filesystem.search, tools.filesystem.live): the words of a query, the score
of a name, recency, and the files whose text could not be searched. The ranking itself
is described in tools.filesystem.search's docstring.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from tools.filesystem import index as idx

MONTH_S = 30 * 86400


@dataclass
class Hit:
    path: str
    size: int
    mtime: float
    score: float
    snippet: str = ""
    stamp: tuple[int, int] | None = None  # (size, mtime_ns) when its text was indexed


@dataclass
class Found:
    hits: list[Hit]
    total: int
    notes: list[str] = field(default_factory=list)
    live: bool = False
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why): examples, newest first
    skipped_total: int = 0  # files whose text could not be searched


# Queries ------------------------------------------------------------------------


def is_glob(name: str) -> bool:
    return any(c in name for c in "*?[")


def name_words(name: str) -> list[str]:
    return [w for w in re.split(r"[\s_\-]+", name.lower()) if w]


def text_query(text: str) -> tuple[str, list[str]]:
    """An FTS5 query (every word, as a prefix; "quoted phrases" kept) and the plain
    lower-case terms for a live search. User text never reaches FTS5 syntax raw."""
    phrases = [" ".join(re.findall(r"\w+", p)) for p in re.findall(r'"([^"]+)"', text)]
    phrases = [p for p in phrases if p]
    words = re.findall(r"\w+", re.sub(r'"[^"]*"', " ", text))
    parts = [f'"{p}"' for p in phrases] + [f'"{w}"*' for w in words]
    return " AND ".join(parts), [t.lower() for t in phrases + words]


def name_score(name: str, folder: str, words: list[str]) -> float | None:
    """The name part of the rank (see the module docstring); None if a word is missing."""
    score = 0.0
    for w in words:
        if w in name:
            score += 2.0
        elif w in folder:
            score += 0.5
        else:
            return None
    stem = os.path.splitext(name)[0]
    if words and re.fullmatch(r"[\s_\-]*".join(re.escape(w) for w in words), stem):
        score += 3.0
    elif words and name.startswith(words[0]):
        score += 1.0
    return score


def recency(mtime: float, now: float) -> float:
    return 1.0 / (1.0 + max(0.0, now - mtime) / MONTH_S)


# Files not searched -------------------------------------------------------------


def skip_reason(kind: str, content: str, size_limit: int | None = None) -> str:
    if content == "failed":
        return "could not be read"
    if size_limit is not None:
        return f"over {size_limit // 2**20} MB, the limit when searching folders directly"
    if kind == "document":
        return f"over {idx.MAX_INDEX_DOCUMENT_BYTES // 2**20} MB, the limit for documents"
    return f"over {idx.MAX_TEXT_BYTES // 2**20} MB, the limit for text"


def note_skipped(found: Found, path: str, why: str) -> None:  # once a file
    if all(p != path for p, _ in found.skipped):
        found.skipped.append((path, why))
        found.skipped_total += 1


def skipped_note(found: Found) -> str:
    """One line on the files whose text was not searched ('' if none)."""
    if not found.skipped_total:
        return ""
    shown = "; ".join(f"{os.path.basename(p)} ({why})" for p, why in found.skipped[:5])
    n, more = found.skipped_total, found.skipped_total - len(found.skipped[:5])
    return (f"(Not searched for text: {n} file{'s' if n != 1 else ''} — {shown}"
            + (f"; and {more} more" if more > 0 else "") + ". read_text opens one a page at a time.)")
