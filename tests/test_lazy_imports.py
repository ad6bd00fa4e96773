"""Heavy libraries load when first used, not at start-up, and the tools that need them
still work on first use (issue 16: idle memory and start-up time).

Each check runs in a fresh interpreter (a subprocess): this pytest process has long
since imported everything.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from tests.helpers import REPO, env_for
from tests.office_files import make_docx, make_pdf

# Never imported by the registry, the catalogue or `dispatch run` before they are needed.
LAZY = ("openpyxl", "docx", "pptx", "pypdf", "PIL", "mss", "pyautogui", "googleapiclient", "google.auth",
        "mcp", "mcp_types", "jsonschema", "anthropic", "faster_whisper")

FIRST_USE = r"""
import asyncio, json, sys
from store.config import Settings
from store.db import Store
from tools.catalogue import default_registry
from tools.registry import ToolContext
import agent.core, bot.ops.run  # everything `dispatch run` imports before it polls

LAZY = json.loads(sys.argv[1])
home, root = sys.argv[2], sys.argv[3]
reg = default_registry()
schemas = {t.name: t.schema() for t in reg.all()}  # every schema is derived at start-up
at_start = sorted(m for m in LAZY + ["slack_bolt", "slack_sdk"] if m in sys.modules)

s = Settings(_env_file=None, ANTHROPIC_API_KEY="k", DISPATCH_HOME=home, DISPATCH_ROOTS=root)
ctx = ToolContext(s, Store(s.db_url), task_id=1, origin="console:local")
call = lambda tool_name, **args: asyncio.run(reg.get(tool_name).call(ctx, args))
out = {
    "at_start": at_start,
    "schemas": sorted(schemas),
    "sheet": call("make_spreadsheet", name="q.xlsx", rows=[["Month", "Sales"], ["Jan", 10], ["Feb", 12]]),
    "memo": call("make_document", name="memo.docx", markdown="# Memo\n\nBudget is **approved**."),
    "deck": call("make_deck", name="d.pptx", slides=[{"title": "Q3", "bullets": ["Sales up"]}]),
    "read_docx": call("read_text", path=root + "/notes.docx"),
    "read_pdf": call("read_text", path=root + "/report.pdf"),
}
from agent import media
block = media.image_block(__import__("pathlib").Path(root) / "dot.png")[0]
out["image"] = block["source"]["media_type"]
out["after"] = sorted(m for m in LAZY if m in sys.modules)
print(json.dumps(out))
"""


async def run_python(code: str, *args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_tools_load_their_libraries_on_first_use_and_work(tmp_path):
    root = tmp_path / "Documents"
    root.mkdir()
    make_pdf(root / "report.pdf", ["Quarterly report: revenue rose 12 percent"])
    make_docx(root / "notes.docx", paragraphs=3)
    # A 1x1 PNG written by hand, so this test process need not be the one to use Pillow.
    (root / "dot.png").write_bytes(bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e5270ade0000000049454e44ae426082"))
    code, out, err = await run_python(FIRST_USE, json.dumps(list(LAZY)), str(tmp_path / "home"), str(root),
                                      env=env_for(tmp_path), cwd=tmp_path)
    assert code == 0, err
    got = json.loads(out.strip().splitlines()[-1])
    assert got["at_start"] == [], f"imported at start-up: {got['at_start']}"
    assert {"read_text", "make_spreadsheet", "make_document", "make_deck", "slack_post", "send_email",
            "computer", "drive_upload", "drive_read"} <= set(got["schemas"])
    assert got["sheet"].startswith("Saved ") and "q.xlsx" in got["sheet"] and "2 rows" in got["sheet"]
    assert got["memo"].startswith("Saved ") and "memo.docx" in got["memo"]
    assert got["deck"].startswith("Saved ") and "d.pptx" in got["deck"]
    assert "Quarterly report: revenue rose 12 percent" in got["read_pdf"]
    assert "Revenue grew in every region." in got["read_docx"]
    assert got["image"] == "image/png"
    # Writers run in this process and import their library on first use; readers parse in the worker.
    assert {"openpyxl", "docx", "pptx", "PIL"} <= set(got["after"])
    assert "anthropic" not in got["after"] and "mcp" not in got["after"]
    import openpyxl

    wb = openpyxl.load_workbook(tmp_path / "home" / "outbox" / "q.xlsx")
    assert [[c.value for c in row] for row in wb.active.iter_rows(max_row=3, max_col=2)] == \
        [["Month", "Sales"], ["Jan", 10], ["Feb", 12]]


RUN_AND_REPORT = r"""
import asyncio, json, signal, sys
from pathlib import Path
out = Path(sys.argv[1])

def report(*_):  # SIGUSR1: what is imported now
    out.write_text(json.dumps(sorted(sys.modules)))

signal.signal(signal.SIGUSR1, report)
from bot.ops.run import run
from store.config import Settings
asyncio.run(run(Settings(), terminal=False))
"""


async def modules_now(proc: asyncio.subprocess.Process, path: Path) -> set[str]:
    path.unlink(missing_ok=True)
    proc.send_signal(signal.SIGUSR1)
    for _ in range(500):
        if path.exists() and path.read_text():
            return set(json.loads(path.read_text()))
        await asyncio.sleep(0.02)
    raise AssertionError("the running Dispatch did not report its modules")


async def test_dispatch_run_with_telegram_alone_leaves_slack_bolt_and_the_sdks_unloaded(tmp_path, fake, tg_fake):
    listing = tmp_path / "modules.json"
    env = env_for(tmp_path, ANTHROPIC_API_KEY="sk-ant-test", ANTHROPIC_BASE_URL=fake.url, DISPATCH_TIMEZONE="UTC",
                  DISPATCH_MODEL_RETRIES="0", TELEGRAM_BOT_TOKEN=tg_fake.token, TELEGRAM_API_URL=tg_fake.url,
                  DISPATCH_TELEGRAM_OWNERS="1001")
    env = {k: v for k, v in env.items() if not k.startswith("SLACK_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RUN_AND_REPORT, str(listing), cwd=tmp_path, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        await tg_fake.wait_for_call("getUpdates", timeout=60)
        idle = await modules_now(proc, listing)
        assert "telegram.ext" in idle and "bot.telegram.app" in idle
        loaded = sorted(m for m in (*LAZY, "slack_bolt", "slack_sdk", "bot.slack.app", "markdown_it") if m in idle)
        assert loaded == [], f"imported by an idle `dispatch run` with Telegram alone: {loaded}"

        # The first message still gets its answer: the model SDK is imported for it.
        fake.reply("Here is your answer.")
        tg_fake.send_message("what is on my calendar?")
        for _ in range(1000):
            if any("Here is your answer." in t for t in tg_fake.sent_texts()):
                break
            await asyncio.sleep(0.02)
        assert any("Here is your answer." in t for t in tg_fake.sent_texts()), tg_fake.sent_texts()
        after = await modules_now(proc, listing)
        assert "anthropic" in after and "markdown_it" in after, "the answer was rendered from Markdown"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]


async def test_parsing_dispatch_run_leaves_the_other_commands_unloaded(tmp_path):
    """`dispatch run` parses its command line without importing the set-up wizard, the
    doctor, Google's sign-in or the plugin manager (bot.ops.arguments holds the shape)."""
    code = ("import json, sys\n"
            "from bot.ops.cli import build_parser\n"
            "args = build_parser().parse_args(['run'])\n"
            "print(json.dumps([args.command, sorted(m for m in sys.modules if m.startswith(('bot.ops.', 'tools.')))]))")
    rc, out, err = await run_python(code, env=env_for(tmp_path), cwd=tmp_path)
    assert rc == 0, err
    command, loaded = json.loads(out)
    assert command == "run"
    assert loaded == ["bot.ops.arguments", "bot.ops.cli", "bot.ops.helptext"], loaded
