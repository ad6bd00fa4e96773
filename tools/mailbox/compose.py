"""Building an outgoing mail: checked addresses, checked attachments, the MIME
message, and the approval card's preview.

Everything the owner approves is decided here, at draft time, and stored in the
draft's arguments: normalised recipients, the From address, the Message-ID, the
threading headers, and each attachment's path, size and sha256. At send time the
message is rebuilt from exactly those values; an attachment whose bytes no longer
match what was approved stops the send (see `read_checked`).
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, getaddresses, make_msgid
from pathlib import Path
from typing import Any

from store.config import Settings
from tools.mailbox.account import Account, wire_safe
from tools.mailbox.text import size_text
from tools.filesystem.paths import check_content, resolve
from tools.registry import ToolError

MAX_ATTACHMENTS_BYTES = 25 * 1024 * 1024  # Gmail's limit, for one file and for all together
MAX_RECIPIENTS = 100
MAX_SHOWN_NAME = 60  # display names on a card are clipped; addresses never are
# 7-bit transfer encodings (quoted-printable/base64) and CRLF line ends: accepted by
# every SMTP server, 8BITMIME or not.
POLICY = SMTP.clone(cte_type="7bit")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", re.I)


# Addresses ------------------------------------------------------------------------------


def check_address(addr: str) -> str | None:
    """Why `addr` is not a usable address, or None."""
    if not addr or addr.count("@") != 1:
        return "an address has exactly one @"
    local, _, domain = addr.rpartition("@")
    if not local or not local.isascii():
        return "the part before the @ must be plain ASCII" if local else "nothing before the @"
    try:
        Address(addr_spec=addr)
    except Exception as exc:  # HeaderParseError, ValueError, ...: the parser's words are clear enough
        return str(exc).rstrip(".)") or "it does not parse"
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return f"{domain!r} is not a valid domain"
    if not _DOMAIN.match(ascii_domain):
        return f"{domain!r} is not a valid domain"
    return None


def parse_recipients(values: list[str], field: str) -> list[str]:
    """Each recipient as "Name <addr>" or "addr"; ToolError naming any bad one."""
    out = []
    for raw in values:
        if not raw or not raw.strip():
            continue
        if "\r" in raw or "\n" in raw:
            raise ToolError(f"{field}: {raw!r} contains a line break, which no address may.")
        pairs = getaddresses([raw])
        if not pairs or any(not a for _, a in pairs):
            raise ToolError(f"{field}: {raw!r} is not a valid email address.")
        for name, addr in pairs:
            # The parser quietly drops spaces and comments ("bob@exa mple.com" becomes
            # bob@example.com); an address that is not literally in the text is refused.
            why = check_address(addr) or (None if addr in raw else "it does not parse cleanly")
            if why:
                raise ToolError(f"{field}: {raw!r} is not a valid email address ({why}).")
            name = " ".join(name.split())
            out.append(str(Address(display_name=name, addr_spec=addr)) if name else addr)
    return out


def addr_of(recipient: str) -> str:
    pairs = getaddresses([recipient])
    return pairs[0][1] if pairs else recipient


def dedupe(to: list[str], cc: list[str], bcc: list[str]) -> tuple[list[str], list[str], list[str]]:
    """Each address once, in the most visible field it appears in."""
    seen: set[str] = set()
    result = []
    for group in (to, cc, bcc):
        kept = []
        for r in group:
            key = addr_of(r).lower()
            if key not in seen:
                seen.add(key)
                kept.append(r)
        result.append(kept)
    return result[0], result[1], result[2]


def new_message_id(acct: Account) -> str:
    """Fixed when the draft is made; the domain is the sender's (no DNS lookup)."""
    return make_msgid(domain=acct.address.rpartition("@")[2] or "dispatch.local")


# Attachments ----------------------------------------------------------------------------



def resolve_attachment(settings: Settings, raw: str) -> Path:
    """An attachment path, confined like every file tool (roots, workspace, outbox;
    never a secret). A bare name not found in the first root is looked for in the
    outbox, then the workspace, where Dispatch puts what it makes."""
    try:
        path = resolve(settings, raw)
    except ToolError as first:
        if Path(raw).is_absolute() or "does not exist" not in str(first):
            raise
        for base in (settings.outbox, settings.workspace):
            if (base / raw).exists():
                path = resolve(settings, str(base / raw))
                break
        else:
            raise
    if not path.is_file():
        raise ToolError(f"{raw} is a folder, not a file; attach the files in it one by one.")
    check_content(path, raw)  # a private key under an innocent name is refused too
    return path


def describe_files(settings: Settings, raws: list[str],
                   extra: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """[{path, name, size, sha256}] for each attachment, within the 25 MB limit."""
    files = list(extra or [])
    for raw in raws:
        if not raw or not raw.strip():
            continue
        path = resolve_attachment(settings, raw)
        size = path.stat().st_size
        if size > MAX_ATTACHMENTS_BYTES:
            raise ToolError(
                f"{path.name} is {size_text(size)}; mail attachments can be at most 25 MB. "
                "Share it through a link instead, or send a smaller file."
            )
        files.append(file_record(path))
    total = sum(f["size"] for f in files)
    if total > MAX_ATTACHMENTS_BYTES:
        raise ToolError(f"The attachments come to {size_text(total)} together; a mail can carry at most 25 MB.")
    return files


def file_record(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    return {"path": str(path), "name": path.name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def read_checked(settings: Settings, record: dict[str, Any]) -> bytes:
    """The attachment's bytes, only if they are still exactly what the owner approved."""
    try:
        path = resolve(settings, record["path"])
    except ToolError as exc:
        raise ToolError(f"The attachment {record['name']} can no longer be used ({exc}); nothing was sent.") from None
    data = path.read_bytes()
    if len(data) != record["size"] or hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise ToolError(
            f"The attachment {record['name']} changed after the draft was made (it was {size_text(record['size'])}, "
            f"now {size_text(len(data))}), so nothing was sent. Ask for a new draft with the current file."
        )
    return data


# The message ----------------------------------------------------------------------------


def full_text(args: dict[str, Any]) -> str:
    """What the mail says: the owner-approved body, then any quoted or forwarded mail."""
    parts = [args.get("body", "").rstrip()]
    for extra in (args.get("quoted"), args.get("forwarded")):
        if extra:
            parts.append(extra)
    return "\n\n".join(p for p in parts if p) + "\n"


def compose(args: dict[str, Any], datas: list[bytes], *, with_bcc: bool = False) -> EmailMessage:
    """The MIME message for these stored arguments (Bcc only in a Drafts copy)."""
    msg = EmailMessage(policy=POLICY)
    msg["From"] = args["sender"]
    msg["To"] = ", ".join(args["to"])
    if args.get("cc"):
        msg["Cc"] = ", ".join(args["cc"])
    if with_bcc and args.get("bcc"):
        msg["Bcc"] = ", ".join(args["bcc"])
    msg["Subject"] = args.get("subject", "")
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = args["message_id"]
    if args.get("in_reply_to"):
        msg["In-Reply-To"] = args["in_reply_to"]
    if args.get("references"):
        msg["References"] = args["references"]
    msg.set_content(full_text(args))
    for record, data in zip(args.get("files") or [], datas, strict=True):
        ctype = mimetypes.guess_type(record["name"])[0] or "application/octet-stream"
        maintype, _, subtype = ctype.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=record["name"])
    return msg


def check_wire(args: dict[str, Any]) -> None:
    """Every value that becomes a header line or an SMTP command (MAIL FROM, RCPT TO)
    holds no CR, LF or NUL, so none can add a header (a hidden Bcc) or a command. The
    email and smtplib libraries would refuse them too, but with a ValueError half-way
    through a send; this refuses them as a ToolError before anything is sent."""
    fields = {"Sender": args.get("sender", ""), "Subject": args.get("subject", ""),
              "Message-ID": args.get("message_id", ""), "In-Reply-To": args.get("in_reply_to", ""),
              "References": args.get("references", "")}
    for name in ("to", "cc", "bcc"):
        for i, value in enumerate(args.get(name) or []):
            fields[f"{name.capitalize()} #{i + 1}"] = value
    for i, f in enumerate(args.get("files") or []):
        fields[f"Attachment name #{i + 1}"] = str(f.get("name", ""))
    for what, value in fields.items():
        wire_safe(str(value or ""), what)


def wire_bytes(msg: EmailMessage) -> bytes:
    """The DATA payload: CRLF line ends, leading dots doubled, ended by CRLF.CRLF."""
    data = msg.as_bytes(policy=POLICY)
    data = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    data = re.sub(rb"(?m)^\.", b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


# The approval card ----------------------------------------------------------------------


def show_recipient(recipient: str) -> str:
    """The address first, plainly (a display name can say anything), then the name."""
    name, addr = getaddresses([recipient])[0] if recipient else ("", "")
    domain = addr.rpartition("@")[2]
    shown = addr
    if domain and not domain.isascii():
        try:
            shown += f" [{domain.encode('idna').decode('ascii')}]"
        except UnicodeError:
            pass
    if len(name) > MAX_SHOWN_NAME:  # a display name can be long enough to push the rest off a card
        name = name[:MAX_SHOWN_NAME].rstrip() + f"… ({len(name):,} characters)"
    return f"{shown} ({name})" if name and name != addr else shown


def preview(args: dict[str, Any]) -> str:
    """The card: From, To, Cc, Bcc, Subject, the whole text, the
    attachments with sizes, and where a Drafts copy is."""
    kind = "reply" if "in_reply_to" in args else "forward" if "forwarded" in args else "new message"

    def people(key: str) -> str:
        return ", ".join(show_recipient(r) for r in args.get(key) or []) or "—"

    text = full_text(args).strip()  # whole: a card that must shorten it says so and offers Full text
    lines = [
        f"Email ({kind})",
        f"From: {show_recipient(args.get('sender', ''))}",
        f"To: {people('to')}",
        f"Cc: {people('cc')}",
        f"Bcc: {people('bcc')}",
        f"Subject: {args.get('subject') or '(no subject)'}",
        "",
        text or "(no text)",
        "",
    ]
    files = args.get("files") or []
    if files:
        lines.append("Attachments: " + ", ".join(f"{f['name']} ({size_text(f['size'])})" for f in files))
    else:
        lines.append("Attachments: none")
    drafts = args.get("drafts_copy") or {}
    if drafts.get("folder"):
        lines.append(f"A copy is in your {drafts['folder']} folder.")
    elif drafts.get("error"):
        lines.append(f"(No copy in your Drafts folder: {drafts['error']})")
    return "\n".join(lines)
