"""The email connector's parts: Gmail search text, IMAP search arguments, folder
names, addresses, the card, the settings check, and SMTP over TLS (SSL and
STARTTLS) against aiosmtpd with a certificate made here."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import pytest

from store.config import Settings
from tests.mail_servers import PASSWORD, QUIET, SmtpServer, login, mail_settings  # noqa: F401 - fixtures
from tools import mail_read
from tools.mailbox.account import account, check_mail_login, decode_folder, encode_folder, list_folders, special_folder
from tools.mailbox.compose import parse_recipients, preview, show_recipient
from tools.mail_send import transmit
from tools.mailbox.text import html_to_text, safe_filename
from tools.registry import ToolError, ToolOutcomeUnknown

pytestmark = QUIET


# Search -------------------------------------------------------------------------------------


def test_gmail_search_text() -> None:
    q = mail_read.gmail_query(query="has:attachment invoice", sender="Acme Corp", subject="Q3 (final)",
                              since=dt.date(2024, 5, 1), before=dt.date(2024, 6, 1), unread_only=True)
    assert q == ('has:attachment invoice from:"Acme Corp" subject:"Q3 (final)" '
                 "after:2024/05/01 before:2024/06/01 is:unread")
    assert mail_read.gmail_query(sender='bob"@x.com') == 'from:"bob @x.com"'  # no way to break out of the term
    assert mail_read.gmail_query() == ""


class StubConn:
    """Only what search_args and the folder helpers touch."""

    def __init__(self, listing: list[Any] | None = None) -> None:
        self.literal: bytes | None = None
        self.listing = listing or []

    def list(self) -> tuple[str, list[Any]]:
        return "OK", self.listing


def test_search_arguments_for_gmail_and_for_plain_imap() -> None:
    gmail = {"IMAP4REV1", "X-GM-EXT-1", "LITERAL-"}
    raw = mail_read.gmail_query(sender="Jürgen")
    assert mail_read.search_args([("X-GM-RAW", raw)], gmail) == [
        "CHARSET", "UTF-8", "X-GM-RAW", b"{12+}\r\n" + "from:Jürgen".encode()]
    assert mail_read.search_args([("X-GM-RAW", "from:acme")], gmail) == ["X-GM-RAW", '"from:acme"']
    keys = mail_read.imap_keys(query='say "hi"', since=dt.date(2024, 5, 3), unread_only=True)
    assert mail_read.search_args(keys, {"IMAP4REV1"}) == ["TEXT", '"say \\"hi\\""', "SINCE 3-May-2024", "UNSEEN"]
    assert mail_read.imap_keys() == [("ALL", None)]
    # Without LITERAL+ the one non-ASCII term becomes imaplib's trailing literal.
    conn = StubConn()
    args = mail_read.search_args(mail_read.imap_keys(sender="Müller", subject="plan"), {"IMAP4REV1"}, conn)  # type: ignore[arg-type]
    assert args == ["CHARSET", "UTF-8", "SUBJECT", '"plan"', "FROM"] and conn.literal == "Müller".encode()
    with pytest.raises(ToolError, match="one non-ASCII search term at a time"):
        mail_read.search_args(mail_read.imap_keys(sender="Müller", subject="Grüße"), {"IMAP4REV1"})


def test_gmail_folders_from_a_gmail_style_listing() -> None:
    conn = StubConn([
        b'(\\HasNoChildren) "/" "INBOX"',
        b'(\\HasChildren \\Noselect) "/" "[Gmail]"',
        b'(\\All \\HasNoChildren) "/" "[Gmail]/All Mail"',
        b'(\\Drafts \\HasNoChildren) "/" "[Gmail]/Entw&APw-rfe"',
        (b'(\\HasNoChildren) "/" {14}', b'Work "quoted"!'),
    ])
    names = [f.name for f in list_folders(conn)]  # type: ignore[arg-type]
    assert names == ["INBOX", "[Gmail]", "[Gmail]/All Mail", "[Gmail]/Entwürfe", 'Work "quoted"!']
    assert special_folder(conn, "\\drafts", ("Drafts",)).name == "[Gmail]/Entwürfe"  # type: ignore[arg-type, union-attr]
    assert mail_read.default_folder(conn, gmail=True) == "[Gmail]/All Mail"  # type: ignore[arg-type]
    assert mail_read.default_folder(conn, gmail=False) == "INBOX"  # type: ignore[arg-type]
    for name in ("[Gmail]/Entwürfe", "A&B", "日本語/Notes"):
        assert decode_folder(encode_folder(name)) == name
    assert encode_folder("[Gmail]/Entwürfe") == "[Gmail]/Entw&APw-rfe"


# Text ---------------------------------------------------------------------------------------


def test_html_and_file_names() -> None:
    assert html_to_text("<div>a<br>b</div><p>c &lt;d&gt;</p><img alt='logo'><a href='https://x.example'>"
                        "https://x.example</a>") == "a\nb\n\nc <d>\n[logo]https://x.example"
    assert html_to_text("<p>Code:</p><pre>  keep\n   spaces</pre>") == "Code:\n\n  keep\n   spaces"
    assert safe_filename("../../etc/passwd", "text/plain", 1) == "passwd"
    assert safe_filename("C:\\Users\\x\\bad:name?.pdf", "application/pdf", 1) == "bad_name_.pdf"
    assert safe_filename("", "image/png", 3) == "attachment-3.png"
    assert safe_filename("", "message/rfc822", 2) == "attachment-2.eml"


# Addresses and the card -----------------------------------------------------------------------


def test_recipients_are_checked_and_shown_address_first() -> None:
    assert parse_recipients(["Bob Stone <bob@example.com>, ann@example.com"], "To") == [
        "Bob Stone <bob@example.com>", "ann@example.com"]
    assert parse_recipients(['"Doe, Jane" <jane@example.com>'], "To") == ['"Doe, Jane" <jane@example.com>']
    for bad in ("bob", "bob@", "@example.com", "a b@example.com", "bob@exa mple.com", "x@y@z.com",
                "bob@example", "bob@example.com\nBcc: evil@x.com", "jörg@example.com"):
        with pytest.raises(ToolError):
            parse_recipients([bad], "To")
    assert show_recipient('"Bob (bob@acme.com)" <attacker@evil.example>') == "attacker@evil.example (Bob (bob@acme.com))"
    assert show_recipient("ann@bücher.example") == "ann@bücher.example [xn--bcher-kva.example]"
    long_name = "Accounts Payable " * 100  # a display name long enough to push the rest off a card
    shown = show_recipient(f'"{long_name}" <ap@evil.example>')
    assert shown.startswith("ap@evil.example (Accounts Payable") and shown.endswith("characters))")
    assert len(shown) < 110  # the address whole, the name clipped


def test_preview_shows_everything_the_owner_decides_on() -> None:
    card = preview({"sender": "Sam <sam@example.com>", "to": ["bob@example.com"], "cc": [], "bcc": [],
                    "subject": "Hi", "body": "é" * 1600, "in_reply_to": "<x@y>", "quoted": "> old",
                    "files": [{"name": "a.pdf", "size": 3 * 1024 * 1024}],
                    "drafts_copy": {"error": "no Drafts folder was found"}})
    assert card.splitlines()[:7] == ["Email (reply)", "From: sam@example.com (Sam)", "To: bob@example.com",
                                      "Cc: —", "Bcc: —", "Subject: Hi", ""]
    assert "é" * 1600 + "\n\n> old" in card  # the whole text, quoted part included (the card may shorten it)
    assert "Attachments: a.pdf (3.0 MB)" in card and "(No copy in your Drafts folder: no Drafts folder was found)" in card


# Settings -------------------------------------------------------------------------------------


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, ANTHROPIC_API_KEY="k", **values)  # type: ignore[call-arg]


def test_mail_settings_problems() -> None:
    assert settings().problems() == []  # mail is optional
    assert settings(EMAIL_ADDRESS="sam@gmail.com", EMAIL_PASSWORD="abcd efgh ijkl mnop").problems() == []
    ok = account(settings(EMAIL_ADDRESS="sam@gmail.com", EMAIL_PASSWORD="abcd efgh ijkl mnop"))
    assert (ok.imap_host, ok.imap_port, ok.imap_security) == ("imap.gmail.com", 993, "ssl")
    assert (ok.smtp_host, ok.smtp_port, ok.smtp_security) == ("smtp.gmail.com", 465, "ssl")
    assert ok._password == "abcdefghijklmnop" and "abcd" not in repr(ok)  # Google's grouping removed, never shown
    assert account(settings(EMAIL_ADDRESS="a@b.co", EMAIL_PASSWORD="p", SMTP_PORT=587)).smtp_security == "starttls"
    problems = settings(EMAIL_ADDRESS="sam@example.com").problems()
    assert any("EMAIL_PASSWORD is not" in p for p in problems)
    assert any("EMAIL_ADDRESS is not" in p for p in settings(EMAIL_PASSWORD="x").problems())
    bad = settings(EMAIL_ADDRESS="sam@example.com", EMAIL_PASSWORD="x", SMTP_SECURITY="tls", IMAP_SECURITY="none",
                   IMAP_HOST="mail.example.com", SMTP_PORT=587, EMAIL_CA_FILE="/nope.pem").problems()
    assert any("SMTP_SECURITY='tls'" in p for p in bad)
    assert any("unencrypted to mail.example.com" in p for p in bad)
    assert any("EMAIL_CA_FILE names /nope.pem" in p for p in bad)
    assert any("expects starttls" in p for p in settings(EMAIL_ADDRESS="a@b.co", EMAIL_PASSWORD="x",
                                                         SMTP_PORT=587, SMTP_SECURITY="ssl").problems())
    assert any("not an email address" in p for p in settings(EMAIL_ADDRESS="sam", EMAIL_PASSWORD="x").problems())


# SMTP over TLS ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the test's own CA)."""
    crypto = pytest.importorskip("cryptography")
    del crypto
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*map(str, certificate))
    return ctx


@pytest.mark.parametrize("mode", ["ssl", "starttls"])
def test_smtp_over_tls_sends_and_checks_the_certificate(mode, certificate, tmp_path, login):
    tls = {"ssl_context": server_context(certificate)} if mode == "ssl" else \
        {"tls_context": server_context(certificate), "require_starttls": True}
    server = SmtpServer(login, **tls).start()
    try:
        class Fake:  # mail_settings only reads .url from the model fake
            url = "http://127.0.0.1:9"

        base = dict(SMTP_SECURITY=mode, EMAIL_CA_FILE=str(certificate[0]))
        good = account(mail_settings(tmp_path, Fake, tmp_path, login, server.port, 1, **base))
        reply = transmit(good, good.address, ["bob@example.com"], b"Subject: x\r\n\r\nhi\r\n.\r\n", "x", "<m@x>")
        assert reply.startswith("250") and len(server.received) == 1
        assert check_mail_login(mail_settings(tmp_path, Fake, tmp_path, login, server.port, 1, **base))[1][1]
        # The same server without trusting its certificate: refused, clearly, before anything is sent.
        untrusted = account(mail_settings(tmp_path, Fake, tmp_path, login, server.port, 1, SMTP_SECURITY=mode))
        with pytest.raises(ToolError, match="certificate could not be verified") as info:
            transmit(untrusted, untrusted.address, ["bob@example.com"], b"x\r\n.\r\n", "x", "<m@x>")
        assert not isinstance(info.value, ToolOutcomeUnknown) and len(server.received) == 1
    finally:
        server.stop()


def test_ssl_against_a_plain_server_says_which_setting_to_check(tmp_path, login):
    server = SmtpServer(login).start()
    try:
        class Fake:
            url = "http://127.0.0.1:9"

        acct = account(mail_settings(tmp_path, Fake, tmp_path, login, server.port, 1, SMTP_SECURITY="ssl"))
        with pytest.raises(ToolError, match="TLS handshake failed; check SMTP_SECURITY"):
            transmit(acct, acct.address, ["bob@example.com"], b"x\r\n.\r\n", "x", "<m@x>")
        assert server.received == []
    finally:
        server.stop()


def test_settings_never_show_the_password(tmp_path, login):
    class Fake:
        url = "http://127.0.0.1:9"

    s = mail_settings(tmp_path, Fake, tmp_path, login, 1, 1)
    assert PASSWORD not in repr(s) and PASSWORD not in str(s.model_dump()) and PASSWORD not in repr(account(s))
