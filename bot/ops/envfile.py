"""Writing settings into `.env` for `dispatch init`: merged into what is there, secret.

The file is read by python-dotenv (store.config), so values are written in the
form it reads back unchanged: bare when they are plain, else double-quoted with
`\\` and `"` escaped. Lines that set a key we change are replaced where they
stand (comments, order and every other line are kept); new keys are appended.
The file is written to a temporary file created with mode 0600 and renamed over
the old one, so it is never readable by others, not even for a moment, and a
crash never leaves half a file.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from dotenv import dotenv_values

_PLAIN = re.compile(r"^[A-Za-z0-9_./:@+,~%-]*$")


def read(path: Path) -> dict[str, str]:
    """The values in an existing .env (empty when there is none)."""
    if not path.is_file():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def quote(value: str) -> str:
    if _PLAIN.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def merge(text: str, values: dict[str, str]) -> str:
    """`text` (a .env's contents) with each of `values` set: in place when the key is there."""
    out: list[str] = []
    done: set[str] = set()
    for line in text.splitlines():
        m = re.match(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=", line)
        key = m.group(1) if m else None
        if key in values:
            if key not in done:  # a key set twice: the first line becomes the value, later ones go
                out.append(f"{key}={quote(values[key])}")
                done.add(key)
            continue
        out.append(line)
    missing = [k for k in values if k not in done]
    if missing:
        if out and out[-1].strip():
            out.append("")
        out.append("# Written by `dispatch init`")
        out += [f"{k}={quote(values[k])}" for k in missing]
    return "\n".join(out) + "\n"


def write(path: Path, values: dict[str, str]) -> None:
    """Set `values` in the .env at `path` (created if missing), leaving it mode 0600."""
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    fd, tmp = tempfile.mkstemp(prefix=".env.", dir=path.parent)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(merge(old, values))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
