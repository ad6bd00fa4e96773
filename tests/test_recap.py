"""End to end, the job at the centre of Dispatch: "find last week's numbers in the
campaign tracker, build the recap deck in our template, and send it to me". The real
Core, runner, gate, index and tools, the real anthropic client against the loopback
fake model; the front end is the terminal-like RecordingChannel, then Telegram (the
real python-telegram-bot against the loopback fake Bot API)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from agent.channel import Inbound
from tests.conftest import (
    TG_OWNER,
    make_settings,
    start_telegram_bot,
    task_state,
    telegram_values,
    until,
)
from tests.office_files import make_template, slide_texts

TRACKER = "week,spend,clicks,signups\n22,1200.50,30000,120\n23,1340.00,35500,150\n24,1500.25,42000,180\n"


async def run(core: Any, text: str) -> int:
    task = await core.submit(Inbound(text, "console:local"))
    await until(lambda: task_state(core.store, task.id) not in ("queued", "running"), timeout=20, what="the task")
    assert task_state(core.store, task.id) == "done"
    return task.id


def results(fake: Any, request: int) -> list[dict[str, Any]]:
    """The tool results the model got in its `request`-th call."""
    return fake.requests[request]["messages"][-1]["content"]


async def test_weekly_recap_from_tracker_to_deck_to_phone(core, fake, settings, roots: Path) -> None:
    tracker = roots / "Marketing" / "Campaign tracker.csv"
    tracker.parent.mkdir()
    tracker.write_text(TRACKER)
    old = roots / "Archive" / "campaign tracker 2023.csv"
    old.parent.mkdir()
    old.write_text("week,spend\n1,10\n")
    year_ago = time.time() - 365 * 86400
    os.utime(old, (year_ago, year_ago))
    (roots / "Templates").mkdir()
    template = make_template(roots / "Templates" / "Recap template.pptx")
    await core.indexer.refresh()  # the files above are in the index, not only on disk
    deck = settings.outbox / "Weekly recap.pptx"

    fake.reply("Looking for the tracker.", tool_uses=[("find_files", {"name": "campaign tracker"})])
    fake.reply(tool_uses=[("read_text", {"path": str(tracker)}),
                          ("find_files", {"name": "template", "folder": str(roots / "Templates")})])
    fake.reply(tool_uses=[("make_deck", {"name": "Weekly recap", "template": str(template), "slides": [
        {"title": "Weekly recap", "subtitle": "Week 24"},
        {"title": "Highlights", "bullets": ["Spend 1,500 (+12%)", "Signups 180 (+20%)"],
         "notes": "Signups are the headline."},
        {"title": "Trend", "table": [["Week", "Spend", "Signups"], ["W22", 1200.5, 120], ["W23", 1340, 150],
                                     ["W24", 1500.25, 180]], "chart": True},
    ]})])
    fake.reply(tool_uses=[("send_file", {"path": str(deck), "caption": "Weekly recap, week 24"})])
    fake.reply("Sent: the week 24 recap. Spend 1,500 (+12%), signups 180 (+20%).")
    await run(core, "Find last week's numbers in the campaign tracker, build the recap deck in our template, "
                    "and send it to me")

    found = results(fake, 1)[0]["content"].splitlines()
    assert found[0].startswith(f"{tracker}  (") and found[1].startswith(f"{old}  ("), "the current tracker first"
    read, template_found = results(fake, 2)
    assert read["content"] == TRACKER
    assert template_found["content"].startswith(str(template))
    made = results(fake, 3)[0]
    assert not made["is_error"] and made["content"].startswith(f"Saved {deck}")
    assert "slide 3: line chart of Spend by Week; not charted (another unit): Signups" in made["content"]
    sent = results(fake, 4)[0]
    assert not sent["is_error"] and sent["content"].startswith("Weekly recap.pptx (") and sent["content"].endswith(": sent")

    # The owner got the deck itself, then the answer; the audit log has it.
    assert core.channel.files == [deck]
    assert core.channel.texts[-1].startswith("Sent: the week 24 recap.")
    entry = core.store.recent_actions(10, kinds=("file_sent",))[0]
    assert entry.ok and "Weekly recap.pptx" in entry.summary and entry.detail["path"] == str(deck)

    # And the deck is the template's, filled in.
    slides = slide_texts(deck)
    assert [s["layout"] for s in slides] == ["Acme Cover", "Acme Content", "Acme Title Only"]
    assert [s["title"] for s in slides] == ["Weekly recap", "Highlights", "Trend"]
    assert slides[1]["placeholders"] == {1: "Spend 1,500 (+12%)\nSignups 180 (+20%)"}
    assert slides[1]["notes"] == "Signups are the headline."
    chart = slides[2]["charts"][0]
    assert list(chart.plots[0].categories) == ["W22", "W23", "W24"]
    assert [list(s.values) for s in chart.series] == [[1200.5, 1340, 1500.25]], "money and counts not on one axis"


async def test_send_file_reports_what_the_front_end_did_and_refuses_what_it_must(core, fake, settings, roots) -> None:
    big = settings.outbox / "video-export.csv"
    big.parent.mkdir(parents=True, exist_ok=True)
    big.write_text("a,b\n" * 10)
    said = "not sent: 61.2 MB is over Telegram's 50 MB limit; it is at " + str(big)

    async def over_the_limit(origin: str, path: Path, caption: str = "") -> str:
        return said

    core.channel.send_file = over_the_limit
    (roots / ".env").write_text("TOKEN=1")
    (roots / "empty.txt").write_text("")
    fake.reply(tool_uses=[("send_file", {"path": str(big)}), ("send_file", {"path": ".env"}),
                          ("send_file", {"path": "/etc/hostname"}), ("send_file", {"path": "empty.txt"}),
                          ("send_file", {"path": str(roots)})])
    fake.reply("Could not send everything.")
    await run(core, "send me the export")
    over, secret, outside, empty, folder = results(fake, 1)
    assert over["content"] == f"video-export.csv (40 B): {said}" and not over["is_error"]
    assert secret["is_error"] and secret["content"].startswith("Refused")
    assert outside["is_error"] and "outside the folders" in outside["content"]
    assert empty["is_error"] and "empty" in empty["content"]
    assert folder["is_error"] and "is a folder" in folder["content"]
    entries = core.store.recent_actions(10, kinds=("file_sent",))
    assert len(entries) == 1 and "over Telegram's 50 MB limit" in entries[0].summary


# The same job from the phone: the Telegram front end (real python-telegram-bot polling the
# loopback fake Bot API) delivers the deck as a document in the owner's chat.


async def test_weekly_recap_reaches_the_phone_over_telegram(tmp_path, fake, tg_fake, roots, sent) -> None:
    settings = make_settings(tmp_path, fake.url, roots, **telegram_values(tg_fake))
    (roots / "Campaign tracker.csv").write_text(TRACKER)
    template = make_template(roots / "Recap template.pptx")
    deck = settings.outbox / "Weekly recap.pptx"
    bot = await start_telegram_bot(settings)
    try:
        await bot.core.indexer.refresh()
        fake.reply(tool_uses=[("find_files", {"name": "campaign tracker"})])
        fake.reply(tool_uses=[("read_text", {"path": str(roots / "Campaign tracker.csv")})])
        fake.reply(tool_uses=[("make_deck", {"name": "Weekly recap", "template": str(template), "slides": [
            {"title": "Weekly recap", "subtitle": "Week 24"},
            {"title": "Highlights", "bullets": ["Spend 1,500 (+12%)"]}]})])
        fake.reply(tool_uses=[("send_file", {"path": str(deck), "caption": "Weekly recap, week 24"})])
        fake.reply("Sent you the week 24 recap.")
        tg_fake.send_message("Build the weekly recap deck from the campaign tracker and send it to me")
        await tg_fake.wait_for_call("sendDocument", timeout=20)
        upload = tg_fake.uploads[-1]
        assert upload.file_name == "Weekly recap.pptx" and upload.caption == "Weekly recap, week 24"
        assert upload.content == deck.read_bytes()
        await tg_fake.wait_for_call("sendMessage", where=lambda c: "week 24 recap" in c.params.get("text", ""),
                                    timeout=10)
        sent_result = results(fake, 4)[0]["content"]
        assert sent_result.startswith("Weekly recap.pptx (") and "sent Weekly recap.pptx" in sent_result
        assert [s["title"] for s in slide_texts(deck)] == ["Weekly recap", "Highlights"]
        entry = bot.core.store.recent_actions(10, kinds=("file_sent",))[0]
        assert entry.ok and f"telegram:{TG_OWNER}" in entry.summary
    finally:
        await bot.stop()


# "Flag off-pace in red": the model reads the highlight parameter from the tools it is sent,
# and its JSON arguments reach the spreadsheet through the real runner.


async def test_flag_off_pace_in_red_reaches_the_spreadsheet(core, fake, settings, roots: Path) -> None:
    import openpyxl

    sheet = settings.outbox / "Pace.xlsx"
    fake.reply(tool_uses=[("make_spreadsheet", {"name": "Pace", "rows": [
        ["Client", "Target", "Booked", "Pace"],
        ["Acme", "$12,000", "$9,000.50", "75%"], ["Globex", "$8,000", "$8,400", "105%"],
        ["Initech", "$5,000", "$4,500", "90%"]],
        "highlight": [{"column": "Pace", "below": 100, "fill": "red"}]})])
    fake.reply("Done: Acme and Initech are off pace, flagged in red.")
    await run(core, "Make me the pace sheet and flag off-pace clients in red")

    offered = {t["name"]: t for t in fake.requests[0]["tools"]}["make_spreadsheet"]["input_schema"]
    assert offered["properties"]["highlight"]["items"] == {"$ref": "#/$defs/Highlight"}
    assert set(offered["$defs"]["Highlight"]["properties"]) == {"column", "below", "above", "equals", "row", "fill",
                                                                "bold", "cell"}
    made = results(fake, 1)[0]
    assert not made["is_error"] and "highlighted Pace below 100 red: rows 1, 3" in made["content"]
    assert "column chart of Target, Booked by Client" in made["content"]
    ws = openpyxl.load_workbook(sheet).active
    assert [ws.cell(r, 1).fill.fgColor.rgb for r in (2, 3, 4)] == ["00FFC7CE", "00000000", "00FFC7CE"]
    assert (ws["C2"].value, ws["C2"].number_format, ws["D2"].value, ws["D2"].number_format) == (
        9000.5, '"$"#,##0.00', 0.75, "0%")
