"""The model's Markdown cut into messages under a size limit, for the chat formatters
(bot/tgformat.py, bot/slackformat.py); each brings only how its tokens become markup.

Parsing is markdown-it-py's (CommonMark plus tables and strikethrough). Each top-level
block is rendered on its own and blocks are joined greedily, so a split never falls
inside a formatting pair; only a single block too long for one message is cut, by
lines, and a line too long by characters.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any, Callable, Iterable, TypeVar

if TYPE_CHECKING:
    from markdown_it.token import Token

T = TypeVar("T")
Special = Callable[["list[Token]", int, list[str]], "tuple[str, int] | None"]


@cache
def _parser() -> Any:
    # Imported with the first message to render, not at start (~1 MB an idle bot never uses).
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])


def matching(tokens: list[Token], i: int) -> int:
    """Index of the token that closes tokens[i] (tokens[i] itself if it does not open)."""
    if tokens[i].nesting != 1:
        return i
    depth = 0
    for j in range(i, len(tokens)):
        depth += tokens[j].nesting
        if depth == 0:
            return j
    return len(tokens) - 1


def blocks(text: str, render: Callable[[list[Token], list[str]], str]) -> list[tuple[str, str]]:
    """Each top-level block as (render(its tokens, the source lines), its Markdown source);
    blocks with neither are left out."""
    lines = text.splitlines()
    tokens = _parser().parse(text)
    out, i = [], 0
    while i < len(tokens):
        j, t = matching(tokens, i), tokens[i]
        src = "\n".join(lines[t.map[0]:t.map[1]]) if t.map else ""
        out.append((render(tokens[i:j + 1], lines), src))
        i = j + 1
    return [(markup, src) for markup, src in out if markup or src]


def render(tokens: list[Token], lines: list[str], inline: Callable[[list[Token]], str],
           marks: dict[str, str], indent: str, special: Special) -> str:
    """A block's tokens as one format's markup: special(tokens, i, lines) first (its text
    and the index to go on from, or None), then inline runs, the format's fixed marks
    (heading, paragraph end...) and list markers; any other token shows nothing."""
    out: list[str] = []
    lists: list[list[int]] = []  # per open list: [is_ordered, counter]
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if (done := special(tokens, i, lines)) is not None:
            text, i = done
            out.append(text)
            continue
        if t.type == "inline":
            out.append(inline(t.children or []))
        elif t.type in marks:
            out.append(marks[t.type])
        elif t.type in ("bullet_list_open", "ordered_list_open"):
            lists.append([t.type == "ordered_list_open", int(t.attrs.get("start", 1) or 1)])
        elif t.type in ("bullet_list_close", "ordered_list_close") and lists:
            lists.pop()
        elif t.type == "list_item_open" and lists:
            ordered, n = lists[-1]
            out.append(indent * (len(lists) - 1) + (f"{n}. " if ordered else "• "))
            lists[-1][1] += 1
        i += 1
    return "".join(out).strip()


def split_lines(text: str, room: int, size: Callable[[str], int], cut: Callable[[str], int]) -> list[str]:
    """`text` in chunks of whole lines, each of size() at most `room`; a line too big
    alone is cut at cut(line) until it fits, each cut-off part a chunk of its own."""
    chunks: list[str] = []
    buf: list[str] = []

    def flush() -> None:
        if buf:
            chunks.append("\n".join(buf))
            buf.clear()

    for line in text.splitlines() or [text]:
        while size(line) > room:
            flush()
            at = cut(line)
            chunks.append(line[:at])
            line = line[at:]
        if size("\n".join([*buf, line])) > room:
            flush()
        buf.append(line)
    flush()
    return chunks


def pack(items: Iterable[T], limit: int, size: Callable[[T], int],
         split: Callable[[T, int], list[T]], join: Callable[[T, T], T]) -> list[T]:
    """Messages, in order: each rendered block joins the one before it (a blank line apart)
    while size() stays within `limit`; a block over `limit` alone is split() first."""
    out: list[T] = []
    for item in items:
        for part in [item] if size(item) <= limit else split(item, limit):
            if out and size(out[-1]) + 2 + size(part) <= limit:
                out[-1] = join(out[-1], part)
            else:
                out.append(part)
    return out
