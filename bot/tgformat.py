"""The model's Markdown as Telegram HTML, in messages of at most 4,096 characters.

Parsing is markdown-it-py's (CommonMark plus tables and strikethrough); this
module only maps its tokens to the few tags Telegram accepts (b, i, s, code, pre,
a, blockquote) and escapes everything else, so model output can never inject
markup. Tables, which Telegram cannot show, become monospaced blocks.

Each top-level block is rendered on its own, so a split never falls inside a tag;
every piece keeps its Markdown source as the plain-text fallback for when Telegram
still refuses the HTML.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from markdown_it import MarkdownIt
from markdown_it.token import Token

LIMIT = 4096
_md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])

_INLINE = {
    "strong_open": "<b>", "strong_close": "</b>", "em_open": "<i>", "em_close": "</i>",
    "s_open": "<s>", "s_close": "</s>", "softbreak": "\n", "hardbreak": "\n",
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


def _render(tokens: list[Token], source_lines: list[str]) -> str:
    out: list[str] = []
    lists: list[list[int]] = []  # per open list: [is_ordered, counter]
    for t in tokens:
        kind = t.type
        if kind == "inline":
            out.append(_inline(t.children or []))
        elif kind == "heading_open":
            out.append("<b>")
        elif kind == "heading_close":
            out.append("</b>\n")
        elif kind == "paragraph_close":
            out.append("\n")
        elif kind in ("bullet_list_open", "ordered_list_open"):
            lists.append([kind == "ordered_list_open", int(t.attrs.get("start", 1) or 1)])
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif kind == "list_item_open" and lists:
            ordered, n = lists[-1]
            indent = "   " * (len(lists) - 1)
            out.append(f"{indent}{n}. " if ordered else f"{indent}• ")
            lists[-1][1] += 1
        elif kind == "blockquote_open":
            out.append("<blockquote>")
        elif kind == "blockquote_close":
            out.append("</blockquote>")
        elif kind in ("fence", "code_block"):
            lang = (t.info or "").split()[0] if t.info else ""
            cls = f' class="language-{escape(lang)}"' if lang else ""
            out.append(f"<pre><code{cls}>{escape(t.content.rstrip(), quote=False)}</code></pre>\n")
        elif kind == "hr":
            out.append("———\n")
        elif kind == "table_open" and t.map:
            src = "\n".join(source_lines[t.map[0]:t.map[1]])
            out.append(f"<pre>{escape(src, quote=False)}</pre>\n")
        elif kind == "html_block":
            out.append(escape(t.content, quote=False))
    return "".join(out).strip()


def _blocks(md: str) -> list[Piece]:
    lines = md.splitlines()
    tokens = _md.parse(md)
    pieces, i = [], 0
    while i < len(tokens):
        t = tokens[i]
        j = i
        if t.nesting == 1:  # find the matching close at the same level
            depth = 0
            for j in range(i, len(tokens)):
                depth += tokens[j].nesting
                if depth == 0:
                    break
        block = tokens[i:j + 1]
        if block[0].type == "table_open":
            block = [block[0]]  # the table is shown from its source
        src = "\n".join(lines[t.map[0]:t.map[1]]) if t.map else ""
        pieces.append(Piece(_render(block, lines), src))
        i = j + 1
    return [p for p in pieces if p.html or p.plain]


def _hard_split(piece: Piece, limit: int) -> list[Piece]:
    """A block too long for one message: by lines, and a line too long by characters."""
    out: list[Piece] = []
    buf: list[str] = []

    def flush() -> None:
        if buf:
            text = "\n".join(buf)
            out.append(Piece(escape(text, quote=False), text))
            buf.clear()

    for line in piece.plain.splitlines() or [piece.plain]:
        while len(escape(line, quote=False)) > limit:
            flush()
            cut = limit // 2  # escaping may up to ~5x a character; halve to be safe
            out.append(Piece(escape(line[:cut], quote=False), line[:cut]))
            line = line[cut:]
        if len(escape("\n".join([*buf, line]), quote=False)) > limit:
            flush()
        buf.append(line)
    flush()
    return out


def to_telegram(md: str, limit: int = LIMIT) -> list[Piece]:
    """Messages to send, in order, each with its HTML and its plain-text fallback."""
    pieces: list[Piece] = []
    for block in _blocks(md) or [Piece(escape(md, quote=False), md)]:
        parts = [block] if len(block.html) <= limit else _hard_split(block, limit)
        for part in parts:
            if pieces and len(pieces[-1].html) + 2 + len(part.html) <= limit:
                pieces[-1] = Piece(pieces[-1].html + "\n\n" + part.html, pieces[-1].plain + "\n\n" + part.plain)
            else:
                pieces.append(part)
    return pieces or [Piece("…", "…")]
