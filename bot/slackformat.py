"""The model's Markdown as Slack mrkdwn, in messages of at most 4,000 characters; and
Slack's message text back to plain text for the model.

Parsing is markdown-it-py's (CommonMark plus tables and strikethrough), as in
bot/tgformat.py; this module maps its tokens to what mrkdwn has: *bold*, _italic_,
~strike~, `code`, ``` blocks, <url|label> links, "> " quotes. Everything else is
text with Slack's three escapes (&amp; &lt; &gt;), so model output can never
become markup Slack acts on: a literal "<!channel>" or "<@U123>" from the model
is shown, not sent as a mention. Headings become bold lines; tables, which mrkdwn
cannot show, become monospaced blocks; mrkdwn has no escape for a stray * or _,
so a mid-word asterisk is left as is (Slack ignores it there).

Each top-level block is rendered on its own and pieces are joined greedily, so a
split never falls inside a formatting pair; a single block too long for one
message is cut by lines (a code block is closed and reopened around the cut).
Slack truncates `text` past 40,000 characters and recommends 4,000; we keep to
4,000 so every piece reads as one message on the phone.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from markdown_it.token import Token

LIMIT = 4000
FENCE = "```"
_md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
_SAFE_LINK = ("http://", "https://", "mailto:")
_MARKS = {"strong_open": "*", "strong_close": "*", "em_open": "_", "em_close": "_",
          "s_open": "~", "s_close": "~", "softbreak": "\n", "hardbreak": "\n"}


def escape(text: str) -> str:
    """Slack's three control characters, escaped (the only escaping mrkdwn has)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code_text(text: str) -> str:
    """Text for inside a ``` block: escaped, and a ``` in it can't close the block early."""
    return escape(text).replace(FENCE, "`\u200b``")


def _inline(children: list[Token]) -> str:
    out: list[str] = []
    links: list[tuple[int, str]] = []  # (position in out, href) of each open link
    for t in children:
        if t.type == "text":
            out.append(escape(t.content))
        elif t.type == "code_inline":
            out.append(f"`{escape(t.content).replace('`', 'ˋ')}`" if t.content.strip() else escape(t.content))
        elif t.type == "link_open":
            links.append((len(out), str(t.attrs.get("href", ""))))
        elif t.type == "link_close" and links:
            start, href = links.pop()
            label = "".join(out[start:]).replace("|", "¦")
            del out[start:]
            if href.startswith(_SAFE_LINK) and not re.search(r"[\s<>|]", href):
                plain_href = href.removeprefix("mailto:")
                out.append(f"<{href}>" if label in ("", escape(href), escape(plain_href)) else f"<{href}|{label}>")
            else:  # an unsafe scheme (javascript:, slack://...) stays text
                out.append(label)
        elif t.type == "image":
            src = str(t.attrs.get("src", ""))
            alt = escape(t.content or "image")
            out.append(f"<{src}|{alt}>" if src.startswith(("http://", "https://")) and " " not in src else alt)
        elif t.type in _MARKS:
            out.append(_MARKS[t.type])
        else:  # html_inline and anything new: shown as text, never as markup
            out.append(escape(t.content))
    return "".join(out)


def _matching(tokens: list[Token], i: int) -> int:
    """Index of the token that closes tokens[i] (tokens[i] itself if it does not open)."""
    if tokens[i].nesting != 1:
        return i
    depth = 0
    for j in range(i, len(tokens)):
        depth += tokens[j].nesting
        if depth == 0:
            return j
    return len(tokens) - 1


def _render(tokens: list[Token], source_lines: list[str]) -> str:
    out: list[str] = []
    lists: list[list[int]] = []  # per open list: [is_ordered, counter]
    i = 0
    while i < len(tokens):
        t = tokens[i]
        kind = t.type
        if kind == "blockquote_open":
            j = _matching(tokens, i)
            inner = _render(tokens[i + 1:j], source_lines)
            out.append("\n".join(f">{' ' + ln if ln else ''}" for ln in inner.splitlines()) + "\n")
            i = j + 1
            continue
        if kind == "table_open":
            j = _matching(tokens, i)
            src = "\n".join(source_lines[t.map[0]:t.map[1]]) if t.map else ""
            out.append(f"{FENCE}\n{code_text(src)}\n{FENCE}\n")
            i = j + 1
            continue
        if kind == "inline":
            out.append(_inline(t.children or []))
        elif kind == "heading_open":
            out.append("*")
        elif kind == "heading_close":
            out.append("*\n")
        elif kind == "paragraph_close":
            out.append("\n")
        elif kind in ("bullet_list_open", "ordered_list_open"):
            lists.append([kind == "ordered_list_open", int(t.attrs.get("start", 1) or 1)])
        elif kind in ("bullet_list_close", "ordered_list_close"):
            if lists:
                lists.pop()
        elif kind == "list_item_open" and lists:
            ordered, n = lists[-1]
            indent = "    " * (len(lists) - 1)
            out.append(f"{indent}{n}. " if ordered else f"{indent}• ")
            lists[-1][1] += 1
        elif kind in ("fence", "code_block"):
            out.append(f"{FENCE}\n{code_text(t.content.rstrip())}\n{FENCE}\n")
        elif kind == "hr":
            out.append("———\n")
        elif kind == "html_block":
            out.append(escape(t.content))
        i += 1
    return "".join(out).strip()


def _blocks(md: str) -> list[str]:
    lines = md.splitlines()
    tokens = _md.parse(md)
    pieces, i = [], 0
    while i < len(tokens):
        j = _matching(tokens, i)
        pieces.append(_render(tokens[i:j + 1], lines))
        i = j + 1
    return [p for p in pieces if p]


def _hard_split(block: str, limit: int) -> list[str]:
    """A block too long for one message: by lines, a line too long by characters; a code
    block is closed before each cut and reopened after it."""
    fenced = block.startswith(FENCE) and block.endswith(FENCE) and len(block) > 2 * len(FENCE)
    body = block[len(FENCE):-len(FENCE)].strip("\n") if fenced else block
    room = limit - (2 * len(FENCE) + 2 if fenced else 0)
    parts: list[str] = []
    buf: list[str] = []

    def flush() -> None:
        if buf:
            text = "\n".join(buf)
            parts.append(f"{FENCE}\n{text}\n{FENCE}" if fenced else text)
            buf.clear()

    for line in body.splitlines() or [body]:
        while len(line) > room:
            flush()
            cut = room
            amp = line.rfind("&", max(0, cut - 5), cut)  # never cut inside &amp; &lt; &gt;
            if amp != -1 and ";" not in line[amp:cut]:
                cut = amp or cut
            buf.append(line[:cut])
            flush()
            line = line[cut:]
        if buf and len("\n".join([*buf, line])) > room:
            flush()
        buf.append(line)
    flush()
    return parts


def to_mrkdwn(md: str, limit: int = LIMIT) -> list[str]:
    """Messages to send, in order, each at most `limit` characters of mrkdwn."""
    pieces: list[str] = []
    for block in _blocks(md) or [escape(md)]:
        for part in [block] if len(block) <= limit else _hard_split(block, limit):
            if pieces and len(pieces[-1]) + 2 + len(part) <= limit:
                pieces[-1] = pieces[-1] + "\n\n" + part
            else:
                pieces.append(part)
    return [p for p in pieces if p.strip()] or ["…"]


# Slack -> plain text ------------------------------------------------------------------

_ANGLE = re.compile(r"<([^<>]*)>")


def _unangle(m: re.Match[str]) -> str:
    inner = m.group(1)
    target, _, label = inner.partition("|")
    if target.startswith("@"):  # a user mention stays in Slack's form, usable in a post
        return f"<{target}>"
    if target.startswith("#"):
        return f"#{label}" if label else f"<{target}>"
    if target.startswith("!"):  # <!here>, <!channel>, <!subteam^S123|@team>, <!date^...|fallback>
        special = target[1:].split("^")[0]
        return label or (f"@{special}" if special in ("here", "channel", "everyone") else inner)
    if target.startswith("mailto:"):
        return label or target.removeprefix("mailto:")
    if label and target.split("://", 1)[-1].rstrip("/") != label.rstrip("/"):
        return f"{label} ({target})"
    return target


def plain_text(slack_text: str) -> str:
    """What the owner typed, from Slack's wire form: links, channel names and specials
    spelled out, the three escapes undone."""
    text = _ANGLE.sub(_unangle, slack_text or "")
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
