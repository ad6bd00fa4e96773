"""A received mail as clean text: decoded headers, the readable body, its attachments.

Mail in the wild is messy: headers in RFC 2047 encoded-words or raw 8-bit,
charsets that are wrong or unknown, HTML-only newsletters, attachments nested in
multipart/mixed inside multipart/related. Everything here degrades to readable
text (bad bytes become U+FFFD) instead of raising, because a mail that cannot be
read is worse than one with a replacement character in it.

The body is the text/plain part when it has any text, otherwise the HTML part
turned into text (links keep their address, lists their bullets, scripts and
styles are dropped). An attached message (message/rfc822) is one attachment; it is
not opened into the body.
"""

from __future__ import annotations

import codecs
import email
import email.header
import email.policy
import mimetypes
import re
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Iterator

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def _fix_surrogates(text: str) -> str:
    """Raw 8-bit header bytes come through as surrogate escapes; read them as UTF-8."""
    if any("\udc80" <= c <= "\udcff" for c in text):
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


def header(msg: Message, name: str) -> str:
    """One header, decoded and on one line ("" when absent)."""
    try:
        value = msg.get(name)
    except Exception:  # a header so broken the parser gives up on it
        value = None
        for k, v in msg.raw_items() if hasattr(msg, "raw_items") else []:
            if k.lower() == name.lower():
                value = str(email.header.make_header(email.header.decode_header(v)))
    if value is None:
        return ""
    text = _fix_surrogates(str(value))
    return " ".join(_CONTROL.sub(" ", text).split())


def addresses(msg: Message, name: str) -> list[tuple[str, str]]:
    """(display name, address) pairs of an address header."""
    return [(n, a) for n, a in getaddresses([header(msg, name)]) if a]


def show_address(name: str, addr: str) -> str:
    return f"{name} <{addr}>" if name and name != addr else addr


def size_text(n: float) -> str:
    """1234567 -> "1.2 MB"."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def date_of(msg: Message) -> str:
    raw = header(msg, "Date")
    try:
        return parsedate_to_datetime(raw).strftime("%Y-%m-%d %H:%M %z").strip()
    except (TypeError, ValueError, IndexError):
        return raw


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Bytes in a declared charset; wrong or unknown charsets fall back sensibly."""
    charset = (charset or "").strip().lower() or "us-ascii"
    if charset in ("us-ascii", "ascii") and not data.isascii():
        charset = "utf-8"  # mislabelled 8-bit text is nearly always UTF-8...
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("cp1252", "replace")  # ...or Windows-1252
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    return data.decode(charset, "replace")


def part_text(part: Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    return decode_bytes(data, part.get_content_charset()).replace("\r\n", "\n")


def body_text(msg: EmailMessage) -> tuple[str, str]:
    """(text, where it came from): "text/plain", "text/html" or "" for no body."""
    plain = msg.get_body(preferencelist=("plain",))
    if plain is not None:
        text = part_text(plain).strip()
        if text:
            return text, "text/plain"
    html = msg.get_body(preferencelist=("html",))
    if html is not None:
        text = html_to_text(part_text(html))
        if text:
            return text, "text/html"
    return "", ""


@dataclass
class Attachment:
    index: int
    filename: str
    content_type: str
    size: int
    part: Message

    def data(self) -> bytes:
        if self.part.get_content_type() == "message/rfc822":
            inner = self.part.get_payload(0)
            return inner.as_bytes() if isinstance(inner, Message) else b""
        data = self.part.get_payload(decode=True)
        return data if isinstance(data, bytes) else b""


def _leaves(part: Message) -> Iterator[Message]:
    if part.get_content_type() == "message/rfc822" or not part.is_multipart():
        yield part
        return
    for sub in part.get_payload():  # type: ignore[union-attr]
        if isinstance(sub, Message):
            yield from _leaves(sub)


def attachments(msg: EmailMessage) -> list[Attachment]:
    """Every part that is not the body: files, attached messages, inline images."""
    body_parts = {id(p) for p in (msg.get_body(("plain",)), msg.get_body(("html",))) if p is not None}
    found: list[Attachment] = []
    for part in _leaves(msg):
        if id(part) in body_parts:
            continue
        ctype = part.get_content_type()
        try:
            name = part.get_filename() or ""
        except Exception:
            name = ""
        disposition = (part.get_content_disposition() or "").lower()
        if not name and ctype.startswith("text/") and disposition != "attachment":
            continue  # a stray inline text part (a list footer), not a file
        att = Attachment(len(found) + 1, "", ctype, 0, part)
        att.size = len(att.data())
        att.filename = safe_filename(_fix_surrogates(name), ctype, att.index)
        found.append(att)
    return found


def safe_filename(name: str, ctype: str, index: int) -> str:
    """A name that is safe to create in a folder: no path parts, no control characters."""
    name = _CONTROL.sub("", name.replace("\\", "/")).split("/")[-1].strip().strip(".")
    name = re.sub(r'[<>:"|?*]', "_", name)
    if len(name) > 150:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 140] + dot + ext[:9]) if dot and len(ext) < 10 else name[:150]
    if not name:
        ext = ".eml" if ctype == "message/rfc822" else (mimetypes.guess_extension(ctype) or ".bin")
        name = f"attachment-{index}{ext}"
    return name


# HTML to text ---------------------------------------------------------------------------

_BLOCK = {
    "p", "div", "br", "tr", "table", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6",
    "blockquote", "section", "article", "header", "footer", "hr", "pre", "address", "dl", "dt", "dd",
    "center", "form", "fieldset", "figure", "main", "nav", "aside",
}
_PRE_SPACE = "\ue000"
_SKIP = {"script", "style", "head", "title", "noscript", "template", "svg"}


class _TextMaker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.pre = 0
        self.links: list[tuple[str, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip += 1
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in ("td", "th"):
            self.out.append("  ")
        elif tag == "a":
            self.links.append((dict(attrs).get("href") or "", len(self.out)))
        elif tag == "img":
            alt = (dict(attrs).get("alt") or "").strip()
            if alt:
                self.out.append(f"[{alt}]")
        if tag in _BLOCK:
            self.out.append("\n\n" if tag in ("p", "h1", "h2", "h3", "table", "blockquote") else "\n")
        if tag == "pre":
            self.pre += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag in _SKIP:
            self.skip -= 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            shown = "".join(self.out[start:]).strip()
            if href.startswith(("http://", "https://")) and href.rstrip("/") != shown.rstrip("/"):
                self.out.append(f" ({href})")
        if tag in _BLOCK:
            self.out.append("\n")
        if tag == "pre":
            self.pre = max(0, self.pre - 1)

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        # Spaces inside <pre> are kept through the line clean-up as a private-use mark.
        self.out.append(data.replace(" ", _PRE_SPACE) if self.pre else re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    maker = _TextMaker()
    try:
        maker.feed(html)
        maker.close()
    except Exception:  # HTMLParser is lenient; this is for the truly pathological
        return " ".join(re.sub(r"<[^>]+>", " ", html).split())
    text = "".join(maker.out).replace("\xa0", " ")
    lines = [line.strip() for line in text.split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip().replace(_PRE_SPACE, " ")
