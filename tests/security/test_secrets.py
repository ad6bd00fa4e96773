"""Defect 5: with DISPATCH_ROOTS=~ nothing that holds a credential is read, listed,
indexed, found, attached or sent: one denylist (tools/filesystem/paths.py) of CLI and
cloud credentials, shell histories, browser profiles and private keys by name, plus
a content check for private keys under any name and for a Git config with a token."""

from __future__ import annotations

from pathlib import Path

import pytest

from store.db import Store
from tests.helpers import call, files_settings, refused
from tools.filesystem import index as idx
from tools.filesystem.paths import allowed_roots
from tools.mailbox.compose import describe_files
from tools.registry import ToolContext, ToolError

TOKEN = "gho_S3cr3tT0k3nTHATmustNEVERleak"
OPENSSH = f"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA{TOKEN}\n-----END OPENSSH PRIVATE KEY-----\n"
PGP = f"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF{TOKEN}\n-----END PGP PRIVATE KEY BLOCK-----\n"
PPK = f"PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nPrivate-Lines: 1\n{TOKEN}\n"

# Every one of these, found by the attack or of the same kind, holds the token.
SECRETS = {
    ".config/gh/hosts.yml": f"github.com:\n    oauth_token: {TOKEN}\n",
    ".vault-token": TOKEN,
    ".s3cfg": f"[default]\nsecret_key = {TOKEN}\n",
    ".config/rclone/rclone.conf": f"[drive]\ntoken = {TOKEN}\n",
    ".cargo/credentials.toml": f'[registry]\ntoken = "{TOKEN}"\n',
    ".cargo/credentials": f'[registry]\ntoken = "{TOKEN}"\n',
    ".terraform.d/credentials.tfrc.json": f'{{"credentials": {{"app.terraform.io": {{"token": "{TOKEN}"}}}}}}',
    ".my.cnf": f"[client]\npassword={TOKEN}\n",
    ".pgpass": f"db:5432:*:sam:{TOKEN}\n",
    ".netrc": f"machine api.example.com login sam password {TOKEN}\n",
    ".npmrc": f"//registry.npmjs.org/:_authToken={TOKEN}\n",
    ".pypirc": f"[pypi]\npassword = {TOKEN}\n",
    ".docker/config.json": f'{{"auths": {{"ghcr.io": {{"auth": "{TOKEN}"}}}}}}',
    ".kube/config": f"users:\n- user:\n    token: {TOKEN}\n",
    ".aws/credentials": f"aws_secret_access_key = {TOKEN}\n",
    ".config/gcloud/credentials.db": TOKEN,
    ".azure/accessTokens.json": TOKEN,
    ".bash_history": f"export GITHUB_TOKEN={TOKEN}\n",
    ".zsh_history": f": 1700000000:0;curl -H 'Authorization: {TOKEN}'\n",
    ".python_history": f"token = '{TOKEN}'\n",
    ".local/share/fish/fish_history": f"- cmd: export TOKEN={TOKEN}\n",
    ".config/google-chrome/Default/Preferences": TOKEN,
    ".config/chromium/Default/Bookmarks": TOKEN,
    ".mozilla/firefox/abcd.default/prefs.js": TOKEN,
    ".config/microsoft-edge/Default/History.txt": TOKEN,
    ".config/BraveSoftware/Brave-Browser/Default/notes.txt": TOKEN,
    ".config/vivaldi/Default/Preferences": TOKEN,
    ".config/opera/Preferences": TOKEN,
    "Library/Application Support/Google/Chrome/Default/notes.txt": TOKEN,
    "Library/Application Support/Firefox/Profiles/x.default/notes.txt": TOKEN,
    "Library/Application Support/Vivaldi/Default/notes.txt": TOKEN,
    "Library/Application Support/com.operasoftware.Opera/notes.txt": TOKEN,
    "Library/Safari/History.txt": TOKEN,
    "AppData/Local/Microsoft/Edge/User Data/notes.txt": TOKEN,
    "AppData/Roaming/Opera Software/Opera Stable/notes.txt": TOKEN,
    "profile-copy/Login Data": TOKEN,
    "keys/work.ppk": PPK,
    "keys/server.pem": OPENSSH,
    "keys/tls.key": OPENSSH,
    ".ssh/id_ed25519": OPENSSH,
    "keys/id_github": OPENSSH,
    ".gnupg/private-keys-v1.d/A1.key": TOKEN,
    # by content: innocent names
    "keys/backup.asc": PGP,
    "Documents/notes.txt": f"Server access\n\n{OPENSSH}",
    "Documents/deploy.yaml": "key: |\n  " + OPENSSH.replace("\n", "\n  "),
    "project/.git/config": f'[remote "origin"]\n\turl = https://sam:{TOKEN}@github.com/sam/app.git\n',
    "other/.git/config": f'[remote "origin"]\n\turl = https://{TOKEN}@github.com/sam/app.git\n',
}
# Look-alikes the owner expects to read.
HARMLESS = {
    "Documents/public.asc": "-----BEGIN PGP PUBLIC KEY BLOCK-----\nmQENBF\n-----END PGP PUBLIC KEY BLOCK-----\n",
    "Documents/id_card.pdf.txt": "scan notes",
    "Music/Vivaldi/four-seasons.txt": "Spring, Summer",
    "clean/.git/config": '[remote "origin"]\n\turl = https://github.com/sam/app.git\n',
    "Documents/about-keys.md": "Keys start with -----BEGIN and we never paste them.",
    "project/.env.example": "API_KEY=put-yours-here\n",
}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "sam"
    for rel, text in {**SECRETS, **HARMLESS}.items():
        (h / rel).parent.mkdir(parents=True, exist_ok=True)
        (h / rel).write_text(text)
    return h


@pytest.fixture
def ctx(tmp_path: Path, home: Path):
    settings = files_settings(tmp_path, home)  # DISPATCH_ROOTS=~
    store = Store(settings.db_url)
    yield ToolContext(settings, store, task_id=1, origin="console:local")
    store.close()


async def test_read_refuses_every_secret_and_reads_the_look_alikes(ctx, home):
    for rel in SECRETS:
        message = await refused(ctx, "read_text", path=str(home / rel))
        assert message.startswith("Refused") and TOKEN not in message, rel
    for rel, text in HARMLESS.items():
        assert await call(ctx, "read_text", path=str(home / rel)) == text, rel


async def test_listing_hides_secrets_and_refuses_secret_folders(ctx, home):
    listed = await call(ctx, "list_folder", path=str(home))
    for hidden in (".vault-token", ".s3cfg", ".bash_history", ".my.cnf", ".ssh", ".aws", ".gnupg"):
        assert hidden not in listed.split(), hidden
    assert "Documents/" in listed and "Music/" in listed
    for folder in (".config/gh", ".config/vivaldi", ".config/opera", "Library/Safari", ".mozilla"):
        assert (await refused(ctx, "list_folder", path=str(home / folder))).startswith("Refused"), folder
    assert "config" not in (await call(ctx, "list_folder", path=str(home / "project" / ".git"))).split()
    keys = await call(ctx, "list_folder", path=str(home / "keys"))
    assert "work.ppk" not in keys and "server.pem" not in keys and "id_github" not in keys


async def test_the_index_and_search_never_hold_a_secret(ctx, home):
    index = idx.FileIndex(ctx.settings.home)
    try:
        index.scan(allowed_roots(ctx.settings))
        stored = [t for (t,) in index.conn.execute("SELECT text FROM body")]
        names = [p for (p,) in index.conn.execute("SELECT path FROM files")]
    finally:
        index.close()
    assert stored and not any(TOKEN in t or "PRIVATE KEY" in t for t in stored)
    assert not any(p.endswith(("hosts.yml", ".ppk", ".pem", "rclone.conf", "Login Data")) for p in names)
    # notes.txt is a name the index may list, but its key text is not searchable
    found = await call(ctx, "find_files", text="OPENSSH")
    assert TOKEN not in found and "notes.txt" not in found
    assert TOKEN not in await call(ctx, "find_files", text=TOKEN[:12])
    assert "four-seasons.txt" in await call(ctx, "find_files", text="Spring")


async def test_attaching_or_sending_a_secret_is_refused(ctx, home):
    for rel in (".vault-token", "keys/backup.asc", "Documents/notes.txt", "keys/work.ppk",
                ".config/gh/hosts.yml", "project/.git/config"):
        with pytest.raises(ToolError, match="^Refused") as info:
            describe_files(ctx.settings, [str(home / rel)])
        assert TOKEN not in str(info.value)
        assert (await refused(ctx, "send_file", path=str(home / rel))).startswith("Refused"), rel


async def test_a_key_deep_inside_a_big_text_file_is_refused_on_the_page_that_holds_it(ctx, home):
    big = home / "Documents" / "big.log"
    filler = "an ordinary log line\n" * 60_000  # ~1.2 MB, past the first-megabyte check
    big.write_text(filler + OPENSSH)
    first = await call(ctx, "read_text", path=str(big))
    assert first.startswith("an ordinary log line")
    message = await refused(ctx, "read_text", path=str(big), offset=len(filler) - 100)
    assert "private key" in message and TOKEN not in message
