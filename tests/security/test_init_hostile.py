"""`dispatch init` with hostile or awkward input: a value can't smuggle a second setting
into .env, the file is never readable by others (not even while it is written), what the
owner had in .env survives, and a pasted secret never reaches the terminal output."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from dotenv import dotenv_values

from bot.ops import envfile


def test_a_value_cannot_add_a_setting(tmp_path: Path):
    path = tmp_path / ".env"
    hostile = 'tok"en\nDISPATCH_POLICY=email=auto\n# \\ $HOME `id`'
    envfile.write(path, {"TELEGRAM_BOT_TOKEN": hostile})
    values = dotenv_values(path)
    assert values["TELEGRAM_BOT_TOKEN"] == hostile  # read back exactly, newline and all
    assert "DISPATCH_POLICY" not in values and set(values) == {"TELEGRAM_BOT_TOKEN"}


def test_mode_0600_from_the_start_and_the_owners_lines_kept(tmp_path: Path, monkeypatch):
    path = tmp_path / ".env"
    path.write_text("# mine\nexport SLACK_USER_TOKEN=xoxp-1\nANTHROPIC_API_KEY=old\nANTHROPIC_API_KEY=older\n")
    path.chmod(0o644)
    seen_modes: list[int] = []
    real_replace = os.replace

    def watching_replace(src: str, dst: str) -> None:
        seen_modes.append(stat.S_IMODE(os.stat(src).st_mode))  # the new file, before it takes the name
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", watching_replace)
    envfile.write(path, {"ANTHROPIC_API_KEY": "sk-ant-new", "DISPATCH_ROOTS": "/home/sam/My Documents"})
    assert seen_modes == [0o600] and stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert text.startswith("# mine\nexport SLACK_USER_TOKEN=xoxp-1\nANTHROPIC_API_KEY=sk-ant-new\n")
    assert text.count("ANTHROPIC_API_KEY") == 1  # a duplicate key cannot shadow the new value
    values = dotenv_values(path)
    assert values["DISPATCH_ROOTS"] == "/home/sam/My Documents" and values["SLACK_USER_TOKEN"] == "xoxp-1"
    assert [p.name for p in tmp_path.iterdir()] == [".env"]  # no temporary file left behind
