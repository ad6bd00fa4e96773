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

# The one denylist. Every file tool goes through it: reading (read_text), listing
# (list_folder, find_files), indexing (tools.filesystem.index: walk and extract), and
# attaching or sending (tools.mailbox.compose, send_file). Entries are compared
# without case. A folder entry with a "/" is a run of consecutive folder names
# (".config/gh" matches ~/.config/gh but not ~/Music/gh); one without is a folder name
# anywhere.
SECRET_DIRS = {
    # keys and key stores
    ".ssh", ".gnupg", ".password-store", "keyrings", "Keychains", ".pki", ".local/share/keyrings",
    # cloud and CLI credentials
    ".aws", ".azure", ".kube", ".docker", ".config/gcloud", ".config/gh", ".config/hub", ".config/rclone",
    ".config/doctl", ".config/op", ".op", ".config/heroku", ".terraform.d", ".cargo/credentials",
    ".config/configstore", ".config/ngrok", ".ngrok2", ".oci", ".config/hcloud", ".config/scw",
    ".gem/credentials", ".config/containers/auth", ".config/netlify", ".config/vercel", ".config/flyctl",
    ".fly", ".config/exercism", ".config/Bitwarden", ".config/Bitwarden CLI", ".config/1Password",
    ".local/share/fish", ".electrum", ".bitcoin", ".ethereum", ".config/Signal", ".mozilla",
    ".thunderbird", ".icedove",
    # browser profiles: Linux, macOS (Application Support), Windows (AppData), snap, flatpak
    ".config/google-chrome", ".config/google-chrome-beta", ".config/google-chrome-unstable",
    ".config/chromium", "snap/chromium", ".config/BraveSoftware", "BraveSoftware",
    ".config/microsoft-edge", ".config/microsoft-edge-beta", ".config/microsoft-edge-dev",
    ".config/vivaldi", ".config/vivaldi-snapshot", ".config/opera", ".config/opera-beta",
    ".config/opera-developer", ".config/yandex-browser", ".config/epiphany", ".config/falkon",
    ".config/qutebrowser", ".local/share/qutebrowser", ".var/app",
    "Google/Chrome", "Google/Chrome Beta", "Google/Chrome Canary", "Application Support/Chromium",
    "Local/Chromium", "Application Support/Firefox", "Firefox/Profiles", "Mozilla/Firefox",
    "Application Support/Microsoft Edge", "Microsoft/Edge", "Application Support/Vivaldi", "Local/Vivaldi",
    "com.operasoftware.Opera", "com.operasoftware.OperaGX", "Opera Software", "Library/Safari",
    "com.apple.Safari", "Library/Cookies", "Application Support/Arc", "Yandex/YandexBrowser",
}
# File names (globs) that are secrets wherever they appear.
SECRET_FILES = [
    # environment and credential files of common tools
    ".env", ".env.*", "*.env", ".netrc", "_netrc", ".pgpass", ".my.cnf", ".mylogin.cnf", ".npmrc", ".yarnrc",
    ".yarnrc.yml", ".pypirc", ".git-credentials", ".vault-token", ".s3cfg", ".boto", "rclone.conf",
    ".terraformrc", "terraform.rc", "credentials.tfrc.json", ".dockercfg", ".htpasswd", ".smbcredentials",
    ".lftprc", ".fetchmailrc", ".msmtprc", ".muttrc", ".authinfo", ".authinfo.gpg",
    "credentials", "credentials.json", "credentials.toml", "client_secret*.json", "service-account*.json",
    "token.json", "*.tfstate", "*.tfstate.backup", "wallet.dat",
    # shell and REPL histories
    ".bash_history", ".zsh_history", ".zhistory", ".sh_history", ".history", ".histfile", "fish_history",
    ".python_history", ".psql_history", ".mysql_history", ".sqlite_history", ".node_repl_history",
    ".rediscli_history", ".irb_history", ".lesshst", ".viminfo", "ConsoleHost_history.txt", "*_history",
    # private keys and key stores, by name
    "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", "id_xmss*", "*.pem", "*.key", "*.ppk",
    "*.p12", "*.pfx", "*.jks", "*.keystore", "*.p8", "secring.*", "*.gpg", "*.pgp", "*.kdbx",
    "*.keychain", "*.keychain-db", "*.ovpn", "*.age",
    # browser stores, wherever a profile is
    "Login Data", "Login Data For Account", "Cookies", "Web Data", "Local State", "key3.db", "key4.db",
    "logins.json", "cookies.sqlite", "signons.sqlite", "cert9.db", "Cookies.binarycookies",
]
# Harmless look-alikes that users expect to open.
NOT_SECRET = {".env.example", ".env.sample", ".env.template", ".env.dist"}
# Files whose content decides: a private key by its armour, and a Git config with a
# password or token in a remote URL. Read (the first `CONTENT_SCAN_BYTES`) when read,
# attached, sent or indexed.
CONTENT_CHECKED = {".asc", ".txt", ".conf", ".cfg", ".ini", ".json", ".yml", ".yaml", ".toml", ".xml", ".md", ""}
CONTENT_SCAN_BYTES = 1024 * 1024
_PRIVATE_KEY = re.compile(
    rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|PuTTY-User-Key-File-\d|"
    rb"-----BEGIN PGP PRIVATE KEY BLOCK-----"
)
# scheme://user:password@host or scheme://token@host (a URL holding a credential)
_URL_CREDENTIAL = re.compile(rb"[a-z][a-z0-9+.-]*://[^/\s@:'\"]+(?::[^/\s@'\"]*)?@[^\s/]", re.I)


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
# Plus SSH keys under any name that starts "id_" and has no extension (id_work, id_github).
_SECRET_FILE_RE = re.compile("|".join([*(fnmatch.translate(p) for p in _SECRET_FILES_LOWER), r"id_[^.]+\Z"]))


def secret_file_name(name: str) -> bool:
    """True when a file called `name` holds secrets (the folder is checked apart)."""
    low = name.lower()
    return low not in _NOT_SECRET_LOWER and _SECRET_FILE_RE.match(low) is not None


def secret_reason(path: Path) -> str | None:
    """Why `path` is a secret place, or None (by its name and folders, plus the content
    of a `.git/config`, which is small and may hold a token in a remote URL)."""
    parts = path.parts
    lower = [p.lower() for p in parts]
    for i, part in enumerate(parts):
        pair = "/".join(lower[i : i + 2])
        triple = "/".join(lower[i : i + 3])
        for n, run in ((1, lower[i]), (2, pair), (3, triple)):
            if run in _SECRET_DIRS_LOWER:
                shown = "/".join(parts[i : i + n])
                return f"it is inside {shown!r}, which holds keys, credentials or a browser profile"
    name = path.name
    if secret_file_name(name):
        return f"{name!r} is a kind of file that holds secrets"
    if len(lower) >= 2 and lower[-2:] == [".git", "config"] and _git_config_has_credential(path):
        return "this Git config has a password or token in a remote URL"
    return None


def _git_config_has_credential(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return _URL_CREDENTIAL.search(fh.read(CONTENT_SCAN_BYTES)) is not None
    except OSError:
        return False


def secret_in(data: bytes | str) -> str | None:
    """Why this content is a secret (a private key), or None."""
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    m = _PRIVATE_KEY.search(raw)
    if m:
        what = "a PuTTY private key" if raw[m.start():m.start() + 5] == b"PuTTY" else "a private key"
        return f"it contains {what} ({m.group(0)[:40].decode('ascii', 'replace')}…)"
    return None


def check_content(path: Path, shown_as: str = "") -> None:
    """ToolError if the file's first megabyte holds a private key. Used where a file's
    bytes leave the tool: read, attach, send; the indexer uses `secret_in` on its text."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(CONTENT_SCAN_BYTES)
    except OSError:
        return
    reason = secret_in(head)
    if reason:
        raise ToolError(f"Refused: {shown_as or path} — {reason}.")


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
