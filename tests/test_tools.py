"""Tools: the registry derives schemas from plain typed functions, the file tools see
only the allowed roots (after symlinks) and never secrets, and memory notes persist.

Every file test goes through `Tool.call`, exactly as the runner calls a tool."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Optional

import pytest

from store.db import Store
from tests.helpers import call, files_settings, refused
from tools.registry import Effect, Registry, ToolContext, ToolError, tool
from tools.catalogue import default_registry

# Tools written for the registry tests ---------------------------------------------


def search_mail(
    ctx: ToolContext,
    query: str,
    limit: int = 10,
    unread_only: bool = False,
    folders: list[str] = [],  # noqa: B006 - pydantic copies defaults
    order: Literal["newest", "oldest"] = "newest",
    sender: Optional[str] = None,
) -> str:
    """Search the owner's mailbox for messages.

    Looks at subjects and bodies.

    Args:
        query: Words to look for.
        limit: How many messages to return at most.
        unread_only: Only messages not read yet.
        folders: Mail folders to search; empty searches all.
        order: Which messages come first.
        sender: Only messages from this address.
    """
    return (
        f"origin={ctx.origin} task={ctx.task_id} query={query} limit={limit} unread={unread_only} "
        f"folders={folders} order={order} sender={sender}"
    )


async def summarise(text: str, words: int) -> dict[str, Any]:
    """Shorten a text.

    Args:
        text: The text.
        words: About how many words to keep.
    """
    return {"summary": " ".join(text.split()[:words]), "ünïcode": True}


def undocumented(path: str) -> str:
    return path


def only_args_section(path: str) -> str:
    """Args:
    path: A path.
    """
    return path


# Fixtures (`root` and `ctx` are in conftest.py) -----------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder next to the root that the agent must never see into."""
    o = tmp_path / "private"
    o.mkdir()
    (o / "outside.txt").write_text("bank PIN 1234")
    (o / "deep").mkdir()
    (o / "deep" / "leak-report.txt").write_text("salary list")
    return o


@pytest.fixture(scope="module")
def registry() -> Registry:
    return default_registry()


# 1. Schema derivation ------------------------------------------------------------


def test_schema_types_required_and_descriptions() -> None:
    t = Registry().add(search_mail, connector="x", effect="read")
    assert (t.name, t.connector, t.effect, t.ctx_param) == ("search_mail", "x", "read", "ctx")
    assert t.description == "Search the owner's mailbox for messages.\n\nLooks at subjects and bodies."
    schema = t.input_schema
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert list(props) == ["query", "limit", "unread_only", "folders", "order", "sender"], "ctx is hidden"
    assert schema["required"] == ["query"]
    assert props["query"]["type"] == "string"
    assert props["limit"]["type"] == "integer" and props["limit"]["default"] == 10
    assert props["unread_only"]["type"] == "boolean" and props["unread_only"]["default"] is False
    assert props["folders"]["type"] == "array" and props["folders"]["items"] == {"type": "string"}
    assert props["order"]["enum"] == ["newest", "oldest"] and props["order"]["type"] == "string"
    assert {"type": "string"} in props["sender"]["anyOf"] and {"type": "null"} in props["sender"]["anyOf"]
    assert props["sender"]["default"] is None
    assert props["query"]["description"] == "Words to look for."
    assert props["limit"]["description"] == "How many messages to return at most."
    assert props["folders"]["description"] == "Mail folders to search; empty searches all."
    assert props["sender"]["description"] == "Only messages from this address."
    assert "title" not in repr(schema), "pydantic titles cost tokens and say nothing"
    assert t.schema() == {"name": "search_mail", "description": t.description, "input_schema": schema}


async def test_context_is_filled_at_call_time_and_defaults_apply(ctx: ToolContext) -> None:
    t = Registry().add(search_mail, connector="mail", effect=Effect.READ)
    out = await t.call(ctx, {"query": "invoice", "order": "oldest", "folders": ["INBOX"]})
    assert out == (
        "origin=console:local task=1 query=invoice limit=10 unread=False "
        "folders=['INBOX'] order=oldest sender=None"
    )
    # The model cannot pass the context itself.
    with pytest.raises(ToolError, match="ctx"):
        await t.call(ctx, {"query": "x", "ctx": "forged"})


async def test_async_tool_and_non_text_result(ctx: ToolContext) -> None:
    t = Registry().add(summarise, connector="docs", effect="read")
    assert t.ctx_param is None
    assert t.input_schema["required"] == ["text", "words"]
    out = await t.call(ctx, {"text": "one two three four", "words": 2})
    assert out == '{"summary": "one two", "ünïcode": true}', "JSON, unicode kept"


def test_tool_without_docstring_is_refused() -> None:
    with pytest.raises(ValueError, match="undocumented.*docstring"):
        Registry().add(undocumented, connector="x", effect="read")
    with pytest.raises(ValueError, match="docstring"):
        Registry().add(only_args_section, connector="x", effect="read")


def test_validate_names_the_bad_field() -> None:
    t = Registry().add(search_mail, connector="x", effect="read")
    cases = {
        "limit": {"query": "q", "limit": "lots"},
        "order": {"query": "q", "order": "random"},
        "folders": {"query": "q", "folders": "INBOX"},
        "query": {"limit": 3},  # required and missing
        "surprise": {"query": "q", "surprise": 1},  # unknown extra argument
    }
    for field, args in cases.items():
        with pytest.raises(ToolError) as info:
            t.validate(args)
        message = str(info.value)
        assert message.startswith("Invalid arguments for search_mail")
        assert re.search(rf"\b{field}\b", message), (field, message)
    with pytest.raises(ToolError, match="x: Extra inputs are not permitted"):
        t.validate({"query": "q", "x": 1})
    # Good arguments come back complete, with defaults, and lax where that is harmless.
    assert t.validate({"query": "q", "limit": "5"}) == {
        "query": "q", "limit": 5, "unread_only": False, "folders": [], "order": "newest", "sender": None,
    }


def test_registry_order_lookup_and_duplicates() -> None:
    reg = Registry()
    reg.add(summarise, connector="docs", effect="read")
    reg.add(search_mail, connector="mail", effect="read")
    reg.add(search_mail, connector="mail", effect="read", name="another_search")
    assert [t.name for t in reg.all()] == ["another_search", "search_mail", "summarise"]
    assert "summarise" in reg and "nope" not in reg and reg.get("nope") is None
    with pytest.raises(ValueError, match="two tools"):
        reg.add(summarise, connector="docs", effect="read")


def test_tool_decorator_keeps_the_function_and_its_metadata() -> None:
    @tool(connector="notes", effect=Effect.SEND, edit_field="text", name="post_note")
    def send(text: str) -> str:
        """Post a note.

        Args:
            text: The note.
        """
        return text

    assert send("hi") == "hi", "the decorated function is unchanged"
    t = Registry().add(send)
    assert (t.name, t.connector, t.effect, t.edit_field) == ("post_note", "notes", Effect.SEND, "text")
    assert t.render_preview({"text": "hello", "n": [1]}) == 'post_note\ntext: hello\nn: [1]'


def test_default_registry(registry: Registry) -> None:
    names = [t.name for t in registry.all()]
    assert {"list_folder", "find_files", "read_text", "remember", "forget"} <= set(names)
    assert names == sorted(names)
    effects = {t.name: (t.connector, t.effect) for t in registry.all()}
    assert effects["read_text"] == ("files", Effect.READ)
    assert effects["remember"] == ("memory", Effect.WRITE)
    for t in registry.all():
        assert t.description and "ctx" not in t.input_schema["properties"]
        assert all(p.get("description") for p in t.input_schema["properties"].values()), t.name
    # Schemas are identical between builds, so the prompt's tools block caches.
    assert [t.schema() for t in default_registry().all()] == [t.schema() for t in registry.all()]


# 2. File confinement ---------------------------------------------------------------


async def test_reads_a_file_in_a_root(ctx: ToolContext, root: Path) -> None:
    (root / "plan.md").write_text("# Plan\nShip it.\n", encoding="utf-8")
    assert await call(ctx, "read_text", path=str(root / "plan.md")) == "# Plan\nShip it.\n"


async def test_dotdot_escape_is_refused(ctx: ToolContext, root: Path, outside: Path) -> None:
    for raw in (f"{root}/../private/outside.txt", "../private/outside.txt", str(outside / "outside.txt")):
        message = await refused(ctx, "read_text", path=raw)
        assert "outside the folders Dispatch may use" in message, raw
        assert "symbolic link" not in message
        assert "bank PIN" not in message
    assert "outside the folders" in await refused(ctx, "list_folder", path=f"{root}/..")
    assert "outside the folders" in await refused(ctx, "find_files", name="txt", folder=str(outside))


async def test_symlinked_file_pointing_out_is_refused(ctx: ToolContext, root: Path, outside: Path) -> None:
    (root / "innocent.txt").symlink_to(outside / "outside.txt")
    message = await refused(ctx, "read_text", path=str(root / "innocent.txt"))
    assert "outside the folders" in message and "symbolic link" in message
    assert "bank PIN" not in message


async def test_symlinked_folder_pointing_out_is_refused(ctx: ToolContext, root: Path, outside: Path) -> None:
    (root / "shortcut").symlink_to(outside, target_is_directory=True)
    for name, args in (
        ("read_text", {"path": str(root / "shortcut" / "outside.txt")}),
        ("read_text", {"path": "shortcut/deep/leak-report.txt"}),
        ("list_folder", {"path": str(root / "shortcut")}),
        ("find_files", {"name": "report", "folder": str(root / "shortcut")}),
    ):
        message = await refused(ctx, name, **args)
        assert "outside the folders" in message and "symbolic link" in message, (name, message)


async def test_symlink_inside_the_root_to_a_secret_is_refused(ctx: ToolContext, root: Path) -> None:
    (root / ".ssh").mkdir()
    (root / ".ssh" / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----")
    (root / "notes.txt").symlink_to(root / ".ssh" / "id_rsa")
    message = await refused(ctx, "read_text", path="notes.txt")
    assert message.startswith("Refused") and ".ssh" in message
    assert "PRIVATE KEY" not in message


async def test_ssh_keys_are_refused_even_inside_a_root(
    ctx: ToolContext, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ssh = root / ".ssh"
    ssh.mkdir()
    (ssh / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----")
    (ssh / "config").write_text("Host *")
    # The owner shared their whole home folder.
    monkeypatch.setenv("HOME", str(root))
    for raw in ("~/.ssh/id_rsa", str(ssh / "id_rsa"), ".ssh/config", f"{root}/x/../.ssh/id_rsa"):
        message = await refused(ctx, "read_text", path=raw)
        assert message.startswith("Refused") and "'.ssh'" in message, raw
        assert "PRIVATE KEY" not in message
    assert "Refused" in await refused(ctx, "list_folder", path="~/.ssh")
    assert "Refused" in await refused(ctx, "find_files", name="id", folder="~/.ssh")


async def test_secret_files_refused_and_lookalikes_allowed(ctx: ToolContext, root: Path) -> None:
    (root / "project").mkdir()
    secrets = {
        "project/.env": "API_KEY=live", "project/prod.env": "X=1", "project/.env.local": "X=2",
        "server.pem": "-----BEGIN CERTIFICATE-----", "project/.git-credentials": "https://u:p@h",
        "backup.kdbx": "vault", "project/.aws/credentials": "aws_secret",
    }
    for rel, text in secrets.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for rel in secrets:
        message = await refused(ctx, "read_text", path=rel)
        assert message.startswith("Refused"), rel
    assert "holds secrets" in await refused(ctx, "read_text", path="project/.env")
    (root / "project" / ".env.example").write_text("API_KEY=put-yours-here\n")
    assert await call(ctx, "read_text", path="project/.env.example") == "API_KEY=put-yours-here\n"


async def test_secret_names_are_matched_without_case(ctx: ToolContext, root: Path) -> None:
    # On macOS and Windows these names open the very same files as .ssh/id_rsa and key.pem.
    (root / ".SSH").mkdir()
    (root / ".SSH" / "ID_RSA").write_text("key")
    (root / "KEY.PEM").write_text("key")
    (root / ".ENV").write_text("X=1")
    for rel in (".SSH/ID_RSA", "KEY.PEM", ".ENV"):
        assert (await refused(ctx, "read_text", path=rel)).startswith("Refused"), rel


async def test_find_files_never_lists_secrets_or_leaves_the_root(
    ctx: ToolContext, root: Path, outside: Path
) -> None:
    (root / "reports").mkdir()
    (root / "reports" / "q1-report.txt").write_text("q1")
    (root / "reports" / "report.env").write_text("X=1")
    (root / "report.pem").write_text("cert")
    (root / ".ssh").mkdir()
    (root / ".ssh" / "report-key").write_text("key")
    (root / ".ssh" / "id_rsa").write_text("key")
    (root / "linked").symlink_to(outside, target_is_directory=True)  # holds deep/leak-report.txt
    found = await call(ctx, "find_files", name="report")
    # One line per file: its path, then (size, modified).
    assert [line.split("  (")[0] for line in found.splitlines()] == [str(root / "reports" / "q1-report.txt")]
    assert await call(ctx, "find_files", name="id_rsa") == "No file names match 'id_rsa'."
    globbed = await call(ctx, "find_files", name="*.TXT")
    assert str(root / "reports" / "q1-report.txt") in globbed and "leak" not in globbed
    assert "Give part of a file name" in await refused(ctx, "find_files", name="  ")


async def test_list_folder_hides_secrets(ctx: ToolContext, root: Path) -> None:
    (root / "budget.csv").write_text("a,b\n")
    (root / ".env").write_text("X=1")
    (root / ".env.example").write_text("X=")
    (root / "site.key").write_text("k")
    (root / ".ssh").mkdir()
    (root / "Archive").mkdir()
    listing = await call(ctx, "list_folder", path=str(root))
    names = [line.split("  ")[0] for line in listing.splitlines()[1:]]
    assert names == ["Archive/", ".env.example", "budget.csv"], listing
    assert listing.splitlines()[0] == f"{root} — 3 entries"
    assert "(4 B," in listing, "sizes are shown"
    top = await call(ctx, "list_folder")
    assert str(root) in top and str(ctx.settings.workspace) in top and str(ctx.settings.outbox) in top
    assert "is a file, not a folder" in await refused(ctx, "list_folder", path="budget.csv")
    (root / "empty").mkdir()
    assert await call(ctx, "list_folder", path="empty") == f"{root / 'empty'} is empty."


async def test_relative_paths_start_at_the_first_root(tmp_path: Path, root: Path) -> None:
    second = tmp_path / "Second"
    second.mkdir()
    (root / "a.txt").write_text("first root")
    (second / "a.txt").write_text("second root")
    settings = files_settings(tmp_path, root, second)
    store = Store(settings.db_url)
    try:
        ctx = ToolContext(settings, store)
        assert await call(ctx, "read_text", path="a.txt") == "first root"
        assert await call(ctx, "read_text", path=str(second / "a.txt")) == "second root"
    finally:
        store.close()


async def test_workspace_and_outbox_are_allowed_without_roots(tmp_path: Path, outside: Path) -> None:
    settings = files_settings(tmp_path)
    assert settings.roots == []
    store = Store(settings.db_url)
    try:
        ctx = ToolContext(settings, store)
        listing = await call(ctx, "list_folder")
        assert listing.splitlines()[1:] == [str(settings.workspace.resolve()), str(settings.outbox.resolve()),
                                            str(settings.inbox.resolve())]
        (settings.outbox / "memo.md").write_text("memo")
        (settings.workspace / "scratch.txt").write_text("scratch")
        assert await call(ctx, "read_text", path=str(settings.outbox / "memo.md")) == "memo"
        assert await call(ctx, "read_text", path="scratch.txt") == "scratch", "relative: the workspace"
        assert "memo.md" in await call(ctx, "find_files", name="memo")
        assert "outside the folders" in await refused(ctx, "read_text", path=str(outside / "outside.txt"))
        # The database and anything else in the data folder stay out of reach.
        assert "outside the folders" in await refused(ctx, "read_text", path=str(settings.home / "dispatch.db"))
    finally:
        store.close()


async def test_missing_binary_folder_and_bad_offset(ctx: ToolContext, root: Path) -> None:
    assert "does not exist" in await refused(ctx, "read_text", path="nope.txt")
    assert "does not exist" in await refused(ctx, "list_folder", path="nowhere")
    assert "No path given" in await refused(ctx, "read_text", path="  ")
    (root / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)))
    assert "binary" in await refused(ctx, "read_text", path="photo.jpg")
    (root / "Folder").mkdir()
    message = await refused(ctx, "read_text", path="Folder")
    assert "is a folder" in message and "list_folder" in message
    (root / "short.txt").write_text("short")
    assert "offset" in await refused(ctx, "read_text", path="short.txt", offset=-5)


PAGE = 19_000  # a page and its note fit the runner's 20,000-character tool result
NOTE = re.compile(r"\n\n\[\.\.\. more follows\. Read the next page with offset=(\d+)\.\]$")


async def _read_all(ctx: ToolContext, path: str, limit: int) -> tuple[str, int]:
    """Page through a file the way the model would; returns the text and the page count."""
    text, offset, pages = "", 0, 0
    while True:
        page = await call(ctx, "read_text", path=path, offset=offset, limit=limit)
        pages += 1
        m = NOTE.search(page)
        if not m:
            return text + page, pages
        body = page[: m.start()]
        assert len(body) == limit
        text += body
        assert int(m.group(1)) == offset + len(body), "the next offset continues exactly"
        offset = int(m.group(1))


async def test_read_text_pages_a_long_file(ctx: ToolContext, root: Path) -> None:
    lines = [f"line {i:05d}: the quick brown fox" for i in range(2000)]
    original = "\n".join(lines) + "\n"
    (root / "long.txt").write_text(original, encoding="utf-8")
    first = await call(ctx, "read_text", path="long.txt")
    m = NOTE.search(first)
    assert m is not None and int(m.group(1)) == PAGE, "a page is 19000 characters by default"
    assert first[:PAGE] == original[:PAGE]
    second = await call(ctx, "read_text", path="long.txt", offset=PAGE)
    assert second.startswith(original[PAGE:PAGE + 100])
    text, pages = await _read_all(ctx, "long.txt", limit=PAGE)
    assert text == original and pages == -(-len(original) // PAGE)
    # Limits above the cap are capped; reading past the end says so.
    assert NOTE.search(await call(ctx, "read_text", path="long.txt", limit=10**9)).group(1) == str(PAGE)  # type: ignore[union-attr]
    past = await call(ctx, "read_text", path="long.txt", offset=len(original) + 10)
    assert "nothing after offset" in past


async def test_read_text_pages_multibyte_text_cleanly(ctx: ToolContext, root: Path) -> None:
    original = "".join(f"Größe {i}: 東京 → 🚀 naïve café\n" for i in range(700))
    (root / "unicode.txt").write_text(original, encoding="utf-8")
    assert len(original.encode("utf-8")) > len(original), "multi-byte on purpose"
    for limit in (997, 4096):
        text, pages = await _read_all(ctx, "unicode.txt", limit=limit)
        assert text == original and "\ufffd" not in text, limit
        assert pages == -(-len(original) // limit)


# 3. Memory -----------------------------------------------------------------------


async def test_remember_and_forget(ctx: ToolContext) -> None:
    store = ctx.store
    out = await call(ctx, "remember", note="  The invoice template is ~/Documents/Templates/invoice.docx  ")
    m = re.fullmatch(r"Remembered as note (\d+)\.", out)
    assert m, out
    note_id = int(m.group(1))
    await call(ctx, "remember", note="Sam prefers short replies.")
    notes = store.memory_notes()
    assert [n.text for n in notes] == [
        "The invoice template is ~/Documents/Templates/invoice.docx", "Sam prefers short replies.",
    ]
    assert notes[0].id == note_id

    assert await call(ctx, "remember", note="Sam prefers short replies.") == "Already remembered."
    assert len(store.memory_notes()) == 2, "no duplicate"

    assert "empty" in await refused(ctx, "remember", note="   ")
    assert "under 500 characters" in await refused(ctx, "remember", note="x" * 501)
    assert len(store.memory_notes()) == 2

    assert await call(ctx, "forget", note_id=note_id) == f"Forgot note {note_id}."
    assert [n.text for n in store.memory_notes()] == ["Sam prefers short replies."]
    assert f"no note {note_id}" in await refused(ctx, "forget", note_id=note_id), "already forgotten"
    assert "no note 9999" in await refused(ctx, "forget", note_id=9999)
    assert "note_id" in await refused(ctx, "forget", note_id="first")

    # A forgotten fact can be remembered again.
    await call(ctx, "remember", note="The invoice template is ~/Documents/Templates/invoice.docx")
    assert len(store.memory_notes()) == 2


async def test_memory_note_limit(ctx: ToolContext) -> None:
    from tools.memory import MAX_NOTES

    for i in range(MAX_NOTES):
        await call(ctx, "remember", note=f"fact {i}")
    assert "forget one first" in await refused(ctx, "remember", note="one too many")
    assert len(ctx.store.memory_notes()) == MAX_NOTES
