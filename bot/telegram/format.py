"""The model's Markdown as Telegram HTML, in messages of at most 4,096 characters.

Parsing and the cutting into messages are bot/mdsplit.py's; this module only maps
markdown-it-py's tokens to the few tags Telegram accepts (b, i, s, code, pre, a,
blockquote) and escapes everything else, so model output can never inject markup.
Tables, which Telegram cannot show, become monospaced blocks.

Each top-level block is rendered on its own, so a split never falls inside a tag;
every piece keeps its Markdown source as the plain-text fallback for when Telegram
still refuses the HTML.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

from bot.mdsplit import blocks, matching, pack, render, split_lines

if TYPE_CHECKING:
    from markdown_it.token import Token

LIMIT = 4096

_INLINE = {
    "strong_open": "<b>", "strong_close": "</b>", "em_open": "<i>", "em_close": "</i>",
    "s_open": "<s>", "s_close": "</s>", "softbreak": "\n", "hardbreak": "\n",
}
_BLOCK = {
    "heading_open": "<b>", "heading_close": "</b>\n", "paragraph_close": "\n", "hr": "———\n",
    "blockquote_open": "<blockquote>", "blockquote_close": "</blockquote>",
}


@dataclass
class Piece:
    html: str
    plain: str


def _inline(children: list[Token]) -> str:
    out = []
    for t in children:
        if t.type == "text":
            out.append(escape(t.content, quote=False))
        elif t.type == "code_inline":
            out.append(f"<code>{escape(t.content, quote=False)}</code>")
        elif t.type == "link_open":
            href = str(t.attrs.get("href", ""))
            out.append(f'<a href="{escape(href)}">' if href.startswith(("http://", "https://", "mailto:", "tg://")) else "")
        elif t.type == "link_close":
            # Only close what was opened: a link with an unsafe scheme stays text.
            opened = next((x for x in reversed(out) if x.startswith("<a ") or x == "</a>"), None)
            out.append("</a>" if opened and opened.startswith("<a ") else "")
        elif t.type == "image":
            out.append(escape(t.content or str(t.attrs.get("src", "")), quote=False))
        elif t.type in _INLINE:
            out.append(_INLINE[t.type])
        else:  # html_inline and anything new: shown as text, never as markup
            out.append(escape(t.content, quote=False))
    return "".join(out)


def _special(tokens: list[Token], i: int, source_lines: list[str]) -> tuple[str, int] | None:
    t = tokens[i]
    if t.type in ("fence", "code_block"):
        lang = (t.info or "").split()[0] if t.info else ""
        cls = f' class="language-{escape(lang)}"' if lang else ""
        return f"<pre><code{cls}>{escape(t.content.rstrip(), quote=False)}</code></pre>\n", i + 1
    if t.type == "table_open" and t.map:
        # Telegram cannot show a table: its source, monospaced, and none of its cells again.
        src = "\n".join(source_lines[t.map[0]:t.map[1]])
        return f"<pre>{escape(src, quote=False)}</pre>\n", matching(tokens, i) + 1
    if t.type == "html_block":
        return escape(t.content, quote=False), i + 1
    return None


def _render(tokens: list[Token], source_lines: list[str]) -> str:
    return render(tokens, source_lines, _inline, _BLOCK, "   ", _special)


def _plain(text: str) -> Piece:
    return Piece(escape(text, quote=False), text)


def _hard_split(piece: Piece, limit: int) -> list[Piece]:
    """A block too long for one message: by lines, and a line too long by characters
    (cut at half the limit, as escaping may grow a character ~5x)."""
    chunks = split_lines(piece.plain, limit, lambda s: len(escape(s, quote=False)), lambda line: limit // 2)
    return [_plain(chunk) for chunk in chunks]


def _join(a: Piece, b: Piece) -> Piece:
    return Piece(a.html + "\n\n" + b.html, a.plain + "\n\n" + b.plain)


def to_telegram(md: str, limit: int = LIMIT) -> list[Piece]:
    """Messages to send, in order, each with its HTML and its plain-text fallback."""
    pieces = [Piece(html, src) for html, src in blocks(md, _render)] or [_plain(md)]
    return pack(pieces, limit, lambda p: len(p.html), _hard_split, _join) or [Piece("…", "…")]
