"""Where file tools may look: the owner's roots plus Dispatch's workspace, outbox and
inbox (files from the phone: readable and attachable, not writable).

A path is checked after resolving symlinks (so a link inside a root that points
out of it is refused), and secret places are refused even inside a root: SSH and
GPG keys, cloud credentials, keychains, password stores, browser profiles and
`.env` files. Every refusal says what was refused and why, so the model can tell
the owner instead of guessing.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path

from store.config import Settings
from tools.registry import ToolError

# Folder names that hold secrets wherever they appear.
SECRET_DIRS = {
    ".ssh", ".gnupg", ".aws", ".azure", ".kube", ".docker", ".password-store",
    ".mozilla", "keyrings", "Keychains", ".config/gcloud", ".config/google-chrome",
    ".config/chromium", ".config/BraveSoftware", ".config/microsoft-edge",
    "Google/Chrome", "BraveSoftware", "Firefox/Profiles", ".thunderbird",
}
# File names (globs) that are secrets wherever they appear.
SECRET_FILES = [
    ".env", ".env.*", "*.env", ".netrc", ".pgpass", ".npmrc", ".pypirc", ".git-credentials",
    "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", "*.pem", "*.key", "*.p12", "*.pfx",
    "*.kdbx", "*.keychain", "*.keychain-db", "credentials", "credentials.json",
    "Login Data", "Cookies",
]
# Harmless look-alikes that users expect to open.
NOT_SECRET = {".env.example", ".env.sample", ".env.template"}


def own_folders(settings: Settings) -> tuple[Path, Path, Path]:
    """Dispatch's own folders in DISPATCH_HOME, made if missing and resolved: the
    workspace, the outbox, and the inbox where files from the phone land. Only these
    three of DISPATCH_HOME open to tools (never its database or settings)."""
    own = []
    for p in (settings.workspace, settings.outbox, settings.inbox):
        p.mkdir(parents=True, exist_ok=True)
        own.append(p.resolve())
    return own[0], own[1], own[2]


def allowed_roots(settings: Settings) -> list[Path]:
    """The owner's roots, then Dispatch's own workspace, outbox and inbox."""
    return [*settings.roots, *own_folders(settings)]


# Compared without case: on macOS and Windows `~/.SSH/ID_RSA` or `KEY.PEM` open the
# very same files, and fnmatch only folds case on Windows.
_SECRET_DIRS_LOWER = {d.lower() for d in SECRET_DIRS}
_SECRET_FILES_LOWER = [p.lower() for p in SECRET_FILES]
_NOT_SECRET_LOWER = {n.lower() for n in NOT_SECRET}
# One regex for all the file globs: checking a name is one match, which matters
# when the indexer looks at 100,000 names.
_SECRET_FILE_RE = re.compile("|".join(fnmatch.translate(p) for p in _SECRET_FILES_LOWER))


def secret_file_name(name: str) -> bool:
    """True when a file called `name` holds secrets (the folder is checked apart)."""
    low = name.lower()
    return low not in _NOT_SECRET_LOWER and _SECRET_FILE_RE.match(low) is not None


def secret_reason(path: Path) -> str | None:
    """Why `path` is a secret place, or None."""
    parts = path.parts
    lower = [p.lower() for p in parts]
    for i, part in enumerate(parts):
        pair = "/".join(lower[i : i + 2])
        if lower[i] in _SECRET_DIRS_LOWER or pair in _SECRET_DIRS_LOWER:
            return f"it is inside {part!r}, which holds keys, credentials or a browser profile"
    name = path.name
    if secret_file_name(name):
        return f"{name!r} is a kind of file that holds secrets"
    return None


def resolve(settings: Settings, raw: str, *, must_exist: bool = True) -> Path:
    """The real path for `raw` if the agent may use it; ToolError otherwise.

    Relative paths are taken from the first root. `~` is expanded.
    """
    roots = allowed_roots(settings)
    if not raw or not raw.strip():
        raise ToolError("No path given.")
    candidate = Path(os.path.expanduser(raw.strip()))
    if not candidate.is_absolute():
        candidate = roots[0] / candidate
    real = candidate.resolve()
    if not any(real == r or real.is_relative_to(r) for r in roots):
        shown = ", ".join(str(r) for r in roots)
        via = " (through a symbolic link)" if real != Path(os.path.abspath(candidate)) else ""
        raise ToolError(f"{raw} is outside the folders Dispatch may use{via}. Allowed: {shown}.")
    for p in (Path(os.path.abspath(candidate)), real):
        reason = secret_reason(p)
        if reason:
            raise ToolError(f"Refused: {raw} — {reason}.")
    if must_exist and not real.exists():
        raise ToolError(f"{raw} does not exist.")
    return real


def is_secret(path: Path) -> bool:
    return secret_reason(path) is not None


def writable_folders(settings: Settings) -> list[Path]:
    """Where tools may write: the outbox, the workspace, and DISPATCH_WRITABLE_ROOTS
    (only those that are also roots: a folder the agent may write but not read makes
    no sense, and `Settings.problems` says so)."""
    workspace, outbox, _inbox = own_folders(settings)  # the inbox keeps what the phone sent as it was
    extra = [w for w in settings.writable_roots if any(w == r or w.is_relative_to(r) for r in settings.roots)]
    return [outbox, workspace, *extra]


def resolve_for_write(settings: Settings, raw: str) -> Path:
    """The real path a produced file may be written to; ToolError otherwise.

    A bare name ("recap.xlsx") or a relative path lands in the outbox; an absolute
    path must lie in the outbox, the workspace or a writable root, checked after
    resolving symlinks (so a link in the outbox cannot point the write elsewhere),
    and never at a secret place."""
    if not raw or not raw.strip():
        raise ToolError("No file name given.")
    candidate = Path(os.path.expanduser(raw.strip()))
    if not candidate.is_absolute():
        candidate = own_folders(settings)[1] / candidate  # the outbox
    real = candidate.resolve()
    folders = writable_folders(settings)
    if real in folders or not any(real.is_relative_to(f) for f in folders):
        extra = [str(w) for w in folders[2:]]
        where = f"its outbox ({folders[0]}) and workspace" + (f", and {', '.join(extra)}" if extra else "")
        raise ToolError(
            f"{raw}: Dispatch may write only to {where}. Give a bare file name to save it in the outbox"
            + ("" if extra else ", or ask the owner to add the folder to DISPATCH_WRITABLE_ROOTS") + "."
        )
    for p in (Path(os.path.abspath(candidate)), real):
        reason = secret_reason(p)
        if reason:
            raise ToolError(f"Refused: {raw} — {reason}.")
    if real.is_dir():
        raise ToolError(f"{raw} is a folder; give a file name.")
    return real
