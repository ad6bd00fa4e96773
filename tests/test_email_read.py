"""Reading mail from a real Dovecot: search, read, attachments, folders, the login
check and what failures say. Every tool runs through `Tool.call`, as the runner runs it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from store.db import Store
from tests.mail_samples import PDF, XLSX, seed
from tests.mail_servers import (  # noqa: F401 - fixtures
    PASSWORD, QUIET, dovecot, free_port, full_settings, login, mail_settings, smtp,
)
from tools.mailbox.account import check_mail_login
from tests.helpers import call, refused
from tools.registry import ToolContext

pytestmark = QUIET


@pytest.fixture
def ctx(full_settings: Any) -> Any:
    store = Store(full_settings.db_url)
    yield ToolContext(full_settings, store, task_id=1, origin="console:local")
    store.close()


@pytest.fixture
def uids(dovecot: Any, login: str) -> dict[str, int]:
    return seed(dovecot, login)


async def test_search_uses_plain_imap_search_when_the_server_is_not_gmail(ctx, uids):
    found = await call(ctx, "search_mail", sender="acme")
    assert "(IMAP search)" in found  # Dovecot has no X-GM-EXT-1
    assert found.splitlines()[0] == "1 message in INBOX match (IMAP search), newest first:"
    assert f"[INBOX:{uids['acme']}] 2024-05-14 09:15 · Alice Acme <alice@acme.example> · Proposal for Q3" in found
    assert "has attachments" in found and "unread" in found
    everything = await call(ctx, "search_mail")
    ids = re.findall(r"\[INBOX:(\d+)\]", everything)
    assert [int(i) for i in ids] == sorted(uids.values(), reverse=True)  # newest first
    legacy = next(line for line in everything.splitlines() if f"INBOX:{uids['legacy']}]" in line)
    assert "Zoë <zoe@old.example> · Café menu" in legacy and "unread" not in legacy


async def test_search_filters_combine_and_non_ascii_terms_work(ctx, uids):
    assert f"INBOX:{uids['german']}]" in await call(ctx, "search_mail", subject="München")
    assert f"INBOX:{uids['german']}]" in await call(ctx, "search_mail", sender="Jürgen", query="Angebot")
    only = await call(ctx, "search_mail", since="2024-05-16", before="2024-05-17")
    assert re.findall(r"\[INBOX:(\d+)\]", only) == [str(uids["news"])]
    assert "No mail in INBOX matches" in await call(ctx, "search_mail", sender="nobody-at-all")
    assert "newest 2" in await call(ctx, "search_mail", limit=2)
    assert "must be a date like 2024-05-31" in await refused(ctx, "search_mail", since="last week")
    assert "no mail folder called 'Nope'" in await refused(ctx, "search_mail", folder="Nope")


async def test_read_mail_decodes_headers_and_lists_attachments(ctx, uids, dovecot, login):
    text = await call(ctx, "read_mail", id=f"INBOX:{uids['german']}")
    assert "not by the owner" in text.splitlines()[0]
    assert "From: Jürgen Müller <juergen@beispiel.example>" in text
    assert "Subject: Grüße aus München – Angebot für März" in text
    assert "Date: 2024-05-15 11:00" in text  # in the owner's time zone (Berlin)
    assert "Schöne Grüße!" in text and "<p>" not in text  # the plain part wins over HTML
    assert f"1. Bericht März.xlsx (application/vnd.openxmlformats-officedocument.spreadsheetml.sheet, {len(XLSX)} B)" in text
    # Reading does not mark the mail read.
    (msg,) = [m for m in dovecot.messages(login, "INBOX") if m[0] == uids["german"]]
    assert b"\\Seen" not in msg[1]


async def test_an_html_only_mail_comes_out_as_clean_text(ctx, uids):
    text = await call(ctx, "read_mail", id=f"INBOX:{uids['news']}")
    body = text.split("--- text (from the HTML version) ---\n")[1]
    assert body == (
        "Spring News & Updates\n\n"
        "Read the full story (https://news.example/spring) online.\n\n"
        "- First item\n- Second item\n\n"
        "Price  42 €"
    )


async def test_legacy_8bit_headers_and_a_wrong_charset_read_cleanly(ctx, uids):
    text = await call(ctx, "read_mail", id=f"INBOX:{uids['legacy']}")
    assert "From: Zoë <zoe@old.example>" in text and "Subject: Café menu" in text
    assert "Crème brûlée today." in text


async def test_save_attachments_into_the_workspace(ctx, uids, full_settings):
    saved = await call(ctx, "save_mail_attachments", id=f"INBOX:{uids['german']}")
    path = Path(saved.splitlines()[1].rsplit(" (", 1)[0])
    assert path.name == "Bericht März.xlsx" and path.read_bytes() == XLSX
    assert path.is_relative_to(full_settings.workspace)
    again = await call(ctx, "save_mail_attachments", id=f"INBOX:{uids['german']}", names=["1"])
    assert again == saved  # the same file is reused, not duplicated
    pdf = await call(ctx, "save_mail_attachments", id=f"INBOX:{uids['acme']}", names=["terms.pdf"])
    assert Path(pdf.splitlines()[1].rsplit(" (", 1)[0]).read_bytes() == PDF
    assert "has no attachment 'x.doc'; it has: 1. terms.pdf" in await refused(
        ctx, "save_mail_attachments", id=f"INBOX:{uids['acme']}", names=["x.doc"])
    assert "has no attachments" in await refused(ctx, "save_mail_attachments", id=f"INBOX:{uids['news']}")


async def test_folders_and_bad_ids(ctx, uids):
    folders = await call(ctx, "mail_folders")
    assert folders.splitlines()[1:] == ["INBOX", "Archive  (Archive)", "Drafts  (Drafts)", "Sent  (Sent)"]
    assert "is not a mail id" in await refused(ctx, "read_mail", id="42")
    assert "There is no message INBOX:999" in await refused(ctx, "read_mail", id="INBOX:999")


async def test_imap_failures_are_clear_and_never_show_the_password(tmp_path, fake, roots, login, dovecot, smtp):
    wrong = mail_settings(tmp_path, fake, roots, login, smtp.port, dovecot.port, EMAIL_PASSWORD="wrong-pass-7731")
    with _Open(wrong) as ctx:
        message = await refused(ctx, "search_mail", query="x")
        assert "The IMAP server refused the login for " + login in message and "wrong-pass-7731" not in message
    closed = mail_settings(tmp_path, fake, roots, login, smtp.port, free_port())
    with _Open(closed) as ctx:
        message = await refused(ctx, "read_mail", id="INBOX:1")
        assert f"Could not connect to the IMAP server 127.0.0.1:{closed.imap_port}: the connection was refused" in message


class _Open:
    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def __enter__(self) -> ToolContext:
        self.store = Store(self.settings.db_url)
        return ToolContext(self.settings, self.store)

    def __exit__(self, *exc: Any) -> None:
        self.store.close()


def test_check_mail_login_reports_both_servers(full_settings, tmp_path, fake, roots, login, dovecot, smtp):
    ok = check_mail_login(full_settings)
    assert [(name, good) for name, good, _ in ok] == [("IMAP login", True), ("SMTP login", True)]
    assert f"logged in as {login}" in ok[0][2] and "(none)" in ok[0][2]
    bad = check_mail_login(mail_settings(tmp_path, fake, roots, login, smtp.port, dovecot.port,
                                         EMAIL_PASSWORD="wrong-pass-7731"))
    assert [good for _, good, _ in bad] == [False, False]
    assert "refused the login" in bad[0][2] and "refused the login" in bad[1][2]
    assert all("wrong-pass-7731" not in m and PASSWORD not in m for _, _, m in bad + ok)
    unset = check_mail_login(mail_settings(tmp_path, fake, roots, login, smtp.port, dovecot.port, EMAIL_ADDRESS=""))
    assert unset == [("Email", True, "not set up (optional): set EMAIL_ADDRESS and EMAIL_PASSWORD to use mail")]
