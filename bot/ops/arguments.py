"""The shape of the `dispatch` command line: every subcommand and its options.

Kept apart from what the commands do (bot.ops.cli, init, connect_google, mcp_cmd), so
that parsing `dispatch run` imports none of them: the set-up wizard, Google's sign-in
and the plugin manager load only for their own command. The longer --help texts are
bot.ops.helptext's.
"""

from __future__ import annotations

import argparse
import os

from bot.ops import helptext

INIT_DESCRIPTION = """Set Dispatch up, one question at a time:

  1. the Anthropic API key (typed hidden, tried with a one-token call)
  2. the folders the agent may read (Documents, Desktop, Downloads suggested)
  3. a chat app: a Telegram bot token (tried with getMe) or Slack tokens (auth.test)
  4. mail, optionally (the IMAP and SMTP logins tried)
  5. pairing your phone: a one-time code to send to the bot

Answers go into .env in this folder (merged with what is there, readable only by
you; secrets are never printed), then `dispatch doctor` checks everything. Each
answer can be given as an option instead; with --yes nothing is asked."""


INIT_EPILOG = """examples:
  dispatch init                                  # asks, step by step
  dispatch init --yes --api-key sk-ant-... --roots ~/Documents:~/Work \\
      --telegram-token 123456:AA... --no-pair    # a script: nothing is asked"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dispatch", description="Hand tasks to an AI agent on this desktop.")
    sub = p.add_subparsers(dest="command")
    _init_arguments(sub.add_parser("init", help="set Dispatch up step by step: API key, folders, chat app, mail, "
                                   "pairing", description=INIT_DESCRIPTION, epilog=INIT_EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter))
    run = sub.add_parser("run", help="start Dispatch (every configured front end)")
    run.add_argument("--force-terminal", action="store_true", help=argparse.SUPPRESS)
    sub.add_parser("chat", help="talk to your thread in this terminal")
    sub.add_parser("pair", help="print a one-time code that makes your Telegram or Slack account the owner")
    sub.add_parser("pending", help="drafts waiting for your approval, each card in full",
                   description="Every draft waiting for your approval, with everything it will send.")
    sh = sub.add_parser("show", help="the whole card and full text of draft N",
                        description="Print draft N's card: recipients, subject, attachments, the full text, state.")
    sh.add_argument("n", type=int, help="the draft's number (from `dispatch pending`)")
    a = sub.add_parser("approve", help="send draft N", description="Approve draft N: it is sent exactly once, "
                       "by the running Dispatch if there is one, else from here.")
    a.add_argument("n", type=int, help="the draft's number")
    r = sub.add_parser("reject", help="don't send draft N; a reason makes Dispatch revise it",
                       description="Reject draft N: nothing is sent. With a reason, the agent makes a revised draft.")
    r.add_argument("n", type=int, help="the draft's number")
    r.add_argument("reason", nargs="*", help="what to change (optional)")
    e = sub.add_parser("edit", help="replace draft N's text (a new revision to approve)",
                       description="Replace draft N's text; you get a new draft (a new card) to approve.")
    e.add_argument("n", type=int, help="the draft's number")
    e.add_argument("text", nargs="+", help="the new text (replaces the whole text)")
    ask = sub.add_parser("ask", help="hand one task to Dispatch and print the answer",
                         description="Submit TEXT (or standard input) to your thread and print the answer and any "
                         "draft cards. Exit 0 when the task is done, 1 when it failed. Works with Dispatch running "
                         "(it does the task) or not (this command runs it).")
    ask.add_argument("text", nargs="*", help="the request (or pipe it in)")
    ask.add_argument("--no-wait", action="store_true", help="only queue it; print its task number")
    lg = sub.add_parser("log", help="recent actions: tools, files sent, sends, refusals")
    lg.add_argument("--limit", type=int, default=40, help="how many of the newest actions (40)")
    lg.add_argument("-v", "--verbose", action="store_true",
                    help="each action's details: where a draft goes, who decided, reasons, outcomes, arguments")
    sub.add_parser("usage", help="tokens and cost")
    pol = sub.add_parser("policy", help="show or set a policy: dispatch policy email ask")
    pol.add_argument("setting", nargs="*")
    svc = sub.add_parser("service", help="run Dispatch at login and restart it after a crash (systemd/launchd)")
    svc.add_argument("action", choices=["install", "uninstall", "status"])
    svc.add_argument("--print", action="store_true", help="show the unit/plist that install writes; change nothing")
    sub.add_parser("doctor", help="check settings, tokens, mail, display and keep-awake; say what to fix")
    _connect_arguments(sub.add_parser("connect", help="connect Google Drive: dispatch connect google [--write]"))
    _mcp_parser(sub)
    helptext.apply(sub)  # every subcommand's --help: what it does, and an example
    return p


def _init_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api-key", help="the Anthropic API key (console.anthropic.com -> API keys)")
    p.add_argument("--roots", help=f"the folders to share, separated by '{os.pathsep}' ('none' for none)")
    p.add_argument("--telegram-token", help="the bot token from @BotFather")
    p.add_argument("--slack-bot-token", help="Slack: the Bot User OAuth Token (xoxb-...)")
    p.add_argument("--slack-app-token", help="Slack: the app-level token for Socket Mode (xapp-...)")
    p.add_argument("--email", help="your mail address (the password comes from EMAIL_PASSWORD)")
    p.add_argument("--no-pair", action="store_true", help="don't wait for the phone to pair now")
    p.add_argument("--pair-timeout", type=float, default=600.0, help="seconds to wait for /pair (600)")
    p.add_argument("--yes", "-y", action="store_true", help="ask nothing: take the suggestion for what is not given")


def _connect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("service", choices=["google"], help="what to connect (Google Drive)")
    parser.add_argument("--write", action="store_true", help="also allow uploads (each one still needs your Approve)")
    parser.add_argument("--no-browser", action="store_true", help="print the sign-in address instead of opening it")
    parser.add_argument("--status", action="store_true", help="say whether Drive is connected and the token works")
    parser.add_argument("--disconnect", action="store_true", help="revoke the token at Google and forget it here")


def _mcp_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    m = sub.add_parser("mcp", help="plugins (MCP servers): list, add, remove, test")
    msub = m.add_subparsers(dest="mcp_command", required=True)
    msub.add_parser("list", help="the configured plugins")
    a = msub.add_parser("add", help="add a plugin: NAME URL, or NAME -- COMMAND [ARGS...]")
    a.add_argument("name")
    a.add_argument("target", nargs=argparse.REMAINDER, help="an http(s) URL, or -- then the command and its arguments")
    a.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="environment for a command")
    a.add_argument("--header", action="append", default=[], metavar="'Name: value'", help="HTTP header for a URL")
    a.add_argument("--replace", action="store_true", help="replace a plugin of the same name")
    r = msub.add_parser("remove", help="remove a plugin")
    r.add_argument("name")
    t = msub.add_parser("test", help="start a plugin, list its tools, stop it")
    t.add_argument("name")
