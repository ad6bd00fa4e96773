"""The owner's mail account: settings, IMAP and SMTP connections, the login check.

The email tools live in `tools.mail_read` (search, read, save attachments) and
`tools.mail_send` (send, reply, forward); this module is what they share.

Decisions:

- The stdlib `imaplib` and `smtplib`, not aioimaplib/aiosmtplib. They are mature,
  cover SSL, STARTTLS and timeouts, add no dependency, and `smtplib` lets a send be
  driven step by step (connect, login, MAIL, RCPT, DATA), which is exactly what is
  needed to tell "refused before the message was handed over" (nothing sent: a
  `ToolError`) from "dropped after it was handed over" (maybe sent: a
  `ToolOutcomeUnknown`). The tools are sync functions, which the registry runs in
  a worker thread, so the event loop never waits on a mail server.
- One connection per tool call, closed at the end. A phone-driven agent makes a
  few mail calls a minute at most; a pooled connection that silently went stale
  would be a worse failure than a login per call.
- Security comes from the port unless set: 993/465 are SSL from the first byte,
  anything else upgrades with STARTTLS. `none` (plain text) exists for local
  bridges and tests; `Settings.problems()` refuses it for a non-loopback host.
- The password is only ever handed to `login`. Every message built from a server
  error goes through `scrub`, so the password (or its space-free Gmail form)
  cannot reach a log, the store, a tool result or a card.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

from tools.registry import ToolError

if TYPE_CHECKING:
    from store.config import Settings

NOT_SET_UP = (
    "Email is not set up: set EMAIL_ADDRESS and EMAIL_PASSWORD (for Gmail an app password) "
    "in .env, then restart Dispatch. The README section \u201cEmail\u201d explains how."
)
GMAIL_HINT = (
    " Gmail needs an app password here, not your normal password "
    "(myaccount.google.com/apppasswords; see the README section \u201cEmail\u201d)."
)


@dataclass(frozen=True)
class Account:
    """The mail settings, resolved: who we are and how to reach the servers."""

    address: str
    username: str
    from_name: str
    imap_host: str
    imap_port: int
    imap_security: str  # ssl | starttls | none
    smtp_host: str
    smtp_port: int
    smtp_security: str
    timeout: float
    save_drafts: bool
    ca_file: str | None
    _password: str = field(repr=False)

    @property
    def is_gmail(self) -> bool:
        return self.imap_host.lower().endswith(("gmail.com", "googlemail.com")) or self.smtp_host.lower().endswith(
            ("gmail.com", "googlemail.com")
        )

    def hint(self) -> str:
        return GMAIL_HINT if self.is_gmail else ""


def security_for(raw: str, port: int, ssl_port: int) -> str:
    """`ssl`, `starttls` or `none`; empty means "from the port" (465/993 are SSL)."""
    value = (raw or "").strip().lower()
    if value:
        return value
    return "ssl" if port == ssl_port else "starttls"


def configured(settings: "Settings") -> bool:
    """Mail tools are offered to the model only when an account is set up."""
    password = settings.email_password.get_secret_value() if settings.email_password else ""
    return bool((settings.email_address or "").strip() and password)


def account(settings: "Settings") -> Account:
    """The configured account, or a ToolError that tells the owner how to set it up."""
    address = (settings.email_address or "").strip()
    password = settings.email_password.get_secret_value() if settings.email_password else ""
    if not address or not password:
        raise ToolError(NOT_SET_UP)
    imap_host, smtp_host = settings.imap_host.strip(), settings.smtp_host.strip()
    if imap_host.lower().endswith("gmail.com") and re.fullmatch(r"[a-z]{4}( [a-z]{4}){3}", password):
        password = password.replace(" ", "")  # Google shows app passwords in groups of four
    return Account(
        address=address,
        username=(settings.email_username or "").strip() or address,
        from_name=settings.email_from_name.strip(),
        imap_host=imap_host,
        imap_port=settings.imap_port,
        imap_security=security_for(settings.imap_security, settings.imap_port, 993),
        smtp_host=smtp_host,
        smtp_port=settings.smtp_port,
        smtp_security=security_for(settings.smtp_security, settings.smtp_port, 465),
        timeout=settings.email_timeout,
        save_drafts=settings.email_save_drafts,
        ca_file=str(settings.email_ca_file) if settings.email_ca_file else None,
        _password=password,
    )


def scrub(text: str, acct: Account) -> str:
    """`text` with the password removed, whatever a server or library put in it."""
    secret = acct._password
    for form in {secret, secret.replace(" ", "")}:
        if len(form) >= 3:
            text = text.replace(form, "[password]")
    return text


def tls_context(acct: Account) -> ssl.SSLContext:
    """The system's trusted certificates, plus EMAIL_CA_FILE (e.g. a local mail bridge's)."""
    ctx = ssl.create_default_context()
    if acct.ca_file:
        ctx.load_verify_locations(cafile=acct.ca_file)
    return ctx


def connect_error(kind: str, host: str, port: int, exc: BaseException, acct: Account) -> ToolError:
    """A failure to reach a server, in words that say what to check."""
    var = kind.upper()
    if isinstance(exc, ConnectionRefusedError):
        why = "the connection was refused (nothing is listening there, or a firewall blocks it)"
    elif isinstance(exc, socket.gaierror):
        why = "the host name could not be found"
    elif isinstance(exc, (socket.timeout, TimeoutError)):
        why = f"no answer within {acct.timeout:g} s (EMAIL_TIMEOUT)"
    elif isinstance(exc, ssl.SSLCertVerificationError):
        why = (f"its TLS certificate could not be verified ({exc.verify_message}); "
               "EMAIL_CA_FILE can add a certificate to trust")
    elif isinstance(exc, ssl.SSLError):
        why = (f"the TLS handshake failed; check {var}_SECURITY for port {port} "
               "(465 and 993 use ssl, 587 and 143 use starttls)")
    else:
        why = scrub(f"{type(exc).__name__}: {exc}", acct)
    return ToolError(f"Could not connect to the {var} server {host}:{port}: {why}. Check {var}_HOST and {var}_PORT.")


# IMAP ---------------------------------------------------------------------------------


@contextlib.contextmanager
def imap_session(acct: Account) -> Iterator[imaplib.IMAP4]:
    """A logged-in IMAP connection, logged out at the end. Failures are ToolErrors."""
    try:
        if acct.imap_security == "ssl":
            conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                acct.imap_host, acct.imap_port, ssl_context=tls_context(acct), timeout=acct.timeout
            )
        else:
            conn = imaplib.IMAP4(acct.imap_host, acct.imap_port, timeout=acct.timeout)
            if acct.imap_security == "starttls":
                conn.starttls(ssl_context=tls_context(acct))
    except (OSError, imaplib.IMAP4.error) as exc:
        raise connect_error("imap", acct.imap_host, acct.imap_port, exc, acct) from None
    _guard_commands(conn)
    try:
        try:
            if acct._password.isascii():
                conn.login(acct.username, acct._password)
            else:  # LOGIN takes ASCII only; AUTHENTICATE PLAIN carries UTF-8
                blob = f"\0{acct.username}\0{acct._password}".encode()
                conn.authenticate("PLAIN", lambda _: blob)
        except imaplib.IMAP4.error as exc:
            raise ToolError(
                f"The IMAP server refused the login for {acct.username}: {scrub(_imap_text(exc), acct)}."
                + acct.hint()
            ) from None
        except OSError as exc:
            raise connect_error("imap", acct.imap_host, acct.imap_port, exc, acct) from None
        yield conn
    except (socket.timeout, TimeoutError):
        raise ToolError(f"The IMAP server stopped answering (no reply within {acct.timeout:g} s).") from None
    except (imaplib.IMAP4.abort, OSError) as exc:
        raise ToolError(f"The IMAP server closed the connection: {scrub(_imap_text(exc), acct)}.") from None
    except imaplib.IMAP4.error as exc:  # a BAD reply: the server did not understand a command
        raise ToolError(f"The IMAP server refused a command: {scrub(_imap_text(exc), acct)}.") from None
    finally:
        with contextlib.suppress(Exception):
            conn.logout()


def _imap_text(exc: BaseException) -> str:
    """imaplib's error text without its Python dressing (b'...', [b'...'])."""
    text = re.sub(r"^\w+ command error: (BAD|NO) ", "", str(exc))
    m = re.fullmatch(r"\[?b(['\"])(.*)\1\]?", text)
    return (m.group(2) if m else text).rstrip(".")


def imap_ok(result: tuple[str, list], what: str) -> list:
    """The data of an IMAP reply, or a ToolError that quotes the server."""
    typ, data = result
    if typ != "OK":
        detail = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
        raise ToolError(f"The IMAP server could not {what}: {detail or typ}.")
    return data


# Folder names on the wire are "modified UTF-7" (RFC 3501 5.1.3): Gmail's German
# Drafts folder is "[Gmail]/Entw&APw-rfe".


def decode_folder(name: str) -> str:
    def sub(m: re.Match[str]) -> str:
        inner = m.group(1)
        if not inner:
            return "&"
        b64 = inner.replace(",", "/")
        b64 += "=" * (-len(b64) % 4)
        return base64.b64decode(b64).decode("utf-16-be", "replace")

    return re.sub(r"&([A-Za-z0-9+,]*)-", sub, name)


def encode_folder(name: str) -> str:
    out, run = [], []

    def flush() -> None:
        if run:
            b64 = base64.b64encode("".join(run).encode("utf-16-be")).decode().rstrip("=").replace("/", ",")
            out.append(f"&{b64}-")
            run.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


# A protocol command is one line: a CR or LF in an argument ends it early and whatever
# follows is read as the next command ("contract\r\nZ1 DELETE Legal" deleted a folder).
# NUL is refused too (RFC 3501 forbids it anywhere outside binary literals).
_LINE_BREAKERS = re.compile(r"[\r\n\x00]")
_INLINE_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n", re.S)


def wire_safe(text: str, what: str) -> str:
    """`text` if it can go into a mail server command line; ToolError otherwise."""
    if _LINE_BREAKERS.search(text):
        shown = repr(text if len(text) <= 80 else text[:80] + "…")
        raise ToolError(f"{what} {shown} contains a line break or NUL character, which cannot go into a mail "
                        "server command; nothing was sent to the server. Use spaces instead.")
    return text


def quote(text: str, what: str = "The text") -> str:
    """An IMAP quoted string (ASCII only; see mail_read for non-ASCII search terms).
    Refuses CR, LF and NUL: a quoted string cannot carry them (RFC 3501 9, QUOTED-CHAR)."""
    wire_safe(text, what)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _guard_commands(conn: imaplib.IMAP4) -> None:
    """Refuse, on this connection, any command argument holding CR, LF or NUL, whoever
    built it: the last line of defence behind `quote`, so no future call site can slip
    a second command in. A literal (`{n}` or `{n+}` then CRLF then exactly n bytes) is
    length-counted, so its content may hold anything."""
    command = conn._command  # type: ignore[attr-defined]

    def checked(name: str, *args: Any) -> Any:
        for arg in args:
            if arg is None:
                continue
            raw = arg.encode("utf-8", "replace") if isinstance(arg, str) else bytes(arg)
            m = _INLINE_LITERAL.match(raw)
            if m and len(raw) - m.end() == int(m.group(1)):
                continue
            if b"\r" in raw or b"\n" in raw or b"\0" in raw:
                conn.literal = None  # type: ignore[attr-defined]
                raise ToolError(f"Refused to send an IMAP {name} command with a line break or NUL character in "
                                "an argument; nothing was sent to the server.")
        return command(name, *args)

    conn._command = checked  # type: ignore[attr-defined]


@dataclass
class Folder:
    name: str  # decoded, as the owner reads it
    flags: set[str]

    @property
    def wire(self) -> str:
        return quote(encode_folder(self.name))


_LIST_RE = re.compile(rb'\((?P<flags>[^)]*)\) (?P<delim>"[^"]*"|NIL) (?P<name>.*)$')


def list_folders(conn: imaplib.IMAP4) -> list[Folder]:
    folders = []
    for item in imap_ok(conn.list(), "list the folders"):
        if isinstance(item, tuple):  # a name sent as a literal
            head, name_b = item[0], item[1]
            m = _LIST_RE.match(head.rsplit(b" {", 1)[0] + b" x")
            raw_name = name_b
        elif isinstance(item, bytes):
            m = _LIST_RE.match(item)
            raw_name = m.group("name") if m else b""
        else:
            continue
        if not m:
            continue
        name = raw_name.decode("utf-8", "replace")
        if name.startswith('"') and name.endswith('"'):
            name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        flags = {f.lower() for f in m.group("flags").decode("ascii", "replace").split()}
        folders.append(Folder(decode_folder(name), flags))
    return folders


def special_folder(conn: imaplib.IMAP4, use: str, fallbacks: tuple[str, ...]) -> Folder | None:
    """The folder marked with a special use (`\\Drafts`, `\\All`, ...), else one by name."""
    folders = list_folders(conn)
    for f in folders:
        if use.lower() in f.flags and "\\noselect" not in f.flags:
            return f
    by_name = {f.name.lower(): f for f in folders}
    for name in fallbacks:
        if name.lower() in by_name:
            return by_name[name.lower()]
    return None


def select(conn: imaplib.IMAP4, folder: str, *, readonly: bool = True) -> None:
    # Encoded, a line break would pass the wire as &AAoA-, but the server decodes it and
    # echoes it raw in its answer ("Mailbox doesn't exist: Legal<LF>..."): refused before.
    wire_safe(folder, "The folder name")
    typ, data = conn.select(quote(encode_folder(folder)), readonly=readonly)
    if typ != "OK":
        raise ToolError(f"There is no mail folder called {folder!r}; mail_folders lists them.")


# SMTP ---------------------------------------------------------------------------------


def smtp_connect(acct: Account) -> smtplib.SMTP:
    """A logged-in SMTP connection. Everything here happens before a message is handed
    over, so every failure is a plain ToolError: nothing was sent."""
    try:
        if acct.smtp_security == "ssl":
            conn: smtplib.SMTP = smtplib.SMTP_SSL(
                acct.smtp_host, acct.smtp_port, timeout=acct.timeout, context=tls_context(acct),
                local_hostname="localhost",
            )
        else:
            conn = smtplib.SMTP(acct.smtp_host, acct.smtp_port, timeout=acct.timeout, local_hostname="localhost")
        conn.ehlo()
        if acct.smtp_security == "starttls":
            conn.starttls(context=tls_context(acct))
            conn.ehlo()
    except (OSError, smtplib.SMTPException) as exc:
        raise connect_error("smtp", acct.smtp_host, acct.smtp_port, exc, acct) from None
    try:
        conn.login(acct.username, acct._password)
    except smtplib.SMTPAuthenticationError as exc:
        smtp_close(conn)
        raise ToolError(
            f"The SMTP server refused the login for {acct.username}: {smtp_text(exc, acct)}. "
            "Nothing was sent." + acct.hint()
        ) from None
    except smtplib.SMTPNotSupportedError:
        smtp_close(conn)
        raise ToolError(
            f"The SMTP server {acct.smtp_host}:{acct.smtp_port} does not offer a login on this connection "
            "(it may need SMTP_SECURITY=starttls). Nothing was sent."
        ) from None
    except (OSError, smtplib.SMTPException) as exc:
        smtp_close(conn)
        raise ToolError(f"Logging in to the SMTP server failed: {smtp_text(exc, acct)}. Nothing was sent.") from None
    return conn


def smtp_text(exc: BaseException, acct: Account) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        msg = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        text = f"{exc.smtp_code} {' '.join(msg.split())}"
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return scrub(text, acct)


def smtp_close(conn: smtplib.SMTP) -> None:
    with contextlib.suppress(Exception):
        conn.quit()
    with contextlib.suppress(Exception):
        conn.close()


# The login check for `dispatch doctor` -------------------------------------------------


def check_mail_login(settings: "Settings") -> list[tuple[str, bool, str]]:
    """Whether IMAP and SMTP logins work: [(name, ok, message)], never the password.

    Mail is optional, so an account that is not set up is one line with ok=True
    that says so; a half-set-up account is ok=False with what is missing.
    """
    if not (settings.email_address or "").strip():
        return [("Email", True, "not set up (optional): set EMAIL_ADDRESS and EMAIL_PASSWORD to use mail")]
    try:
        acct = account(settings)
    except ToolError as exc:
        return [("Email", False, str(exc))]
    out: list[tuple[str, bool, str]] = []
    where = f"{acct.imap_host}:{acct.imap_port} ({acct.imap_security})"
    try:
        with imap_session(acct) as conn:
            n = len(list_folders(conn))
        out.append(("IMAP login", True, f"{where}: logged in as {acct.username}; {n} folders"))
    except ToolError as exc:
        out.append(("IMAP login", False, f"{where}: {scrub(str(exc), acct)}"))
    where = f"{acct.smtp_host}:{acct.smtp_port} ({acct.smtp_security})"
    try:
        conn_s = smtp_connect(acct)
        smtp_close(conn_s)
        out.append(("SMTP login", True, f"{where}: logged in as {acct.username}"))
    except ToolError as exc:
        out.append(("SMTP login", False, f"{where}: {scrub(str(exc), acct).replace(' Nothing was sent.', '')}"))
    return out
