"""`dispatch service`: the systemd unit and the launchd plist it writes are valid
(`systemd-analyze verify`; the plist parsed as Apple's format, plus `plutil -lint`
where it exists), and install / status / uninstall work in a temporary home with
stand-in systemctl and launchctl commands that record what they were asked."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bot.ops import service
from bot.ops.cli import main
from tests.conftest import make_settings, require_system

FAKE_SYSTEMCTL = """#!/bin/sh
echo "$@" >> "$TOOL_LOG"
case "$*" in
  *" show "*) printf 'ActiveState=active\\nSubState=running\\nUnitFileState=enabled\\nMainPID=4242\\nNRestarts=1\\nExecMainStatus=0\\n' ;;
esac
exit 0
"""
FAKE_LAUNCHCTL = """#!/bin/sh
echo "$@" >> "$TOOL_LOG"
case "$1" in
  print) printf 'gui/501/dev.dispatch.agent = {\\n\\tstate = running\\n\\tpid = 99\\n\\tlast exit code = 0\\n}\\n' ;;
  bootout) exit 3 ;;
esac
exit 0
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home dir"  # a space, as in many real home folders
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(h / ".config"))
    return h


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    w = tmp_path / "project 100%"
    w.mkdir()
    (w / ".env").write_text("ANTHROPIC_API_KEY=sk-ant-in-dotenv\n")
    monkeypatch.chdir(w)
    return w


@pytest.fixture
def settings(tmp_path: Path):
    return make_settings(tmp_path, "http://127.0.0.1:9", TELEGRAM_BOT_TOKEN="123:abc")


def fake_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, script: str) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / name).write_text(script)
    (bindir / name).chmod(0o755)
    log = tmp_path / f"{name}.log"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.setenv("TOOL_LOG", str(log))
    return log


def test_the_systemd_unit_verifies(tmp_path, settings, workdir):
    analyze = require_system("systemd-analyze", "systemd")
    unit = tmp_path / "dispatch.service"
    unit.write_text(service.render(settings, "linux"))
    # System mode: `--user verify` needs a running user manager, which a container lacks;
    # the checks of the unit's syntax and settings are the same.
    res = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    complaints = [ln for ln in (res.stdout + res.stderr).splitlines() if "dispatch.service" in ln]
    assert res.returncode == 0 and complaints == [], res.stdout + res.stderr
    text = unit.read_text()
    assert f"WorkingDirectory={workdir}".replace("%", "%%") in text
    assert f"ExecStart={sys.executable} -m bot.ops.cli run" in text
    assert "Restart=on-failure" in text and "RestartPreventExitStatus=2" in text
    assert "WantedBy=default.target" in text
    assert f'Environment="DISPATCH_HOME={settings.home.resolve()}"' in text or \
        f"Environment=DISPATCH_HOME={settings.home.resolve()}" in text
    assert "sk-ant" not in text  # secrets stay in .env


def test_the_launchd_plist_parses(settings, workdir):
    data = service.render(settings, "macos").encode()
    plist = plistlib.loads(data, fmt=plistlib.FMT_XML)  # what `plutil -lint` checks, in Python
    assert plist["Label"] == "dev.dispatch.agent"
    assert plist["ProgramArguments"] == [sys.executable, "-m", "bot.ops.cli", "run"]
    assert plist["WorkingDirectory"] == str(workdir)
    assert plist["RunAtLoad"] is True and plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["EnvironmentVariables"]["DISPATCH_HOME"] == str(settings.home.resolve())
    assert plist["StandardErrorPath"].endswith("service.log")
    assert b"sk-ant" not in data
    if shutil.which("plutil"):  # macOS
        path = workdir / "x.plist"
        path.write_bytes(data)
        assert subprocess.run(["plutil", "-lint", str(path)]).returncode == 0


def test_install_status_uninstall_with_systemd(tmp_path, monkeypatch, home, workdir, settings):
    log = fake_tool(tmp_path, monkeypatch, "systemctl", FAKE_SYSTEMCTL)
    ok, lines = service.install(settings, platform="linux")
    unit = home / ".config" / "systemd" / "user" / "dispatch.service"
    assert ok and unit.is_file() and lines[0] == f"Wrote {unit}"
    assert any("Started" in ln for ln in lines) and any("enable-linger" in ln for ln in lines)
    assert log.read_text().splitlines() == ["--user daemon-reload", "--user enable --now dispatch.service"]

    running, lines = service.status(settings, platform="linux")
    assert running
    assert lines[-1] == "State: active (running), enabled at login, pid 4242, restarted 1 time(s)"

    ok, lines = service.uninstall(settings, platform="linux")
    assert ok and not unit.exists() and "no longer starts at login" in lines[0]
    assert log.read_text().splitlines()[-2:] == ["--user disable --now dispatch.service", "--user daemon-reload"]
    running, lines = service.status(settings, platform="linux")
    assert not running and "Not installed" in lines[0]


def test_install_without_systemctl_writes_the_unit_and_says_what_to_run(tmp_path, monkeypatch, home, workdir,
                                                                         settings):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    ok, lines = service.install(settings, platform="linux")
    assert not ok and (home / ".config" / "systemd" / "user" / "dispatch.service").is_file()
    assert lines[-1] == ("Not started: systemctl is not available here. When systemctl works here, run: "
                         "systemctl --user daemon-reload && systemctl --user enable --now dispatch.service")


def test_install_status_uninstall_with_launchd(tmp_path, monkeypatch, home, workdir, settings):
    log = fake_tool(tmp_path, monkeypatch, "launchctl", FAKE_LAUNCHCTL)
    ok, lines = service.install(settings, platform="macos")
    plist = home / "Library" / "LaunchAgents" / "dev.dispatch.agent.plist"
    assert ok and plistlib.loads(plist.read_bytes())["Label"] == "dev.dispatch.agent"
    uid = os.getuid()
    # An older copy is booted out first (not loaded: exit 3, which is fine), then it is loaded.
    assert log.read_text().splitlines() == [f"bootout gui/{uid}/dev.dispatch.agent", f"bootstrap gui/{uid} {plist}"]
    running, lines = service.status(settings, platform="macos")
    assert running and lines[-1] == "State: running, pid 99, last exit code 0"
    ok, lines = service.uninstall(settings, platform="macos")
    assert ok and not plist.exists()


def test_a_missing_env_file_and_shell_only_secrets_are_pointed_out(tmp_path, monkeypatch, home, settings):
    bare = tmp_path / "elsewhere"
    bare.mkdir()
    monkeypatch.chdir(bare)
    monkeypatch.setenv("PATH", str(tmp_path))
    _, lines = service.install(settings, platform="linux")
    assert any(f"there is no .env in {bare}" in ln for ln in lines)
    (bare / ".env").write_text("DISPATCH_OWNER_NAME=Sam\n")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    _, lines = service.install(settings, platform="linux")
    assert any("TELEGRAM_BOT_TOKEN is set in this shell but not in" in ln for ln in lines)


def test_cli_prints_the_unit(monkeypatch, capsys, home, workdir, tmp_path):
    monkeypatch.setenv("DISPATCH_HOME", str(tmp_path / "data"))
    assert main(["service", "install", "--print"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Written by `dispatch service install`") and "[Service]" in out
    assert not (home / ".config" / "systemd").exists()  # --print changes nothing
    assert main(["service", "status"]) == 1
    assert "Not installed" in capsys.readouterr().out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="systemd")
def test_install_refuses_a_setup_whose_service_cannot_run(tmp_path, monkeypatch, capsys, home, workdir):
    """Terminal-only (no chat app): the service would exit 2 at once and never restart, so
    "every Monday at 9" would never fire. Refused, nothing written, and the fix is named."""
    log = fake_tool(tmp_path, monkeypatch, "systemctl", FAKE_SYSTEMCTL)
    for name in ("TELEGRAM_BOT_TOKEN", "SLACK_BOT_TOKEN", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DISPATCH_HOME", str(tmp_path / "data"))
    assert main(["service", "install"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("Not installed: the service could not run with these settings.")
    assert "No chat app is configured" in out and f"TELEGRAM_BOT_TOKEN (or SLACK_BOT_TOKEN" in out
    assert str(workdir / ".env") in out and "dispatch init" in out
    assert not service.unit_path("linux").exists() and not log.exists()  # nothing written, nothing started

    (workdir / ".env").write_text("TELEGRAM_BOT_TOKEN=123:abc\n")  # a chat app, but no API key now
    assert main(["service", "install"]) == 1
    out = capsys.readouterr().out
    assert "ANTHROPIC_API_KEY is not set" in out and "No chat app" not in out
    assert not service.unit_path("linux").exists()

    (workdir / ".env").write_text("TELEGRAM_BOT_TOKEN=123:abc\nANTHROPIC_API_KEY=sk-ant-x\n")
    assert main(["service", "install"]) == 0  # it can run: installed and started
    assert service.unit_path("linux").exists() and "enable --now" in log.read_text()
