"""`dispatch init`: from nothing to a working setup, one question at a time.

It asks for the Anthropic API key (hidden, then tried with a one-token call through
ANTHROPIC_BASE_URL), the folders the agent may use (suggesting Documents, Desktop
and Downloads where they exist), a chat app (a Telegram token tried with getMe, or
Slack tokens tried with auth.test: the same checks as `dispatch doctor`), optionally
mail (the login tried on both servers). Everything goes into `.env` in this folder,
merged with what is there, mode 0600 (bot.ops.envfile); secrets are never printed.
Then it pairs the phone (shows a one-time code and runs the bot until `/pair CODE`
arrives, or a timeout, or Enter to skip: bot.ops.pairing) and ends with `dispatch doctor`.

For scripts every answer is a flag (`--api-key`, `--roots`, `--telegram-token`,
`--slack-bot-token`, `--slack-app-token`, `--email` with EMAIL_PASSWORD from the
environment, `--no-pair`), and `--yes` takes the suggestion for anything not given
instead of asking. A check that fails stops a script with exit status 2 and the
reason, before anything is written; at a terminal the question is asked again.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from bot.ops import doctor, envfile
from store.config import Settings

TRIES = 3
SUGGESTED = ("Documents", "Desktop", "Downloads")


class InitError(Exception):
    """A check failed where nobody can be asked again; `str()` says what and how to fix it."""


class Asker:
    """The questions at a terminal; with nobody to ask, `interactive` is False and nothing is read."""

    def __init__(self, interactive: bool) -> None:
        self.interactive = interactive

    def ask(self, question: str, default: str = "") -> str:
        shown = f" [{default}]" if default else ""
        answer = input(f"{question}{shown}: ").strip()
        return answer or default

    def secret(self, question: str) -> str:
        return getpass.getpass(f"{question}: ").strip()

    def yes(self, question: str, default: bool = True) -> bool:
        answer = input(f"{question} [{'Y/n' if default else 'y/N'}]: ").strip().lower()
        return default if not answer else answer.startswith("y")


def say(text: str) -> None:
    print(text, flush=True)


def settings_with(env_path: Path, values: dict[str, str]) -> Settings:
    """The settings Dispatch would read with `values` added to the .env at `env_path`."""
    try:
        return Settings(_env_file=env_path if env_path.is_file() else None, **values)  # type: ignore[call-arg]
    except ValidationError as exc:
        names = ", ".join(str(e["loc"][0]) for e in exc.errors() if e["loc"])
        raise InitError(f"These settings can't be read: {names}. Fix them in {env_path} and run "
                        "`dispatch init` again.") from None


# The steps: each returns the values to write -----------------------------------------


async def api_key_step(args: argparse.Namespace, ui: Asker, env_path: Path, current: dict[str, str]) -> dict[str, str]:
    have = args.api_key or current.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_API_KEY") or ""
    if args.api_key or not ui.interactive:
        if not have:
            raise InitError("An Anthropic API key is needed: --api-key sk-ant-... (console.anthropic.com -> "
                            "Settings -> API keys).")
        ok, message = await _try_key(env_path, have)
        if not ok:
            raise InitError(f"The API key was not accepted: {message}")
        say(f"   ✓ Model: {message}")
        return {"ANTHROPIC_API_KEY": have}
    say("1. Anthropic API key (console.anthropic.com -> Settings -> API keys). It is not shown as you type.")
    for _ in range(TRIES):
        key = ui.secret("   API key" + (" (Enter keeps the current one)" if have else "")) or have
        if not key:
            say("   A key is needed: Dispatch can't think without one.")
            continue
        ok, message = await _try_key(env_path, key)
        if ok:
            say(f"   ✓ {message}")
            return {"ANTHROPIC_API_KEY": key}
        say(f"   ✗ {message}")
        have = ""
    raise InitError("The API key was not accepted. Check it at console.anthropic.com and run `dispatch init` again.")


async def _try_key(env_path: Path, key: str) -> tuple[bool, str]:
    _, ok, message = await doctor.check_model(settings_with(env_path, {"ANTHROPIC_API_KEY": key}))
    return ok, message


def suggested_roots() -> list[Path]:
    return [Path.home() / name for name in SUGGESTED if (Path.home() / name).is_dir()]


def parse_roots(text: str) -> tuple[list[Path], list[str]]:
    """The folders in `text` ("none" is none), and what is wrong with any of them."""
    if text.strip().lower() in ("none", "-"):
        return [], []
    paths = [Path(p.strip()).expanduser().resolve() for p in text.split(os.pathsep) if p.strip()]
    return paths, [f"{p} is not a folder" for p in paths if not p.is_dir()]


def roots_step(args: argparse.Namespace, ui: Asker, current: dict[str, str]) -> dict[str, str]:
    default = current.get("DISPATCH_ROOTS") or os.pathsep.join(str(p) for p in suggested_roots())
    if args.roots is not None or not ui.interactive:
        paths, wrong = parse_roots(args.roots if args.roots is not None else default)
        if wrong:
            raise InitError(f"--roots: {'; '.join(wrong)}.")
    else:
        say(f"\n2. Folders the agent may read (it sees nothing else). Separate them with '{os.pathsep}'; "
            "'none' for none.")
        for _ in range(TRIES):
            paths, wrong = parse_roots(ui.ask("   Folders", default or "none"))
            if not wrong:
                break
            say(f"   ✗ {'; '.join(wrong)}.")
        else:
            raise InitError("No usable folders were given.")
    say(f"   ✓ Folders: {', '.join(map(str, paths))}" if paths else
        "   Folders: none shared (set DISPATCH_ROOTS later to let the agent read your files)")
    return {"DISPATCH_ROOTS": os.pathsep.join(str(p) for p in paths)}


async def chat_step(args: argparse.Namespace, ui: Asker, env_path: Path, current: dict[str, str]) -> dict[str, str]:
    if args.telegram_token:
        return await _telegram(env_path, args.telegram_token)
    if args.slack_bot_token or args.slack_app_token:
        return await _slack(env_path, args.slack_bot_token or "", args.slack_app_token or "")
    if not ui.interactive:
        return {}
    say("\n3. A chat app to reach Dispatch from your phone.")
    existing = "t" if current.get("TELEGRAM_BOT_TOKEN") else "s" if current.get("SLACK_BOT_TOKEN") else ""
    if existing and ui.yes(f"   {'Telegram' if existing == 't' else 'Slack'} is already set up in .env. Keep it?"):
        return {}
    choice = ui.ask("   Telegram (t), Slack (s), or none for now (n)", "t").lower()[:1]
    for _ in range(TRIES):
        try:
            if choice == "t":
                say("   In Telegram, ask @BotFather for /newbot; it answers with a token like 123456789:AA...")
                return await _telegram(env_path, ui.secret("   Bot token"))
            if choice == "s":
                say("   Create the app from slack-app-manifest.yaml (README, \u201cSlack\u201d), then paste:")
                return await _slack(env_path, ui.secret("   Bot User OAuth Token (xoxb-...)"),
                                    ui.secret("   App-Level Token (xapp-...)"))
            say("   No chat app: you can use Dispatch in this terminal (`dispatch chat`).")
            return {}
        except InitError as exc:
            say(f"   ✗ {exc}")
    raise InitError("The chat app's token was not accepted; run `dispatch init` again with a fresh one.")


async def _telegram(env_path: Path, token: str) -> dict[str, str]:
    values = {"TELEGRAM_BOT_TOKEN": token.strip()}
    name, ok, message = (await doctor.check_telegram(settings_with(env_path, values)))[0]
    if not ok:
        raise InitError(message)
    say(f"   ✓ Telegram: {message}")
    return values


async def _slack(env_path: Path, bot: str, app: str) -> dict[str, str]:
    bot, app = bot.strip(), app.strip()
    if not bot.startswith("xoxb-"):
        raise InitError("The Slack bot token starts with xoxb- (OAuth & Permissions -> Bot User OAuth Token).")
    if not app.startswith("xapp-"):
        raise InitError("The Slack app token starts with xapp- (Basic Information -> App-Level Tokens, "
                        "scope connections:write).")
    values = {"SLACK_BOT_TOKEN": bot, "SLACK_APP_TOKEN": app}
    name, ok, message = (await doctor.check_slack(settings_with(env_path, values)))[0]
    if not ok:
        raise InitError(message)
    say(f"   ✓ Slack: {message}")
    return values


async def mail_step(args: argparse.Namespace, ui: Asker, env_path: Path, current: dict[str, str]) -> dict[str, str]:
    address = args.email
    if address is None and ui.interactive:
        say("\n4. Mail (optional): read and send as you, every send approved first. Gmail needs an app password "
            "(README, \u201cEmail\u201d).")
        address = ui.ask("   Email address (Enter to skip)", current.get("EMAIL_ADDRESS", ""))
    if not address:
        return {}
    values = {"EMAIL_ADDRESS": address.strip()}
    password = os.environ.get("EMAIL_PASSWORD") or current.get("EMAIL_PASSWORD") or ""
    for _ in range(TRIES if ui.interactive else 1):
        if ui.interactive:
            password = ui.secret("   Password (an app password for Gmail)" +
                                 (" (Enter keeps the current one)" if password else "")) or password
            if not address.lower().endswith(("@gmail.com", "@googlemail.com")) and "IMAP_HOST" not in values:
                values["IMAP_HOST"] = ui.ask("   IMAP server", current.get("IMAP_HOST", "imap." + address.split("@")[-1]))
                values["SMTP_HOST"] = ui.ask("   SMTP server", current.get("SMTP_HOST", "smtp." + address.split("@")[-1]))
        if not password:
            raise InitError("--email needs the password in EMAIL_PASSWORD (the environment or .env).")
        values["EMAIL_PASSWORD"] = password
        results = await asyncio.to_thread(_check_mail, settings_with(env_path, values))
        for name, ok, message in results:
            say(f"   {'✓' if ok else '✗'} {name}: {message}")
        if all(ok for _, ok, _ in results):
            return values
        password = ""
    raise InitError("The mail login did not work (see above); nothing was written.")


def _check_mail(settings: Settings) -> list[tuple[str, bool, str]]:
    from tools.mailbox.account import check_mail_login

    return list(check_mail_login(settings))


async def setup(args: argparse.Namespace, env_path: Path | None = None) -> int:
    env_path = env_path or Path.cwd() / ".env"
    ui = Asker(sys.stdin.isatty() and not args.yes)
    current = envfile.read(env_path)
    if ui.interactive:
        say(f"Setting up Dispatch. Answers are saved in {env_path} (readable only by you).\n")
    values = await api_key_step(args, ui, env_path, current)
    values |= roots_step(args, ui, current)
    values |= await chat_step(args, ui, env_path, current)
    values |= await mail_step(args, ui, env_path, current)
    envfile.write(env_path, values)  # every answer checked first: a failed check writes nothing
    say(f"\nSaved {', '.join(sorted(values))} in {env_path} (mode 0600).")
    if not args.no_pair:
        from bot.ops.pairing import pair_now

        await pair_now(settings_with(env_path, {}), ui.interactive, args.pair_timeout)
    say("\nChecking everything (dispatch doctor):\n")
    text, ok = doctor.report(await doctor.run_checks(settings_with(env_path, {})))
    say(text)
    say("\nStart Dispatch with `dispatch` (or `dispatch service install` to keep it running)." if ok else
        "\nFix what doctor lists (or run `dispatch init` again), then start Dispatch with `dispatch`.")
    return 0 if ok else 1


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(setup(args))
    except InitError as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 2
    except (EOFError, KeyboardInterrupt):
        print("\nStopped; nothing more was saved. Run `dispatch init` again to go on.", file=sys.stderr)
        return 130


def offer(settings: Settings) -> bool:
    """`dispatch` started unconfigured at a terminal: offer init. True when it ran and succeeded."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return False
    say("Dispatch isn't set up yet:\n" + "\n".join(f"  - {p}" for p in settings.problems()))
    if not Asker(True).yes("Set it up now (dispatch init)?"):
        return False
    args = argparse.Namespace(api_key=None, roots=None, telegram_token=None, slack_bot_token=None,
                              slack_app_token=None, email=None, no_pair=False, pair_timeout=600.0, yes=False)
    return run(args) in (0, 1)
