"""Voice notes to text, so a request spoken while walking is handled like a typed one.

Two engines, chosen by the settings:

- an OpenAI-compatible endpoint (DISPATCH_TRANSCRIBE_URL, _KEY, _MODEL): the audio
  is POSTed as multipart `file` + `model` (+ `response_format=json`) to
  `{URL}/audio/transcriptions`, as OpenAI, Groq and local whisper servers accept, and
  the answer's `text` is the transcript. Network errors, timeouts, 429 and 5xx are
  tried again with back-off (3 tries); any other refusal is final and said in plain
  words (a wrong key, a wrong URL). The key goes only in the Authorization header:
  it is never logged, and scrubbed from any error text a server echoes back.
- local faster-whisper (DISPATCH_WHISPER_MODEL: a model name or a CTranslate2 model
  folder), when that is set and the optional package is installed
  (`pip install "dispatch-agent[voice]"`); the model is loaded once and runs in a
  worker thread.

Before anything is sent, the file must look like audio (OGG, MP3, M4A/MP4, WAV, WebM,
FLAC: what the endpoints accept), be at most 25 MB (OpenAI's upload limit) and at
most 15 minutes long. A transcript is cleaned of control characters and cut at
MAX_TRANSCRIPT_CHARS; an answer that is not a transcript is refused, never passed on.
Every failure is a `TranscriptionFailed` whose text can be sent to the owner as is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiohttp

from store.config import Settings
from tools.documents.readers import human_size

log = logging.getLogger("dispatch.transcribe")

MAX_AUDIO_BYTES = 25 * 1024 * 1024  # OpenAI's limit on one upload; Groq's free tier is the same
MAX_SECONDS = 15 * 60
MAX_ANSWER_BYTES = 1024 * 1024  # a 15-minute transcript is ~20 KB; more is not a transcript
MAX_TRANSCRIPT_CHARS = 20_000
RETRY_DELAYS = (1.0, 3.0)  # seconds before the 2nd and 3rd tries
MAX_RETRY_AFTER = 30.0  # a 429's Retry-After is honoured up to this
CONTENT_TYPES = {"ogg": "audio/ogg", "mp3": "audio/mpeg", "m4a": "audio/mp4", "mp4": "video/mp4",
                 "wav": "audio/wav", "webm": "audio/webm", "flac": "audio/flac"}
NOT_SET_UP = (
    "Voice notes are not turned on. To turn them on, set DISPATCH_TRANSCRIBE_URL to an OpenAI-compatible "
    "transcription API (e.g. https://api.openai.com/v1, with DISPATCH_TRANSCRIBE_KEY), or install "
    "faster-whisper (pip install \"dispatch-agent[voice]\") and set DISPATCH_WHISPER_MODEL (e.g. small) to "
    "transcribe on this computer; then restart Dispatch. Meanwhile, type the request."
)
NOT_INSTALLED = (
    "DISPATCH_WHISPER_MODEL is set, but faster-whisper is not installed, so voice notes can't be transcribed "
    "on this computer: run pip install \"dispatch-agent[voice]\" and restart Dispatch (or set "
    "DISPATCH_TRANSCRIBE_URL to use a transcription API instead)."
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


class TranscriptionFailed(Exception):
    """Why a voice note was not transcribed, in a sentence for the owner."""


class VoiceNotSetUp(TranscriptionFailed):
    """Neither an endpoint nor a local model is configured (or the local one is not installed)."""


@dataclass(frozen=True)
class Transcript:
    text: str
    engine: str  # "api.openai.com (whisper-1)" or "faster-whisper (small)": for the log
    audio_seconds: float | None
    elapsed: float  # seconds spent transcribing
    cut: bool = False  # the text was longer than MAX_TRANSCRIPT_CHARS

    @property
    def heard(self) -> str:
        """What the owner sees before the answer, so a misheard request can be cancelled."""
        return f"\U0001f3a4 Heard: {self.text}" + (" (cut short)" if self.cut else "")


def engine_name(settings: Settings) -> str | None:
    """"local", "endpoint", or None when voice is off; raises VoiceNotSetUp when the
    local model is asked for but not installed and there is no endpoint to fall back on."""
    if settings.whisper_model:
        if _whisper_installed():
            return "local"
        if not settings.transcribe_url:
            raise VoiceNotSetUp(NOT_INSTALLED)
        log.warning("DISPATCH_WHISPER_MODEL is set but faster-whisper is not installed; using DISPATCH_TRANSCRIBE_URL")
    return "endpoint" if settings.transcribe_url else None


async def transcribe(settings: Settings, path: Path, *, duration: float | None = None) -> Transcript:
    """The transcript of the voice note at `path` (`duration` in seconds, when the
    platform says it). Raises TranscriptionFailed with a sentence for the owner."""
    engine = engine_name(settings)
    if engine is None:
        raise VoiceNotSetUp(NOT_SET_UP)
    path = Path(path)
    kind, seconds = check_audio(path, duration)
    started = time.perf_counter()
    if engine == "local":
        raw = await asyncio.to_thread(_local, settings.whisper_model or "", path)
        label = f"faster-whisper ({settings.whisper_model})"
    else:
        raw = await _endpoint(settings, path, kind)
        label = f"{urlparse(settings.transcribe_url or '').hostname} ({settings.transcribe_model})"
    text, cut = clean(raw)
    elapsed = time.perf_counter() - started
    log.info("transcribed %s (%s) with %s in %.2f s", path.name, f"{seconds:.0f} s" if seconds else "?", label, elapsed)
    return Transcript(text, label, seconds, elapsed, cut)


async def check(settings: Settings) -> tuple[bool, str]:
    """For `dispatch doctor`: whether voice notes would work, tried for real (a half
    second of silence to the endpoint, one try), in a sentence. Off is fine."""
    try:
        engine = engine_name(settings)
    except VoiceNotSetUp as exc:
        return False, str(exc)
    if engine is None:
        return True, ("off (optional): set DISPATCH_TRANSCRIBE_URL, or DISPATCH_WHISPER_MODEL with "
                      "pip install \"dispatch-agent[voice]\", to take voice notes")
    if engine == "local":
        name = settings.whisper_model or ""
        folder = Path(name).expanduser()
        if (folder.is_absolute() or name.startswith(".")) and not (folder / "model.bin").is_file():
            return False, f"DISPATCH_WHISPER_MODEL names {folder}, which is not a Whisper model folder (no model.bin)."
        return True, f"transcribed on this computer by faster-whisper, model {name} (loaded at the first voice note)"
    import tempfile
    import wave

    with tempfile.TemporaryDirectory() as tmp:
        silence = Path(tmp) / "silence.wav"
        with wave.open(str(silence), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16_000)
            w.writeframes(b"\0\0" * 8_000)
        try:
            await _endpoint(settings, silence, "wav", delays=(), timeout_s=min(settings.transcribe_timeout, 20.0))
        except TranscriptionFailed as exc:
            return False, str(exc).replace("The voice note was not transcribed: ", "").replace(
                " Try again in a while, or type the request.", "")
    host = urlparse(settings.transcribe_url or "").hostname
    return True, f"{host} transcribes with {settings.transcribe_model} (tried with half a second of silence)"


# Checks before sending ----------------------------------------------------------------


def audio_kind(head: bytes) -> str | None:
    """The container the bytes start with, as the file extension endpoints expect."""
    if head.startswith(b"OggS"):
        return "ogg"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    if head[4:8] == b"ftyp":
        return "m4a" if head[8:12] in (b"M4A ", b"M4B ") else "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    if head.startswith(b"fLaC"):
        return "flac"
    return None


def check_audio(path: Path, duration: float | None = None) -> tuple[str, float | None]:
    """(kind, seconds) of a voice note fit to send; TranscriptionFailed otherwise."""
    name = path.name
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise TranscriptionFailed(f"I couldn't open the voice note {name}: {exc.strerror or exc}.") from None
    if size == 0:
        raise TranscriptionFailed(f"The voice note {name} is empty; record it again.")
    if size > MAX_AUDIO_BYTES:
        raise TranscriptionFailed(f"The voice note {name} is {human_size(size)}; Dispatch transcribes up to "
                                  f"{human_size(MAX_AUDIO_BYTES)}. Send a shorter one, or type the request.")
    kind = audio_kind(head)
    if kind is None:
        raise TranscriptionFailed(f"{name} doesn't look like audio (OGG, MP3, M4A, MP4, WAV, WebM or FLAC), "
                                  "so it was not transcribed. Send it as a file if it is a document.")
    seconds = duration if duration else _ogg_seconds(path, head) if kind == "ogg" else None
    if seconds and seconds > MAX_SECONDS:
        raise TranscriptionFailed(f"The voice note is {seconds / 60:.0f} minutes long; Dispatch transcribes up to "
                                  f"{MAX_SECONDS // 60} minutes. Send a shorter one, or type the request.")
    return kind, seconds


def _ogg_seconds(path: Path, head: bytes) -> float | None:
    """An Ogg Opus stream's length from its last page's granule position (48 kHz
    samples, less the pre-skip), read from the file's tail: no decoding."""
    try:
        with path.open("rb") as f:
            first = f.read(512)
            f.seek(max(0, path.stat().st_size - 65_536))
            tail = f.read()
    except OSError:
        return None
    at, last = first.find(b"OpusHead"), tail.rfind(b"OggS")
    if at < 0 or last < 0 or len(tail) < last + 14 or len(first) < at + 12:
        return None
    pre_skip = int.from_bytes(first[at + 10:at + 12], "little")
    granule = int.from_bytes(tail[last + 6:last + 14], "little", signed=True)
    return max(0.0, (granule - pre_skip) / 48_000) if granule > 0 else None


def clean(raw: str) -> tuple[str, bool]:
    """The transcript without control characters (terminal escapes, bidi overrides),
    whitespace tidied, cut at MAX_TRANSCRIPT_CHARS."""
    text = " ".join(_CONTROL.sub(" ", raw).split())
    if not text:
        raise TranscriptionFailed("I couldn't make out any words in that voice note; try again, or type the request.")
    if len(text) > MAX_TRANSCRIPT_CHARS:
        return text[:MAX_TRANSCRIPT_CHARS].rstrip() + "…", True
    return text, False


# The endpoint ---------------------------------------------------------------------------


async def _endpoint(settings: Settings, path: Path, kind: str, *, delays: tuple[float, ...] | None = None,
                    timeout_s: float | None = None) -> str:
    delays = RETRY_DELAYS if delays is None else delays
    base = (settings.transcribe_url or "").rstrip("/")
    url, host = f"{base}/audio/transcriptions", urlparse(base).hostname or base
    key = settings.transcribe_key.get_secret_value().strip() if settings.transcribe_key else ""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    audio = path.read_bytes()
    seconds = timeout_s or settings.transcribe_timeout
    timeout = aiohttp.ClientTimeout(total=seconds)
    problem = ""
    for attempt in range(len(delays) + 1):
        form = aiohttp.FormData()  # one per try: a sent FormData cannot be sent again
        form.add_field("file", audio, filename=f"voice.{kind}", content_type=CONTENT_TYPES[kind])
        form.add_field("model", settings.transcribe_model.strip())
        form.add_field("response_format", "json")
        wait = delays[attempt] if attempt < len(delays) else 0.0
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, \
                    session.post(url, data=form, headers=headers) as resp:
                status, content_type = resp.status, resp.content_type
                retry_after = resp.headers.get("Retry-After", "")
                body = await _read_capped(resp)
        except TimeoutError:
            problem = f"{host} did not answer within {seconds:g} seconds"
        except aiohttp.ClientError as exc:
            problem = f"could not reach {host} ({_scrub(type(exc).__name__ + ': ' + str(exc), key)[:200]})"
        else:
            if status == 200:
                return _transcript_of(body, content_type, host)
            if status != 429 and status < 500:
                raise TranscriptionFailed(_refusal(status, body, url, host, key))
            problem = f"{host} answered HTTP {status}"
            if status == 429 and retry_after.replace(".", "", 1).isdigit():
                wait = max(wait, min(float(retry_after), MAX_RETRY_AFTER))
        log.warning("transcription try %d failed: %s", attempt + 1, problem)
        if attempt < len(delays):
            await asyncio.sleep(wait)
    tries = f"{len(delays) + 1} tries" if delays else "1 try"
    raise TranscriptionFailed(f"The voice note was not transcribed: {problem} ({tries}). "
                              "Try again in a while, or type the request.")


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
    body = bytearray()
    async for chunk in resp.content.iter_chunked(65_536):
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise TranscriptionFailed(f"The transcription service answered with more than "
                                      f"{human_size(MAX_ANSWER_BYTES)}, which is not a transcript; nothing was used.")
    return bytes(body)


def _transcript_of(body: bytes, content_type: str, host: str) -> str:
    """The `text` of a JSON answer (or a plain-text one, from servers that ignore
    response_format); anything else is refused."""
    not_one = TranscriptionFailed(f"{host} answered with something that is not a transcript; nothing was used. "
                                  "Check DISPATCH_TRANSCRIBE_URL and DISPATCH_TRANSCRIBE_MODEL.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise not_one from None
    if content_type == "text/plain":
        return text
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise not_one from None
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        raise not_one
    return data["text"]


def _refusal(status: int, body: bytes, url: str, host: str, key: str) -> str:
    """A final refusal (a 4xx other than 429) in words that say what to change."""
    said = _server_message(body, key)
    if status in (401, 403):
        return (f"The transcription service at {host} refused the key (HTTP {status}); check "
                "DISPATCH_TRANSCRIBE_KEY." + (f" It said: {said}" if said else ""))
    if status in (404, 405):
        return (f"There is no transcription API at {url} (HTTP {status}). DISPATCH_TRANSCRIBE_URL must be the "
                "API's base URL, e.g. https://api.openai.com/v1 or https://api.groq.com/openai/v1.")
    if status == 413:
        return "The voice note is too large for the transcription service; send a shorter one, or type the request."
    return (f"The transcription service refused the voice note (HTTP {status})"
            + (f": {said}" if said else ".") + " Check DISPATCH_TRANSCRIBE_MODEL, or type the request.")


def _server_message(body: bytes, key: str) -> str:
    """The error text of an OpenAI-style answer ({"error": {"message": ...}}), short, key scrubbed."""
    try:
        data = json.loads(body.decode("utf-8", "replace"))
        error = data.get("error") if isinstance(data, dict) else None
        message = error.get("message") if isinstance(error, dict) else error if isinstance(error, str) else None
        message = message or (data.get("detail") if isinstance(data, dict) else None)
    except (json.JSONDecodeError, AttributeError):
        message = None
    if not isinstance(message, str):
        return ""
    text = " ".join(_CONTROL.sub(" ", _scrub(message, key)).split())
    return text[:300] + ("…" if len(text) > 300 else "")


def _scrub(text: str, key: str) -> str:
    return text.replace(key, "[the key]") if key else text


# Local faster-whisper -------------------------------------------------------------------

_models: dict[str, Any] = {}
_models_lock = threading.Lock()


def _whisper_installed() -> bool:
    try:
        import faster_whisper  # noqa: F401  (heavy; only imported when voice is set up locally)
    except ImportError:
        return False
    return True


def load_whisper(name: str) -> Any:
    """The faster-whisper model named by DISPATCH_WHISPER_MODEL, loaded once per process."""
    from faster_whisper import WhisperModel

    folder = Path(name).expanduser()
    if (folder.is_absolute() or name.startswith(".")) and not (folder / "model.bin").is_file():
        raise TranscriptionFailed(f"DISPATCH_WHISPER_MODEL names {folder}, which is not a Whisper model folder "
                                  "(it has no model.bin). Give a model name (tiny, base, small, medium) or the "
                                  "folder of a CTranslate2 Whisper model.")
    with _models_lock:
        model = _models.get(name)
        if model is None:
            try:
                # int8 on the CPU is several times faster than float32, at no loss that matters for notes.
                model = WhisperModel(str(folder) if folder.is_dir() else name, device="auto", compute_type="int8")
            except Exception as exc:  # a wrong name or folder; a failed download of a named model
                raise TranscriptionFailed(
                    f"Could not load the Whisper model {name!r} (DISPATCH_WHISPER_MODEL): {type(exc).__name__}: "
                    f"{str(exc)[:200]}. Give a model name (tiny, base, small, medium) or a model folder.") from None
            _models[name] = model
    return model


def _local(name: str, path: Path) -> str:
    model = load_whisper(name)
    try:
        segments, _info = model.transcribe(str(path))
        return " ".join(s.text.strip() for s in segments)
    except Exception as exc:  # PyAV could not decode it, or the model failed on it
        raise TranscriptionFailed(f"The voice note could not be transcribed on this computer "
                                  f"({type(exc).__name__}: {str(exc)[:200]}).") from None
