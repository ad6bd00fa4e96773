"""The `dispatch` command.

    dispatch                 same as `dispatch run`
    dispatch init            set up step by step: API key, folders, chat app, pairing, mail
    dispatch run             start every configured front end (Telegram, Slack; the terminal if there is one)
    dispatch chat            talk to your thread in this terminal (and Telegram, if configured)
    dispatch pair            a one-time code that makes your Telegram or Slack account the owner
    dispatch ask TEXT        hand one task over and print the answer (stdin too; --no-wait)
    dispatch pending         drafts waiting for approval, in full
    dispatch show N          the whole card of draft N
    dispatch approve N       send draft N
    dispatch reject N [why]  don't send it (a reason queues a revision)
    dispatch edit N TEXT     replace the draft's text with a new revision
    dispatch log             recent actions
    dispatch usage           tokens and cost
    dispatch policy [K V]    show or set a policy
    dispatch service install | uninstall | status   run at login, restart after a crash
    dispatch doctor          check settings, tokens, mail, display, keep-awake; say what to fix
    dispatch connect google [--write] [--no-browser] [--status] [--disconnect]   Google Drive
    dispatch mcp list | add | remove | test NAME   plugins (MCP servers)

Only `run`/`chat`/`ask` need the model. The one-shot commands reach the running
Dispatch over its control socket (agent.control), so it acts and redraws every
card; when none runs they act on the store here, through the same code.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from pydantic import ValidationError

from bot.ops.arguments import build_parser
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
            + f"\n\nRun `dispatch init` to set it up step by step, or set these in the environment or in "
            f"{env_file} (see .env.example for every setting)."
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
    if settings.problems():
        from bot.ops import init

        if init.offer(settings):  # at a terminal, unconfigured: set up first, then start
            settings = _settings()
    _require_ready(settings)
    _setup_logging(settings)
    terminal = args.force_terminal or sys.stdin.isatty()
    if not settings.telegram_token and not settings.slack_token and not terminal:
        _die("No chat app is configured and there is no terminal to talk in.\n"
             "Set TELEGRAM_BOT_TOKEN or SLACK_BOT_TOKEN (see the README's Telegram and Slack sections), "
             "or run `dispatch chat` in a terminal.")
    # No cyclic GC while start-up imports and builds ~200k long-lived objects: each pass
    # would walk them all again, for nothing to free (~7% of start-up). bot.ops.run
    # collects once, freezes what was built and turns it back on once the apps poll.
    gc.disable()
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


def _oneshot(settings: Settings, op: str, args: dict, *, start: bool = False) -> int:
    """Run one request on the running Dispatch (over the control socket), or — when none
    runs — on the store right here, through the same code. Cards and answers go to
    stdout, progress to stderr; exit 0 when it went as asked, 1 when not."""
    import getpass

    from agent import control

    by = f"cli:{getpass.getuser()}"

    async def show(event: dict) -> None:
        kind, text = event.get("type"), str(event.get("text") or "")
        if kind == "progress":
            print(f"  · {text}", file=sys.stderr, flush=True)
        elif text:
            print(text, flush=True)

    async def go() -> int:
        end = await control.request(settings.home, op, args, by, show)
        if end is None:
            end = await _local(settings, op, args, by, show, start=start)
        if end.get("text"):
            print(end["text"], file=sys.stderr if op == "ask" else sys.stdout, flush=True)
        return 0 if end.get("ok") else 1

    return asyncio.run(go())


async def _local(settings: Settings, op: str, args: dict, by: str, show, *, start: bool) -> dict:  # noqa: ANN001
    """No Dispatch is running: the core acts here, on the store, for this one request."""
    from agent import control

    core = _core(settings)
    channel = control.ControlChannel()
    core.attach(channel)
    end: dict = {}

    async def emit(event: dict) -> None:
        if event.get("type") == "end":
            end.update(event)
        else:
            await show(event)

    try:
        if start:  # `ask` needs the worker: this process is the running Dispatch until it is done
            _setup_logging(settings)
            with InstanceLock(settings.home):
                await core.start()
                try:
                    await control.run_op(core, channel, {"op": op, "args": args, "by": by}, emit)
                finally:
                    await core.stop()
        else:
            await control.run_op(core, channel, {"op": op, "args": args, "by": by}, emit)
            await core.router.settle()
    finally:
        await core.plugins.close()  # approving a plugin's draft may have started its server
        await core.model.aclose()
        core.store.close()
    return end


def cmd_pending(settings: Settings, args: argparse.Namespace) -> int:
    return _oneshot(settings, "pending", {})


def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    return _oneshot(settings, "show", {"n": args.n})


def cmd_decide(settings: Settings, args: argparse.Namespace) -> int:
    """approve / reject / edit from the desktop, on the same state machine as a button."""
    if args.command == "approve":
        return _oneshot(settings, "approve", {"n": args.n})
    if args.command == "reject":
        return _oneshot(settings, "reject", {"n": args.n, "reason": " ".join(args.reason)})
    return _oneshot(settings, "edit", {"n": args.n, "text": " ".join(args.text)})


def cmd_ask(settings: Settings, args: argparse.Namespace) -> int:
    text = " ".join(args.text).strip()
    if not text and not sys.stdin.isatty():
        text = sys.stdin.read().strip()
    if not text:
        _die("Nothing to ask: `dispatch ask \"TEXT\"`, or pipe the text in.")
    if not args.no_wait:
        _require_ready(settings)
    return _oneshot(settings, "ask", {"text": text, "wait": not args.no_wait}, start=not args.no_wait)


def cmd_log(settings: Settings, args: argparse.Namespace) -> int:
    from agent.reports import log_text
    from store.db import Store

    store = Store(settings.db_url)
    print(log_text(store.recent_actions(args.limit), verbose=args.verbose, store=store))
    return 0


def cmd_usage(settings: Settings, args: argparse.Namespace) -> int:
    from agent.reports import usage_text
    from store.db import Store

    print(usage_text(Store(settings.db_url), settings))
    return 0


def cmd_policy(settings: Settings, args: argparse.Namespace) -> int:
    return _oneshot(settings, "policy", {"setting": " ".join(args.setting)})


def cmd_service(settings: Settings, args: argparse.Namespace) -> int:
    from bot.ops import service

    if args.print:
        print(service.render(settings), end="")
        return 0
    action = {"install": service.install, "uninstall": service.uninstall, "status": service.status}[args.action]
    ok, lines = action(settings)
    print("\n".join(lines))
    return 0 if ok else 1


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    from bot.ops import init

    return init.run(args)


def cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    from bot.ops import doctor

    logging.getLogger("dispatch").addHandler(logging.NullHandler())  # findings go in the report, not stderr
    text, ok = doctor.report(asyncio.run(doctor.run_checks(settings)))
    print(text)
    return 0 if ok else 1


def cmd_connect(settings: Settings, args: argparse.Namespace) -> int:
    from bot.ops import connect_google

    return connect_google.run(settings, args)


def cmd_mcp(settings: Settings, args: argparse.Namespace) -> int:
    from bot.ops import mcp_cmd

    return mcp_cmd.run(settings, args)


COMMANDS = {
    "run": cmd_run, "chat": cmd_chat, "pair": cmd_pair, "pending": cmd_pending, "show": cmd_show,
    "ask": cmd_ask, "approve": cmd_decide,
    "reject": cmd_decide, "edit": cmd_decide, "log": cmd_log, "usage": cmd_usage, "policy": cmd_policy,
    "service": cmd_service, "doctor": cmd_doctor, "init": cmd_init, "connect": cmd_connect, "mcp": cmd_mcp,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        args.command, args.force_terminal = "run", False
    if args.command == "init":  # init is how broken or missing settings get fixed: it reads them itself
        return cmd_init(None, args)  # type: ignore[arg-type]
    settings = _settings()
    try:
        return COMMANDS[args.command](settings, args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
