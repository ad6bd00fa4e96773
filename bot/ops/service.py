"""`dispatch service install | uninstall | status`: run Dispatch in the background,
started at login and restarted after a crash.

- Linux: a systemd *user* unit, `~/.config/systemd/user/dispatch.service`
  (`$XDG_CONFIG_HOME` respected), enabled with `systemctl --user enable --now`.
  `WantedBy=default.target` starts it when you log in; `Restart=on-failure`
  brings it back after a crash, except after exit status 2, which means a
  setting must be fixed first (`dispatch doctor` says which) — restarting would
  only fail again. To keep it running while you are logged out, or to start it
  at boot, enable lingering: `loginctl enable-linger $USER`.
- macOS: a launchd agent, `~/Library/LaunchAgents/dev.dispatch.agent.plist`,
  loaded into your GUI session (`launchctl bootstrap gui/<uid>`): `RunAtLoad`
  starts it at login, `KeepAlive.SuccessfulExit=false` restarts it after a crash.

The service runs `python -m bot.ops.cli run` with the Python that installed it, in
the folder you ran `install` from (so it reads the same `.env`), with
DISPATCH_HOME pinned to the data folder in use now. A setup whose service could
not run (no chat app — a service has no terminal — or a setting `dispatch doctor`
would fail, such as a missing API key) is refused with what to fix. Secrets are never written
into the unit or plist: they stay in `.env`. Without a terminal, `dispatch run`
runs the chat apps alone. Every step is reported in plain words, including what
to run by hand when systemctl/launchctl is not usable (a container, SSH without
a user session).
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from store.config import Settings

UNIT_NAME = "dispatch.service"
LABEL = "dev.dispatch.agent"
EXIT_CONFIG = 2  # bot.ops.cli's exit status for "fix a setting first"

Run = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def _run(cmd: list[str]) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def current_platform() -> str:
    return "macos" if sys.platform == "darwin" else "linux" if sys.platform.startswith("linux") else sys.platform


@dataclass
class ServiceSpec:
    program: list[str]
    workdir: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)


def spec_for(settings: Settings, workdir: Path | None = None) -> ServiceSpec:
    python = sys.executable or shutil.which("python3") or "python3"
    bindir = str(Path(python).parent)
    path = os.pathsep.join(dict.fromkeys([bindir, "/usr/local/bin", "/usr/bin", "/bin"]))
    return ServiceSpec(
        program=[python, "-m", "bot.ops.cli", "run"],
        workdir=(workdir or Path.cwd()).resolve(),
        log_path=settings.home / "service.log",
        env={"PYTHONUNBUFFERED": "1", "DISPATCH_HOME": str(settings.home.resolve()), "PATH": path},
    )


def unit_path(platform: str | None = None) -> Path:
    platform = platform or current_platform()
    if platform == "macos":
        return Path.home() / "Library" / "LaunchAgents" / f"{LABEL}.plist"
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user" / UNIT_NAME


# The files ---------------------------------------------------------------------------


def _sd_quote(arg: str) -> str:
    """One word of a systemd command line or assignment: % and $ escaped, quoted if needed."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if any(c in arg for c in ' \t"\\\'') or not arg:
        arg = '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return arg


def systemd_unit(spec: ServiceSpec) -> str:
    # WorkingDirectory= takes the path as is (quotes would make it "not absolute"); only
    # specifiers (%) are expanded there. ExecStart= and Environment= are quoted words.
    env = "\n".join(f"Environment={_sd_quote(f'{k}={v}')}" for k, v in spec.env.items())
    return f"""# Written by `dispatch service install` on {datetime.now():%Y-%m-%d %H:%M}.
# Remove with `dispatch service uninstall`; check with `dispatch service status`.
[Unit]
Description=Dispatch: your AI agent on this desktop
StartLimitIntervalSec=300
StartLimitBurst=5

[Service]
Type=simple
WorkingDirectory={str(spec.workdir).replace("%", "%%")}
ExecStart={" ".join(_sd_quote(a) for a in spec.program)}
{env}
Restart=on-failure
RestartSec=10
# Exit status {EXIT_CONFIG}: a setting must be fixed first (`dispatch doctor`); restarting would not help.
RestartPreventExitStatus={EXIT_CONFIG}
TimeoutStopSec=30

[Install]
WantedBy=default.target
"""


def launchd_plist(spec: ServiceSpec) -> bytes:
    return plistlib.dumps({
        "Label": LABEL,
        "ProgramArguments": spec.program,
        "WorkingDirectory": str(spec.workdir),
        "EnvironmentVariables": spec.env,
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},  # restart after a crash, not after a clean stop
        "ThrottleInterval": 10,
        "ProcessType": "Interactive",
        "StandardOutPath": str(spec.log_path),
        "StandardErrorPath": str(spec.log_path),
    })


def render(settings: Settings, platform: str | None = None, workdir: Path | None = None) -> str:
    spec = spec_for(settings, workdir)
    if (platform or current_platform()) == "macos":
        return launchd_plist(spec).decode("utf-8")
    return systemd_unit(spec)


# Install, uninstall, status -----------------------------------------------------------


def _unsupported(platform: str) -> list[str] | None:
    if platform in ("linux", "macos"):
        return None
    return [f"Running as a service is supported on Linux (systemd) and macOS (launchd), not {platform}. "
            "On Windows, add a Task Scheduler task that runs `dispatch run` at log on."]


def cannot_run(settings: Settings, workdir: Path) -> list[str]:
    """Why a service made from these settings would exit at once (status 2, never restarted),
    each with its fix; empty when it can run. A service has no terminal, so it needs a chat app."""
    out = [f"  - {p}" for p in settings.problems()]
    if not settings.telegram_token and not settings.slack_token:
        out.append("  - No chat app is configured, and a service has no terminal to talk in: it would exit at once "
                   f"and never restart. Put TELEGRAM_BOT_TOKEN (or SLACK_BOT_TOKEN and SLACK_APP_TOKEN) in "
                   f"{workdir / '.env'} (README, \u201cTelegram\u201d).")
    if not out:
        return []
    return ["Not installed: the service could not run with these settings.", *out,
            "Fix them (`dispatch init` asks for each; `dispatch doctor` checks them), then run "
            "`dispatch service install` again from the same folder."]


def _warnings(settings: Settings, spec: ServiceSpec) -> list[str]:
    out = []
    env_file = spec.workdir / ".env"
    if not env_file.is_file():
        out.append(f"Note: there is no .env in {spec.workdir}. The service reads its settings from there; "
                   "run `dispatch service install` from the folder that has your .env.")
    else:
        text = env_file.read_text(encoding="utf-8", errors="replace")
        for name in ("ANTHROPIC_API_KEY", "TELEGRAM_BOT_TOKEN", "SLACK_BOT_TOKEN"):
            if os.environ.get(name) and f"{name}=" not in text:
                out.append(f"Note: {name} is set in this shell but not in {env_file}; the service won't see it. "
                           "Put it in .env.")
    return out


def install(settings: Settings, *, platform: str | None = None, run: Run = _run,
            workdir: Path | None = None) -> tuple[bool, list[str]]:
    platform = platform or current_platform()
    if (msg := _unsupported(platform)) is not None:
        return False, msg
    spec = spec_for(settings, workdir)
    if refusal := cannot_run(settings, spec.workdir):
        return False, refusal
    path = unit_path(platform)
    path.parent.mkdir(parents=True, exist_ok=True)
    settings.home.mkdir(parents=True, exist_ok=True)
    if platform == "macos":
        path.write_bytes(launchd_plist(spec))
        steps = [["launchctl", "bootout", f"gui/{os.getuid()}/{LABEL}"],  # an older copy, if loaded
                 ["launchctl", "bootstrap", f"gui/{os.getuid()}", str(path)]]
        tool, by_hand = "launchctl", f"launchctl bootstrap gui/$(id -u) {path}"
    else:
        path.write_text(systemd_unit(spec), encoding="utf-8")
        steps = [["systemctl", "--user", "daemon-reload"], ["systemctl", "--user", "enable", "--now", UNIT_NAME]]
        tool, by_hand = "systemctl", f"systemctl --user daemon-reload && systemctl --user enable --now {UNIT_NAME}"
    lines = [f"Wrote {path}", f"It runs: {' '.join(spec.program)}", f"in {spec.workdir}"]
    lines += _warnings(settings, spec)
    ok, done = _steps(run, tool, steps, tolerate_first=platform == "macos")
    if ok:
        lines.append("Started, and it will start at every login and restart after a crash. "
                     + ("Logs: journalctl --user -u dispatch -f" if platform == "linux"
                        else f"Logs: {spec.log_path}"))
        if platform == "linux":
            lines.append("To keep it running while you are logged out (or start it at boot): "
                         "loginctl enable-linger $USER")
    else:
        lines.append(f"Not started: {done}. When {tool} works here, run: {by_hand}")
    return ok, lines


def uninstall(settings: Settings, *, platform: str | None = None, run: Run = _run) -> tuple[bool, list[str]]:
    platform = platform or current_platform()
    if (msg := _unsupported(platform)) is not None:
        return False, msg
    path = unit_path(platform)
    lines = []
    if platform == "macos":
        _steps(run, "launchctl", [["launchctl", "bootout", f"gui/{os.getuid()}/{LABEL}"]])
    else:
        _steps(run, "systemctl", [["systemctl", "--user", "disable", "--now", UNIT_NAME]])
    if path.exists():
        path.unlink()
        lines.append(f"Stopped (if it was running) and removed {path}. Dispatch no longer starts at login.")
    else:
        lines.append(f"There was no service to remove ({path} does not exist).")
    if platform == "linux":
        _steps(run, "systemctl", [["systemctl", "--user", "daemon-reload"]])
    return True, lines


def status(settings: Settings, *, platform: str | None = None, run: Run = _run) -> tuple[bool, list[str]]:
    """(installed and running, lines to print)."""
    platform = platform or current_platform()
    if (msg := _unsupported(platform)) is not None:
        return False, msg
    path = unit_path(platform)
    if not path.exists():
        return False, [f"Not installed ({path} does not exist). Install it with `dispatch service install`."]
    lines = [f"Installed: {path}"]
    if platform == "macos":
        if not shutil.which("launchctl"):
            return False, lines + ["launchctl is not available here, so whether it runs is unknown."]
        res = run(["launchctl", "print", f"gui/{os.getuid()}/{LABEL}"])
        if res.returncode != 0:
            return False, lines + ["Not loaded: run `dispatch service install` again to load it."]
        info = {k.strip(): v.strip() for k, _, v in (ln.partition("=") for ln in res.stdout.splitlines()) if v}
        running = info.get("state") == "running"
        lines.append(f"State: {info.get('state', 'unknown')}" + (f", pid {info['pid']}" if "pid" in info else "")
                     + (f", last exit code {info['last exit code']}" if "last exit code" in info else ""))
        return running, lines
    if not shutil.which("systemctl"):
        return False, lines + ["systemctl is not available here, so whether it runs is unknown."]
    res = run(["systemctl", "--user", "show", UNIT_NAME, "-p",
               "ActiveState,SubState,UnitFileState,MainPID,NRestarts,ExecMainStatus"])
    if res.returncode != 0:
        return False, lines + [f"systemctl could not tell ({(res.stderr or res.stdout).strip()[:200]})."]
    info = dict(ln.split("=", 1) for ln in res.stdout.splitlines() if "=" in ln)
    running = info.get("ActiveState") == "active"
    lines.append(f"State: {info.get('ActiveState', '?')} ({info.get('SubState', '?')}), "
                 f"{'enabled at login' if info.get('UnitFileState') == 'enabled' else 'NOT enabled at login'}"
                 + (f", pid {info['MainPID']}" if info.get("MainPID", "0") != "0" else "")
                 + (f", restarted {info['NRestarts']} time(s)" if info.get("NRestarts", "0") != "0" else ""))
    if info.get("ExecMainStatus") == str(EXIT_CONFIG):
        lines.append("It stopped because a setting must be fixed: run `dispatch doctor`.")
    return running, lines


def _steps(run: Run, tool: str, steps: list[list[str]], tolerate_first: bool = False) -> tuple[bool, str]:
    if not shutil.which(tool):
        return False, f"{tool} is not available here"
    for i, cmd in enumerate(steps):
        try:
            res = run(cmd)
        except (OSError, subprocess.SubprocessError) as exc:
            return False, f"`{' '.join(cmd)}` failed ({exc})"
        if res.returncode != 0 and not (tolerate_first and i == 0):
            why = (res.stderr or res.stdout or "").strip().splitlines()
            return False, f"`{' '.join(cmd)}` failed ({why[0][:200] if why else f'exit {res.returncode}'})"
    return True, ""
