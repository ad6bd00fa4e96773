"""Where files from the phone land: DISPATCH_HOME/inbox/<date>/, shared by every front end."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path


def inbox_path(inbox: Path, name: str) -> Path:
    """A new file in today's inbox folder; a name from the phone never escapes it, and
    never replaces an earlier file (`report (2).pdf`)."""
    folder = inbox / datetime.now().strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^\w.\- ]+", "_", Path(name).name).strip(". ") or "file"
    path, n = folder / safe, 2
    while path.exists():
        path, n = folder / f"{Path(safe).stem} ({n}){Path(safe).suffix}", n + 1
    return path
