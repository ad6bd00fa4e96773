"""Sending mail: send_email, reply_email, forward_email. Each is a `send`: by default
the gate turns it into a draft the owner approves on a card; only an approval sends.

Exactly once. Each tool's `prepare` hook runs when the draft is made and fixes
everything that must not change before the send: the Message-ID, the From
address, the recipients (for a reply: resolved from the original's Reply-To/From,
and its Cc for reply-all), the threading headers (In-Reply-To, References), the
quoted or forwarded text, and the attachments with their sizes and sha256. The
draft stores exactly that; the approval state machine runs it once. The send
itself (`transmit`) is driven step by step so its failures mean one thing each:

- anything before the server has said "354 go ahead" to DATA (refused connection,
  TLS, login, a refused sender or recipient, a refused DATA) -> `ToolError`: nothing
  was sent, the approval ends `failed`, the draft's text stays on it.
- the server refusing the message after receiving it (a 4xx/5xx reply to the
  final dot) -> `ToolError`: by SMTP's rules it did not take the message.
- the connection dropping or timing out after the message went over ->
  `ToolOutcomeUnknown`: it may have been accepted, so the approval ends `unknown`
  and the owner is told to check Sent. A "not sent" that turns out wrong leads to
  a duplicate mail; a "maybe" costs one look. Nothing is ever retried.

Drafts copy. With EMAIL_SAVE_DRAFTS=true the draft is also put in the mailbox's
Drafts folder (IMAP APPEND, found by its \\Drafts flag) so the owner sees it in
Gmail; after a successful send that copy is removed (by its Message-ID). An edit
on the card does not update the copy (the card is what counts); a rejected or
failed draft leaves it there, so the text is never lost.
"""

from __future__ import annotations

import asyncio
import imaplib
import logging
import re
import smtplib
import time
from email.headerregistry import Address
from typing import Annotated, Any

from store.config import Settings
from tools.mailbox.account import (
    Account, smtp_close, account, encode_folder, imap_ok, imap_session, quote, scrub, smtp_connect, smtp_text,
    special_folder,
)
from tools.mailbox.compose import (
    MAX_RECIPIENTS, addr_of, compose, dedupe, describe_files, file_record, new_message_id, parse_recipients,
    preview, read_checked, wire_bytes, check_wire,
)
from tools.mail_read import capabilities, fetch_raw, parse_id, save
from tools.mailbox.text import addresses, attachments as mail_attachments, body_text, date_of, header, parse, show_address
from tools.registry import Effect, Hidden, ToolContext, ToolError, ToolOutcomeUnknown, tool
from tools.mailbox.account import configured

ready = configured  # the registry offers these tools only when mail is set up

log = logging.getLogger("dispatch.mail")

QUOTE_MAX_LINES = 300
_MSGID = re.compile(r"<[^<>\s]+>")


# Draft-time preparation --------------------------------------------------------------------


def _common(settings: Settings, args: dict[str, Any],
            extra_files: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Checks and fixes what every outgoing mail shares. Runs in a worker thread."""
    acct = account(settings)
    to = parse_recipients(args.get("to") or [], "To")
    cc = parse_recipients(args.get("cc") or [], "Cc")
    bcc = parse_recipients(args.get("bcc") or [], "Bcc")
    to, cc, bcc = dedupe(to, cc, bcc)
    if not to + cc + bcc:
        raise ToolError("The mail has no recipient; give at least one address in `to`.")
    if len(to + cc + bcc) > MAX_RECIPIENTS:
        raise ToolError(f"A mail can go to at most {MAX_RECIPIENTS} recipients.")
    args = {**args, "to": to, "cc": cc, "bcc": bcc,
            "subject": " ".join((args.get("subject") or "").split()),
            "files": describe_files(settings, args.get("attachments") or [], extra_files),
            "sender": str(_from(acct)), "message_id": new_message_id(acct)}
    check_wire(args)  # refused here, on the draft, rather than half-way through a send
    args["drafts_copy"] = _save_draft(acct, args) if acct.save_drafts else {}
    return args


def _recipient(name: str, addr: str) -> str:
    """"Name <addr>", quoted where the name needs it ("Doe, Jane" <jane@x.com>)."""
    try:
        return str(Address(display_name=" ".join(name.split()), addr_spec=addr)) if name else addr
    except Exception:  # an address the parser rejects; parse_recipients then says so
        return addr


def _from(acct: Account) -> str:
    return str(Address(display_name=acct.from_name, addr_spec=acct.address)) if acct.from_name else acct.address


def _original(settings: Settings, mail_id: str) -> Any:
    folder, uid = parse_id(mail_id)
    with imap_session(account(settings)) as conn:
        return parse(fetch_raw(conn, folder, uid))


def _reply_fields(settings: Settings, args: dict[str, Any]) -> dict[str, Any]:
    acct = account(settings)
    orig = _original(settings, args["id"])
    me = acct.address.lower()

    def fmt(pairs: list[tuple[str, str]]) -> list[str]:
        return [_recipient(n, a) for n, a in pairs]

    from_me = any(a.lower() == me for _, a in addresses(orig, "From"))
    if from_me:  # replying to one's own sent mail continues to its recipients
        to = fmt(addresses(orig, "To"))
    else:
        to = fmt(addresses(orig, "Reply-To") or addresses(orig, "From"))
    if not to:
        raise ToolError(f"Mail {args['id']} has no sender address to reply to; use send_email instead.")
    cc = []
    if args.get("reply_all"):
        cc = fmt([(n, a) for n, a in addresses(orig, "To") + addresses(orig, "Cc") if a.lower() != me])
    subject = header(orig, "Subject")
    if not re.match(r"(?i)^\s*(re|aw|sv|antw|odp|r)\s*:", subject):
        subject = f"Re: {subject}".strip()
    msgid = (_MSGID.findall(header(orig, "Message-ID")) or [""])[0]
    refs = _MSGID.findall(header(orig, "References")) or _MSGID.findall(header(orig, "In-Reply-To"))
    refs = [r for r in refs if r != msgid][-20:] + ([msgid] if msgid else [])
    quoted = ""
    if args.get("quote_original", True):
        text, _ = body_text(orig)
        lines = text.splitlines()
        cut = lines[:QUOTE_MAX_LINES] + (["[…]"] if len(lines) > QUOTE_MAX_LINES else [])
        who = ", ".join(show_address(n, a) for n, a in addresses(orig, "From")) or "the sender"
        quoted = f"On {date_of(orig)}, {who} wrote:\n" + "\n".join(f"> {line}" if line else ">" for line in cut)
    return {"to": to, "cc": cc + list(args.get("cc") or []), "subject": subject,
            "in_reply_to": msgid, "references": " ".join(refs), "quoted": quoted}


def _forward_fields(settings: Settings, args: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    orig = _original(settings, args["id"])
    subject = header(orig, "Subject")
    if not re.match(r"(?i)^\s*(fwd?|wg|tr|rv)\s*:", subject):
        subject = f"Fwd: {subject}".strip()
    text, _ = body_text(orig)
    head = ["---------- Forwarded message ---------"]
    for name in ("From", "Date", "Subject", "To", "Cc"):
        value = date_of(orig) if name == "Date" else header(orig, name)
        if value:
            head.append(f"{name}: {value}")
    files: list[dict[str, Any]] = []
    found = mail_attachments(orig)
    if args.get("include_attachments", True) and found:
        folder, uid = parse_id(args["id"])
        where = settings.workspace / "forwarded" / f"{folder.replace('/', '_')}-{uid}"
        files = [file_record(path) for _, path in save(found, where)]
    return {"subject": subject, "forwarded": "\n".join(head) + "\n\n" + text}, files


async def prepare_send(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    return await asyncio.to_thread(_common, ctx.settings, args)


async def prepare_reply(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        return _common(ctx.settings, {**args, **_reply_fields(ctx.settings, args)})

    return await asyncio.to_thread(run)


async def prepare_forward(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        fields, files = _forward_fields(ctx.settings, args)
        return _common(ctx.settings, {**args, **fields}, files)

    return await asyncio.to_thread(run)


# The Drafts folder ------------------------------------------------------------------------


def _save_draft(acct: Account, args: dict[str, Any]) -> dict[str, str]:
    """Put a copy in Drafts; a failure only notes why (the card is the real draft)."""
    try:
        datas = [open(f["path"], "rb").read() for f in args["files"]]
        data = compose(args, datas, with_bcc=True).as_bytes()
        with imap_session(acct) as conn:
            folder = special_folder(conn, "\\drafts", ("Drafts", "[Gmail]/Drafts", "INBOX.Drafts", "Draft"))
            if folder is None:
                return {"error": "no Drafts folder was found"}
            imap_ok(conn.append(folder.wire, "(\\Draft \\Seen)", imaplib.Time2Internaldate(time.time()), data),
                    "save the draft")
            return {"folder": folder.name}
    except ToolError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # best effort: the card is the draft that counts
        log.warning("could not save a Drafts copy: %s", scrub(f"{type(exc).__name__}: {exc}", acct))
        return {"error": f"the mail server did not take it ({type(exc).__name__})"}


def _remove_draft(acct: Account, folder: str, message_id: str) -> str:
    """Remove the Drafts copy after the send; '' or a note of why it stayed."""
    try:
        with imap_session(acct) as conn:
            imap_ok(conn.select(quote(encode_folder(folder))), "open the Drafts folder")
            data = imap_ok(conn.uid("SEARCH", "HEADER", "Message-ID", quote(message_id, "The Message-ID")),
                          "find the draft")
            uids = b",".join(u for chunk in data if chunk for u in chunk.split())
            if uids:
                imap_ok(conn.uid("STORE", uids.decode(), "+FLAGS.SILENT", "(\\Deleted)"), "remove the draft")
                if "UIDPLUS" in capabilities(conn):  # else it stays flagged, hidden by mail apps
                    conn.uid("EXPUNGE", uids.decode())
        return ""
    except Exception as exc:  # the mail is sent; nothing here may make it look failed
        text = scrub(str(exc), acct)
        log.info("could not remove the Drafts copy of %s: %s", message_id, text)
        return f" (The copy in {folder} could not be removed: {text})"


# The send ----------------------------------------------------------------------------------


def transmit(acct: Account, sender: str, recipients: list[str], payload: bytes, subject: str, message_id: str) -> str:
    """Hand one message to the SMTP server, once. See the module docstring for what each
    failure means. Returns the server's acceptance line."""
    conn = smtp_connect(acct)
    handed = False
    try:
        options = [f"SIZE={len(payload)}"] if conn.has_extn("size") else []
        code, resp = conn.mail(sender, options)
        if code != 250:
            raise ToolError(
                f"The SMTP server refused the sender {sender}: {_reply(code, resp, acct)}. Nothing was sent."
            )
        refused = []
        for rcpt in recipients:
            code, resp = conn.rcpt(rcpt)
            if code not in (250, 251):
                refused.append(f"{rcpt} ({_reply(code, resp, acct)})")
        if refused:
            raise ToolError(f"The SMTP server refused {'; '.join(refused)}. Nothing was sent, to anyone.")
        code, resp = conn.docmd("DATA")
        if code != 354:
            raise ToolError(
                f"The SMTP server would not take the message: {_reply(code, resp, acct)}. Nothing was sent."
            )
        handed = True
        if conn.sock is not None:  # a big mail on a slow line: allow for ~64 KB/s, not EMAIL_TIMEOUT
            conn.sock.settimeout(acct.timeout + len(payload) / 64_000)
        conn.send(payload)
        code, resp = conn.getreply()
        if code != 250:
            raise ToolError(
                f"The SMTP server refused the message after receiving it: {_reply(code, resp, acct)}. It was not sent."
            )
        return _reply(code, resp, acct)
    except ToolError:
        raise
    except (OSError, smtplib.SMTPException) as exc:
        if handed:
            raise ToolOutcomeUnknown(
                f"The connection to {acct.smtp_host} broke after the message was handed over "
                f"({smtp_text(exc, acct)}), so it may or may not have been sent. It will not be re-sent "
                f"automatically: check your Sent folder for \u201c{subject}\u201d (Message-ID {message_id}) "
                "before sending it again."
            ) from None
        raise ToolError(
            f"The connection to the SMTP server broke before the message was handed over ({smtp_text(exc, acct)}). "
            "Nothing was sent."
        ) from None
    finally:
        smtp_close(conn)


def _reply(code: int, resp: bytes | str, acct: Account) -> str:
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)
    return smtp_text(smtplib.SMTPResponseException(code, " ".join(text.split())), acct)


def send_stored(ctx: ToolContext, args: dict[str, Any]) -> str:
    """Send a prepared draft: its stored arguments, exactly, once."""
    acct = account(ctx.settings)
    if not args.get("message_id") or not args.get("sender"):
        raise ToolError("This mail was never prepared as a draft, so it was not sent.")
    if addr_of(args["sender"]).lower() != acct.address.lower():
        raise ToolError(
            f"This draft was made for {addr_of(args['sender'])}, but the mail account is now {acct.address}; "
            "nothing was sent. Ask for a new draft."
        )
    check_wire(args)  # before anything reaches the server: a refusal here is "not sent"
    datas = [read_checked(ctx.settings, f) for f in args.get("files") or []]
    payload = wire_bytes(compose(args, datas))
    rcpts = [addr_of(r) for r in [*args["to"], *args.get("cc", []), *args.get("bcc", [])]]
    server = transmit(acct, acct.address, rcpts, payload, args.get("subject", ""), args["message_id"])
    log.info("mail %s accepted by %s: %s", args["message_id"], acct.smtp_host, server)
    note = ""
    drafts = args.get("drafts_copy") or {}
    if drafts.get("folder"):
        note = _remove_draft(acct, drafts["folder"], args["message_id"])
    return (f"Sent \u201c{args.get('subject', '')}\u201d to {', '.join(rcpts)} "
            f"(Message-ID {args['message_id']}).{note}")


# The tools -------------------------------------------------------------------------------

_Str = Annotated[str, Hidden]
_List = Annotated[list[str], Hidden]
_Files = Annotated[list[dict[str, Any]], Hidden]
_Dict = Annotated[dict[str, str], Hidden]


@tool(connector="email", effect=Effect.SEND, preview=preview, edit_field="body", prepare=prepare_send)
def send_email(
    ctx: ToolContext, to: list[str], subject: str, body: str,
    cc: list[str] = [], bcc: list[str] = [], attachments: list[str] = [],  # noqa: B006
    sender: _Str = "", message_id: _Str = "", files: _Files = [], drafts_copy: _Dict = {},  # noqa: B006
) -> str:
    """Send a new email from the owner's address. By default it becomes a draft that
    the owner approves before anything is sent.

    Args:
        to: Recipient addresses, e.g. ["bob@example.com", "Ann Lee <ann@example.com>"].
        subject: The subject line.
        body: The text of the mail (plain text).
        cc: Addresses to copy.
        bcc: Addresses to copy invisibly.
        attachments: Files to attach: paths in the allowed folders, or names in the outbox. At most 25 MB in all.
    """
    return send_stored(ctx, dict(to=to, subject=subject, body=body, cc=cc, bcc=bcc, sender=sender,
                                 message_id=message_id, files=files, drafts_copy=drafts_copy))


@tool(connector="email", effect=Effect.SEND, preview=preview, edit_field="body", prepare=prepare_reply)
def reply_email(
    ctx: ToolContext, id: str, body: str, reply_all: bool = False,
    cc: list[str] = [], bcc: list[str] = [], attachments: list[str] = [],  # noqa: B006
    quote_original: bool = True,
    to: _List = [], subject: _Str = "", in_reply_to: _Str = "", references: _Str = "", quoted: _Str = "",  # noqa: B006
    sender: _Str = "", message_id: _Str = "", files: _Files = [], drafts_copy: _Dict = {},  # noqa: B006
) -> str:
    """Reply to a message, in its thread (Re: subject, In-Reply-To, References). It goes
    to the sender (or their Reply-To address). By default it becomes a draft that the
    owner approves before anything is sent.

    Args:
        id: The message to answer, from search_mail, e.g. "INBOX:42".
        body: The text of the reply (plain text; the original is quoted below it).
        reply_all: Also copy everyone else who got the original.
        cc: More addresses to copy.
        bcc: Addresses to copy invisibly.
        attachments: Files to attach: paths in the allowed folders, or names in the outbox. At most 25 MB in all.
        quote_original: Quote the original message below the reply.
    """
    return send_stored(ctx, dict(to=to, subject=subject, body=body, cc=cc, bcc=bcc, in_reply_to=in_reply_to,
                                 references=references, quoted=quoted, sender=sender, message_id=message_id,
                                 files=files, drafts_copy=drafts_copy))


@tool(connector="email", effect=Effect.SEND, preview=preview, edit_field="body", prepare=prepare_forward)
def forward_email(
    ctx: ToolContext, id: str, to: list[str], body: str = "",
    cc: list[str] = [], bcc: list[str] = [], attachments: list[str] = [],  # noqa: B006
    include_attachments: bool = True,
    subject: _Str = "", forwarded: _Str = "",
    sender: _Str = "", message_id: _Str = "", files: _Files = [], drafts_copy: _Dict = {},  # noqa: B006
) -> str:
    """Forward a message (its text and attachments) to someone. By default it becomes a
    draft that the owner approves before anything is sent.

    Args:
        id: The message to forward, from search_mail, e.g. "INBOX:42".
        to: Recipient addresses.
        body: A note above the forwarded message.
        cc: Addresses to copy.
        bcc: Addresses to copy invisibly.
        attachments: More files to attach: paths in the allowed folders, or names in the outbox.
        include_attachments: Forward the original's attachments too.
    """
    return send_stored(ctx, dict(to=to, subject=subject, body=body, cc=cc, bcc=bcc, forwarded=forwarded,
                                 sender=sender, message_id=message_id, files=files, drafts_copy=drafts_copy))
