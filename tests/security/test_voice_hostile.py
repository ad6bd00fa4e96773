"""Hostile voice notes and a hostile transcription endpoint (agent/transcribe.py):
non-audio sent as voice is refused before anything leaves the desktop; garbage, huge
or booby-trapped answers never become a request; the key never appears in a message."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from agent import transcribe as tr
from tests.conftest import make_settings, serving
from tests.fakes.transcribe_api import FakeTranscribe

KEY = "sk-transcribe-hostile-key"
# A minimal Ogg Opus stream head: enough for the checks (the fake and Dispatch look at headers only).
OPUS_HEAD = b"OggS\x00\x02" + b"\0" * 20 + b"\x01\x13OpusHead\x01\x01\x38\x01\x80\xbb\0\0\0\0\0"


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tr, "RETRY_DELAYS", (0.01, 0.01))


@pytest_asyncio.fixture
async def stt() -> Any:
    async with serving(FakeTranscribe(key=KEY, text="ok")) as server:
        yield server


def settings_for(tmp_path: Path, stt: FakeTranscribe) -> Any:
    return make_settings(tmp_path, "http://127.0.0.1:9", None, DISPATCH_TRANSCRIBE_URL=stt.url,
                         DISPATCH_TRANSCRIBE_KEY=KEY)


def note(tmp_path: Path, data: bytes = OPUS_HEAD + b"\0" * 200, name: str = "voice.oga") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("data", [
    b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj",  # a document sent as a voice note
    b"#!/bin/sh\nrm -rf ~\n",
    b"MZ\x90\x00\x03" + b"\0" * 100,  # a Windows program
    b"\x89PNG\r\n\x1a\n" + b"\0" * 50,
])
async def test_non_audio_sent_as_voice_is_refused_before_upload(tmp_path, stt, data):
    with pytest.raises(tr.TranscriptionFailed, match="doesn't look like audio"):
        await tr.transcribe(settings_for(tmp_path, stt), note(tmp_path, data))
    assert stt.attempts == 0  # nothing left the desktop


async def test_too_large_too_long_or_empty_is_refused_before_upload(tmp_path, stt):
    big = note(tmp_path, name="big.ogg")
    with big.open("r+b") as f:
        f.truncate(tr.MAX_AUDIO_BYTES + 1)
    with pytest.raises(tr.TranscriptionFailed, match="Dispatch transcribes up to 25.0 MB"):
        await tr.transcribe(settings_for(tmp_path, stt), big)
    with pytest.raises(tr.TranscriptionFailed, match="16 minutes long; Dispatch transcribes up to 15 minutes"):
        await tr.transcribe(settings_for(tmp_path, stt), note(tmp_path), duration=16 * 60)
    with pytest.raises(tr.TranscriptionFailed, match="is empty"):
        await tr.transcribe(settings_for(tmp_path, stt), note(tmp_path, b"", "empty.ogg"))
    assert stt.attempts == 0


async def test_an_ogg_that_is_not_opus_is_refused_by_the_endpoint_and_said_plainly(tmp_path, stt):
    with pytest.raises(tr.TranscriptionFailed, match="Audio file might be corrupted or unsupported"):
        await tr.transcribe(settings_for(tmp_path, stt), note(tmp_path, b"OggS" + b"\xff" * 300))
    assert stt.attempts == 1  # a 400 is final


@pytest.mark.parametrize("body, content_type", [
    (b"<html><body>Welcome to nginx!</body></html>", "text/html"),
    (b"\x00\xff\xfe garbage \x80\x81", "application/octet-stream"),
    (json.dumps({"transcript": "not the field"}).encode(), "application/json"),
    (json.dumps({"text": ["a", "list"]}).encode(), "application/json"),
    (json.dumps(["text"]).encode(), "application/json"),
    (b"{not json", "application/json"),
])
async def test_an_answer_that_is_not_a_transcript_is_refused(tmp_path, stt, body, content_type):
    stt.raw(body, content_type)
    with pytest.raises(tr.TranscriptionFailed, match="answered with something that is not a transcript"):
        await tr.transcribe(settings_for(tmp_path, stt), note(tmp_path))


async def test_a_huge_answer_is_refused_and_a_long_transcript_is_cut(tmp_path, stt):
    stt.raw(json.dumps({"text": "word " * 300_000}).encode())  # 1.5 MB
    with pytest.raises(tr.TranscriptionFailed, match="more than 1.0 MB, which is not a transcript"):
        await tr.transcribe(settings_for(tmp_path, stt), note(tmp_path))
    stt.say("blah " * 20_000)  # 100 KB: under the cap, over any real voice note
    t = await tr.transcribe(settings_for(tmp_path, stt), note(tmp_path))
    assert t.cut and len(t.text) <= tr.MAX_TRANSCRIPT_CHARS + 1 and t.heard.endswith("(cut short)")


async def test_control_characters_and_bidi_tricks_are_removed(tmp_path, stt):
    stt.say("Send \x1b[31mthe\x1b[0m report\x00 to \u202eKim\u202c\r\nnow")
    t = await tr.transcribe(settings_for(tmp_path, stt), note(tmp_path))
    assert t.text == "Send [31mthe [0m report to Kim now"
    stt.say(" \n\t ")
    with pytest.raises(tr.TranscriptionFailed, match="couldn't make out any words"):
        await tr.transcribe(settings_for(tmp_path, stt), note(tmp_path))


async def test_the_key_never_reaches_a_message_or_the_log(tmp_path, stt, caplog):
    caplog.set_level(logging.DEBUG)
    stt.fail(400, f"Bad request from key {KEY}; \x1b[2J cleared")  # a server that echoes the key back
    with pytest.raises(tr.TranscriptionFailed) as info:
        await tr.transcribe(settings_for(tmp_path, stt), note(tmp_path))
    assert KEY not in str(info.value) and "[the key]" in str(info.value) and "\x1b" not in str(info.value)
    for _ in range(3):
        stt.fail(502, KEY)
    with pytest.raises(tr.TranscriptionFailed) as info:
        await tr.transcribe(settings_for(tmp_path, stt), note(tmp_path))
    assert KEY not in str(info.value) and KEY not in caplog.text
    assert KEY not in repr(settings_for(tmp_path, stt))
