"""Only tools that can work are offered: each connector's tools appear in the request
only when what they need is set up (a mail account, a Slack token, a user token for
search, a display for the computer), and a tool may narrow its module's readiness."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent import context
from tests.helpers import files_settings
from tools.catalogue import default_registry
from tools.desktop import screen
from tools.registry import Effect, Registry, tool

REG = default_registry()
ALWAYS = {"list_folder", "find_files", "read_text", "send_file", "make_spreadsheet", "make_document",
          "make_deck", "remember", "forget", "schedule_task", "list_schedules", "cancel_schedule"}
MAIL = {"mail_folders", "search_mail", "read_mail", "save_mail_attachments", "send_email", "reply_email", "forward_email"}
SLACK_WITH_BOT = {"slack_channels", "slack_read", "slack_post"}
DRIVE = {"drive_search", "drive_read", "drive_download", "drive_upload"}  # when connected: tests/test_drive.py


def offered(tmp_path: Path, policies: dict[str, str] | None = None, **values: Any) -> set[str]:
    settings = files_settings(tmp_path, **values)
    return {d["name"] for d in context.offered_tools(REG, policies or {}, settings)}


def test_every_shipped_tool_is_accounted_for():
    # A new tool must be placed in one of these groups, with its readiness thought about.
    assert {t.name for t in REG.all()} == ALWAYS | MAIL | SLACK_WITH_BOT | DRIVE | {"slack_search", "computer"}


def test_nothing_set_up_offers_only_what_needs_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(screen, "has_display", lambda: False)
    assert offered(tmp_path) == ALWAYS


def test_each_connector_appears_when_set_up(tmp_path, monkeypatch):
    monkeypatch.setattr(screen, "has_display", lambda: False)
    mail = {"EMAIL_ADDRESS": "sam@example.com", "EMAIL_PASSWORD": "app-password"}
    assert offered(tmp_path, **mail) == ALWAYS | MAIL
    bot = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"}
    # The bot reads and posts; only a user token may search, so without it search is not offered.
    assert offered(tmp_path, **bot) == ALWAYS | SLACK_WITH_BOT
    assert offered(tmp_path, **bot, SLACK_USER_TOKEN="xoxp-1") == ALWAYS | SLACK_WITH_BOT | {"slack_search"}
    # A user token without the bot token is not Slack set up (Settings.problems says so).
    assert offered(tmp_path, SLACK_USER_TOKEN="xoxp-1") == ALWAYS
    # Computer control: off by policy until the owner turns it on, and then only with a display.
    assert offered(tmp_path, {"computer": "auto"}) == ALWAYS
    monkeypatch.setattr(screen, "has_display", lambda: True)
    assert offered(tmp_path) == ALWAYS
    assert offered(tmp_path, {"computer": "auto"}) == ALWAYS | {"computer"}


def test_a_tool_narrows_its_modules_readiness_and_both_must_hold(tmp_path):
    import types

    @tool(connector="demo", effect=Effect.READ, ready=lambda s: s.owner_name == "Sam")
    def narrow(x: int) -> str:
        """A tool that needs its own setting.

        Args:
            x: A number.
        """
        return str(x)

    @tool(connector="demo", effect=Effect.READ)
    def broad(x: int) -> str:
        """A tool that needs only the module's setting.

        Args:
            x: A number.
        """
        return str(x)

    module = types.ModuleType("demo_tools")
    narrow.__module__ = broad.__module__ = "demo_tools"
    module.narrow, module.broad = narrow, broad  # type: ignore[attr-defined]
    module.ready = lambda s: s.daily_budget_usd is not None  # type: ignore[attr-defined]
    reg = Registry()
    reg.add_module(module)

    def names(**values: Any) -> set[str]:
        return {d["name"] for d in context.offered_tools(reg, {}, files_settings(tmp_path, **values))}

    assert names() == set()
    assert names(DISPATCH_DAILY_BUDGET_USD="5") == {"broad"}
    assert names(DISPATCH_OWNER_NAME="Sam") == set()
    assert names(DISPATCH_DAILY_BUDGET_USD="5", DISPATCH_OWNER_NAME="Sam") == {"broad", "narrow"}
