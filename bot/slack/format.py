"""The model's Markdown as Slack mrkdwn, in messages of at most 4,000 characters; and
Slack's message text back to plain text for the model.

Parsing and the cutting into messages are bot/mdsplit.py's, as for bot/tgformat.py;
this module maps markdown-it-py's tokens to what mrkdwn has: *bold*, _italic_,
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
from typing import TYPE_CHECKING

from bot.mdsplit import blocks, matching, pack, render, split_lines

if TYPE_CHECKING:
    from markdown_it.token import Token

LIMIT = 4000
FENCE = "```"
_SAFE_LINK = ("http://", "https://", "mailto:")
_MARKS = {"strong_open": "*", "strong_close": "*", "em_open": "_", "em_close": "_",
          "s_open": "~", "s_close": "~", "softbreak": "\n", "hardbreak": "\n"}
_BLOCK = {"heading_open": "*", "heading_close": "*\n", "paragraph_close": "\n", "hr": "———\n"}


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


def _special(tokens: list[Token], i: int, source_lines: list[str]) -> tuple[str, int] | None:
    t = tokens[i]
    if t.type == "blockquote_open":
        j = matching(tokens, i)
        inner = _render(tokens[i + 1:j], source_lines)
        return "\n".join(f">{' ' + ln if ln else ''}" for ln in inner.splitlines()) + "\n", j + 1
    if t.type == "table_open":
        src = "\n".join(source_lines[t.map[0]:t.map[1]]) if t.map else ""
        return f"{FENCE}\n{code_text(src)}\n{FENCE}\n", matching(tokens, i) + 1
    if t.type in ("fence", "code_block"):
        return f"{FENCE}\n{code_text(t.content.rstrip())}\n{FENCE}\n", i + 1
    if t.type == "html_block":
        return escape(t.content), i + 1
    return None


def _render(tokens: list[Token], source_lines: list[str]) -> str:
    return render(tokens, source_lines, _inline, _BLOCK, "    ", _special)


def _hard_split(block: str, limit: int) -> list[str]:
    """A block too long for one message, cut by bot/mdsplit.py; a code block is closed
    before each cut and reopened after it."""
    fenced = block.startswith(FENCE) and block.endswith(FENCE) and len(block) > 2 * len(FENCE)
    body = block[len(FENCE):-len(FENCE)].strip("\n") if fenced else block
    room = limit - (2 * len(FENCE) + 2 if fenced else 0)

    def cut(line: str) -> int:
        amp = line.rfind("&", max(0, room - 5), room)  # never cut inside &amp; &lt; &gt;
        return (amp or room) if amp != -1 and ";" not in line[amp:room] else room

    return [f"{FENCE}\n{c}\n{FENCE}" if fenced else c for c in split_lines(body, room, len, cut)]


def to_mrkdwn(md: str, limit: int = LIMIT) -> list[str]:
    """Messages to send, in order, each at most `limit` characters of mrkdwn."""
    texts = [text for text, _ in blocks(md, _render) if text] or [escape(md)]
    pieces = pack(texts, limit, len, _hard_split, lambda a, b: a + "\n\n" + b)
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
