"""Defect 3: a read tool must not change remote state. Every place that builds a
protocol command from model input refuses CR, LF and NUL (or sends the text as a
length-counted literal), tested against the real Dovecot the email tests use, the
real aiosmtpd SMTP server, and the loopback Slack fake."""

from __future__ import annotations

import imaplib
from typing import Any

import pytest

from store.db import Store
from tests.helpers import call, refused
from tests.mail_samples import acme_proposal, german_mail
from tests.mail_servers import (  # noqa: F401 - fixtures
    QUIET, dovecot, full_settings, login, mail_settings, send_settings, smtp,
)
from tools.mailbox.account import _guard_commands, account, imap_session
from tools.registry import ToolContext, ToolError

pytestmark = QUIET

# The exact attack, and its tail: once Legal is gone, flag and expunge INBOX.
ATTACK = ('contract\r\nZ1 DELETE Legal\r\nZ2 SELECT INBOX\r\nZ3 STORE 1:* +FLAGS (\\Deleted)\r\n'
          'Z4 EXPUNGE\r\nZ5 SEARCH TEXT "x"')


@pytest.fixture
def ctx(full_settings: Any) -> Any:
    store = Store(full_settings.db_url)
    yield ToolContext(full_settings, store, task_id=1, origin="console:local")
    store.close()


@pytest.fixture
def mailbox(dovecot: Any, login: str) -> Any:
    inbox = [dovecot.append(login, acme_proposal()), dovecot.append(login, german_mail())]
    conn = dovecot.imap(login)
    try:
        assert conn.create('"Legal"')[0] == "OK"
    finally:
        conn.logout()
    legal = [dovecot.append(login, acme_proposal(), folder="Legal")]

    def intact() -> None:
        assert [u for u, _, _ in dovecot.messages(login, "INBOX")] == inbox
        assert [u for u, _, _ in dovecot.messages(login, "Legal")] == legal
        for _, flags, _ in dovecot.messages(login, "INBOX"):
            assert b"\\Deleted" not in flags

    return intact


async def test_the_exact_attack_query_leaves_inbox_and_legal_intact(ctx, mailbox):
    message = await refused(ctx, "search_mail", query=ATTACK)
    assert "line break" in message and "nothing was sent to the server" in message
    mailbox()


@pytest.mark.parametrize("field", ["query", "sender", "recipient", "subject"])
@pytest.mark.parametrize("breaker", ["\r\n", "\n", "\r", "\x00"])
async def test_every_search_filter_refuses_line_breaks_and_nul(ctx, mailbox, field, breaker):
    evil = f"acme{breaker}Z1 DELETE Legal{breaker}"
    assert "line break or NUL" in await refused(ctx, "search_mail", **{field: evil})
    mailbox()


async def test_non_ascii_terms_go_as_literals_so_a_line_break_in_them_is_just_text(ctx, mailbox):
    # A non-ASCII term is sent as a length-counted literal: CR/LF inside it is data
    # the server searches for, never a new command.
    found = await call(ctx, "search_mail", subject="München\r\nZ1 DELETE Legal\r\n")
    assert "No mail in INBOX matches" in found or "match" in found
    mailbox()


async def test_folder_and_mail_ids_cannot_carry_a_command(ctx, mailbox):
    for folder in ("INBOX\r\nZ1 DELETE Legal", "Legal\nZ1 DELETE Legal", "INBOX\x00"):
        assert "line break or NUL" in await refused(ctx, "search_mail", folder=folder)
        assert "line break or NUL" in await refused(ctx, "read_mail", id=f"{folder}:1")
        assert "line break or NUL" in await refused(ctx, "save_mail_attachments", id=f"{folder}:1")
    assert "not a mail id" in await refused(ctx, "read_mail", id="INBOX:1\r\nZ1 DELETE Legal")
    mailbox()


async def test_the_connection_itself_refuses_any_argument_with_a_line_break(ctx, mailbox):
    """Behind `quote`: whatever a future call site builds, the wire never carries it."""
    acct = account(ctx.settings)
    with imap_session(acct) as conn:
        conn.select('"INBOX"', readonly=True)
        for args in (("TEXT", '"a\r\nZ1 DELETE Legal"'), ("X-GM-RAW", '"a\nZ1 DELETE Legal"'),
                     ("HEADER", "Message-ID", '"<x@y>\x00"')):
            with pytest.raises(ToolError, match="line break or NUL"):
                conn.uid("SEARCH", *args)
        # a proper literal passes: its length says where it ends
        data = "Zoë\r\nZ1 DELETE Legal".encode()
        typ, _ = conn.uid("SEARCH", "CHARSET", "UTF-8", "TEXT", b"{%d+}\r\n" % len(data) + data)
        assert typ == "OK"
        # and a forged length does not
        with pytest.raises(ToolError):
            conn.uid("SEARCH", "TEXT", b"{3+}\r\nabc\r\nZ1 DELETE Legal")
    mailbox()


def test_guard_wraps_any_imaplib_connection():
    class Dummy:
        literal = None

        def _command(self, name: str, *args: Any) -> str:
            return "tag"

    d = Dummy()
    _guard_commands(d)  # type: ignore[arg-type]
    assert d._command("SEARCH", "ALL") == "tag"
    with pytest.raises(ToolError):
        d._command("SELECT", "INBOX\r\nA DELETE x")


# SMTP: addresses and headers --------------------------------------------------------


@pytest.fixture
def send_ctx(send_settings: Any) -> Any:
    store = Store(send_settings.db_url)
    yield ToolContext(send_settings, store, task_id=1, origin="console:local")
    store.close()


async def test_smtp_addresses_and_headers_refuse_line_breaks_before_anything_is_sent(send_ctx, smtp):
    from tools.catalogue import default_registry

    tool = default_registry().get("send_email")
    attacks = [
        {"to": ["bob@example.com\r\nRCPT TO:<evil@evil.example>"], "subject": "Hi", "body": "x"},
        {"to": ["bob@example.com"], "cc": ["carol@example.com\nBcc: evil@evil.example"], "subject": "Hi",
         "body": "x"},
        {"to": ["Bob\x00 <bob@example.com>"], "subject": "Hi", "body": "x"},
    ]
    for args in attacks:
        with pytest.raises(ToolError):
            await tool.prepared(send_ctx, args)
    # A subject's line breaks are folded into spaces at draft time (it is prose, not syntax).
    ok = await tool.prepared(send_ctx, {"to": ["bob@example.com"], "subject": "Hi\r\nBcc: evil@evil.example",
                                        "body": "x"})
    assert ok["subject"] == "Hi Bcc: evil@evil.example"
    # Stored arguments altered after the draft (a subject carrying a header) are refused
    # by the send itself, before the SMTP conversation starts: nothing reaches the server.
    forged = {**ok, "subject": "Hi\r\nBcc: evil@evil.example"}
    with pytest.raises(ToolError, match="line break or NUL"):
        await tool.call(send_ctx, forged)
    assert smtp.received == []


# Slack: parameters are form fields, encoded by the SDK: text with CR/LF, & and = is one value
# -----------------------------------------------------------------------------------------


async def test_slack_parameters_cannot_smuggle_a_second_parameter(tmp_path, sl_fake):
    from tests.conftest import make_settings, slack_values
    from tests.fakes.slack_api import GENERAL

    values = {**slack_values(sl_fake), "SLACK_USER_TOKEN": sl_fake.user_token}
    settings = make_settings(tmp_path, "http://127.0.0.1:1", None, **values)
    store = Store(settings.db_url)
    try:
        c = ToolContext(settings, store)
        evil = "budget\r\n&channel=C0EVIL&query=x\r\nPOST /api/chat.postMessage"
        await call(c, "slack_search", query=evil)
        (searched,) = sl_fake.calls_to("search.messages")
        assert searched.params["query"] == evil  # exactly one value, as typed
        assert "channel" not in searched.params
        # a thread ts is checked for its shape before it reaches Slack at all
        assert "is not a message ts" in await refused(c, "slack_read", channel=GENERAL,
                                                      thread_ts="1714567890.1\r\n&channel=C0EVIL")
        assert sl_fake.calls_to("chat.postMessage") == []
    finally:
        store.close()


def test_no_command_line_is_built_for_a_shell():
    """The one external program a tool runs (xdotool, to type text) gets an argument
    list after `--`, never a shell line: no code in agent/ or tools/ hands a string to
    a shell, so no model input can become a shell command."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    shell = re.compile(r"shell\s*=\s*True|os\.system\(|os\.popen\(|create_subprocess_shell\(|commands\.getoutput")
    offenders = [f"{p.relative_to(repo)}:{n}" for folder in ("agent", "tools") for p in (repo / folder).rglob("*.py")
                 for n, line in enumerate(p.read_text().splitlines(), 1) if shell.search(line)]
    assert offenders == []
    typed = (repo / "tools" / "computer.py").read_text()
    assert '["xdotool", "type", "--delay", "10", "--", chunk]' in typed
