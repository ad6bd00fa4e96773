"""The `dispatch` command.

    dispatch                 same as `dispatch run`
    dispatch run             start every configured front end (Telegram, Slack; the terminal if there is one)
    dispatch chat            talk to your thread in this terminal (and Telegram, if configured)
    dispatch pair            a one-time code that makes your Telegram or Slack account the owner
    dispatch pending         drafts waiting for approval
    dispatch approve N       send draft N
    dispatch reject N [why]  don't send it (a reason queues a revision)
    dispatch edit N TEXT     replace the draft's text with a new revision
    dispatch log             recent actions
    dispatch usage           tokens and cost
    dispatch policy [K V]    show or set a policy
    dispatch service install | uninstall | status   run at login, restart after a crash
    dispatch doctor          check settings, tokens, mail, display, keep-awake; say what to fix
    dispatch mcp list | add | remove | test NAME   plugins (MCP servers)

Only `run`/`chat` need the model; the others work on the store alone, so they
answer even while the key is missing or the model is down.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from pydantic import ValidationError

from store.config import Settings

EXIT_CONFIG = 2


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "setting"
            lines.append(f"  - {name}: {err['msg']} (got {str(err.get('input'))[:60]!r})")
        _die("Some settings could not be read:\n" + "\n".join(lines))
        raise  # unreachable


def _die(text: str) -> None:
    print(text, file=sys.stderr)
    raise SystemExit(EXIT_CONFIG)


def _require_ready(settings: Settings) -> None:
    problems = settings.problems()
    if problems:
        env_file = Path.cwd() / ".env"
        _die(
            "Dispatch needs a little setup before it can run:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + f"\n\nSet these in the environment or in {env_file} (see .env.example for every setting)."
        )


def _setup_logging(settings: Settings) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(settings.home / "dispatch.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # The HTTP libraries log request lines at INFO; keep them out (URLs only, but noisy).
    for noisy in ("httpx", "httpx2", "httpcore", "anthropic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class InstanceLock:
    """One running Dispatch per data folder: two would answer every message twice."""

    def __init__(self, home: Path) -> None:
        self.path = home / "dispatch.lock"
        self._fh = None

    def __enter__(self) -> "InstanceLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a+")
        try:
            import fcntl

            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # Windows: no flock; run unguarded
            return self
        except OSError:
            self._fh.seek(0)
            pid = self._fh.read().strip() or "?"
            _die(f"Dispatch is already running (pid {pid}) for {self.path.parent}. "
                 "Use that one, or stop it first.")
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(str(os.getpid()))
        self._fh.flush()
        return self

    def __exit__(self, *_: object) -> None:
        if self._fh:
            self._fh.close()


def _core(settings: Settings):  # noqa: ANN202 - imported lazily so `dispatch --help` is instant
    from agent.core import Core

    return Core(settings)


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    _require_ready(settings)
    _setup_logging(settings)
    terminal = args.force_terminal or sys.stdin.isatty()
    if not settings.telegram_token and not settings.slack_token and not terminal:
        _die("No chat app is configured and there is no terminal to talk in.\n"
             "Set TELEGRAM_BOT_TOKEN or SLACK_BOT_TOKEN (see the README's Telegram and Slack sections), "
             "or run `dispatch chat` in a terminal.")
    from bot.ops.run import StartupError, run

    with InstanceLock(settings.home):
        try:
            asyncio.run(run(settings, terminal=terminal))
        except StartupError as exc:
            _die(str(exc))
    return 0


def cmd_chat(settings: Settings, args: argparse.Namespace) -> int:
    args.force_terminal = True
    return cmd_run(settings, args)


def cmd_pair(settings: Settings, args: argparse.Namespace) -> int:
    from agent import owners
    from store.db import Store
    from store.models import utcnow

    code, expires = owners.new_pairing_code(Store(settings.db_url))
    minutes = round((expires - utcnow()).total_seconds() / 60)
    print(f"Pairing code: {code}   (works once, for the next {minutes} minutes)\n")
    if settings.telegram_token or not settings.slack_token:
        print(f"On your phone, open your Dispatch bot in Telegram and send:\n\n    /pair {code}\n")
    if settings.slack_token:
        print(f"In Slack, open the Dispatch app's Messages tab and send:\n\n    pair {code}\n")
    if not settings.telegram_token and not settings.slack_token:
        print("(TELEGRAM_BOT_TOKEN is not set yet: set it and start `dispatch run` for the bot to answer.)")
    return 0


def cmd_pending(settings: Settings, args: argparse.Namespace) -> int:
    from agent import approvals
    from bot import views
    from store.db import Store

    print(views.pending_text(approvals.pending(Store(settings.db_url))))
    return 0


def cmd_decide(settings: Settings, args: argparse.Namespace) -> int:
    """approve / reject / edit from the desktop, on the same state machine as a button."""
    import getpass

    async def go() -> int:
        core = _core(settings)
        by = f"cli:{getpass.getuser()}"
        try:
            if args.command == "approve":
                decision = await core.approve(args.n, by)
            elif args.command == "reject":
                decision = await core.reject(args.n, by, " ".join(args.reason))
            else:
                decision = await core.edit(args.n, by, " ".join(args.text))
        finally:
            await core.model.aclose()
        print(decision.message)
        if decision.won and args.command == "reject" and args.reason:
            print("The revision runs the next time Dispatch is running (it is queued).")
        return 0 if decision.won else 1

    return asyncio.run(go())


def cmd_log(settings: Settings, args: argparse.Namespace) -> int:
    from bot import views
    from store.db import Store

    print(views.log_text(Store(settings.db_url).recent_actions(args.limit)))
    return 0


def cmd_usage(settings: Settings, args: argparse.Namespace) -> int:
    from bot import views
    from store.db import Store

    print(views.usage_text(Store(settings.db_url), settings))
    return 0


def cmd_policy(settings: Settings, args: argparse.Namespace) -> int:
    from bot import views

    print(views.policy_command(_core(settings), " ".join(args.setting)))
    return 0


def cmd_service(settings: Settings, args: argparse.Namespace) -> int:
    from bot.ops import service

    if args.print:
        print(service.render(settings), end="")
        return 0
    action = {"install": service.install, "uninstall": service.uninstall, "status": service.status}[args.action]
    ok, lines = action(settings)
    print("\n".join(lines))
    return 0 if ok else 1


def cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    from bot.ops import doctor

    logging.getLogger("dispatch").addHandler(logging.NullHandler())  # findings go in the report, not stderr
    text, ok = doctor.report(asyncio.run(doctor.run_checks(settings)))
    print(text)
    return 0 if ok else 1


def cmd_mcp(settings: Settings, args: argparse.Namespace) -> int:
    from bot.ops import mcp_cmd

    return mcp_cmd.run(settings, args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dispatch", description="Hand tasks to an AI agent on this desktop.")
    sub = p.add_subparsers(dest="command")
    run = sub.add_parser("run", help="start Dispatch (every configured front end)")
    run.add_argument("--force-terminal", action="store_true", help=argparse.SUPPRESS)
    sub.add_parser("chat", help="talk to your thread in this terminal")
    sub.add_parser("pair", help="print a one-time code that makes your Telegram or Slack account the owner")
    sub.add_parser("pending", help="drafts waiting for your approval")
    a = sub.add_parser("approve", help="send draft N")
    a.add_argument("n", type=int)
    r = sub.add_parser("reject", help="don't send draft N; a reason makes Dispatch revise it")
    r.add_argument("n", type=int)
    r.add_argument("reason", nargs="*")
    e = sub.add_parser("edit", help="replace draft N's text (a new revision to approve)")
    e.add_argument("n", type=int)
    e.add_argument("text", nargs="+")
    lg = sub.add_parser("log", help="recent actions: tools, files sent, sends, refusals")
    lg.add_argument("--limit", type=int, default=40)
    sub.add_parser("usage", help="tokens and cost")
    pol = sub.add_parser("policy", help="show or set a policy: dispatch policy email ask")
    pol.add_argument("setting", nargs="*")
    svc = sub.add_parser("service", help="run Dispatch at login and restart it after a crash (systemd/launchd)")
    svc.add_argument("action", choices=["install", "uninstall", "status"])
    svc.add_argument("--print", action="store_true", help="show the unit/plist that install writes; change nothing")
    sub.add_parser("doctor", help="check settings, tokens, mail, display and keep-awake; say what to fix")
    from bot.ops import mcp_cmd

    mcp_cmd.add_parser(sub)
    return p


COMMANDS = {
    "run": cmd_run, "chat": cmd_chat, "pair": cmd_pair, "pending": cmd_pending, "approve": cmd_decide,
    "reject": cmd_decide, "edit": cmd_decide, "log": cmd_log, "usage": cmd_usage, "policy": cmd_policy,
    "service": cmd_service, "doctor": cmd_doctor, "mcp": cmd_mcp,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        args.command, args.force_terminal = "run", False
    settings = _settings()
    try:
        return COMMANDS[args.command](settings, args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
