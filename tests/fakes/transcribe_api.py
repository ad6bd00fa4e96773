"""A loopback fake of the OpenAI-compatible transcription endpoint
(POST {base}/audio/transcriptions), written from OpenAI's API reference.

The request is multipart/form-data with a required `file` (its format taken from the
file name's extension: flac, m4a, mp3, mp4, mpeg, mpga, oga, ogg, wav, webm) and a
required `model`; optional language, prompt, response_format (json, text,
verbose_json, srt, vtt) and temperature. Uploads are limited to 25 MB. A missing or
wrong key is a 401 in OpenAI's error shape. The fake also checks that an Ogg upload
really is Ogg Opus (the `OggS` capture pattern and an `OpusHead` header), as a voice
note from Telegram is, and answers `{"text": ...}`. Tests script failures (status
codes, delays, garbage, huge answers) and read what was received.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

MAX_UPLOAD = 25 * 1024 * 1024
FORMATS = ["flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm"]
RESPONSE_FORMATS = ("json", "text", "verbose_json", "srt", "vtt")


@dataclass
class Upload:
    filename: str
    content_type: str
    data: bytes
    model: str
    response_format: str
    authorization: str

    @property
    def is_ogg_opus(self) -> bool:
        return self.data.startswith(b"OggS") and b"OpusHead" in self.data[:512]


def _error(status: int, message: str, *, etype: str = "invalid_request_error", code: str | None = None,
           param: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": etype, "param": param, "code": code}},
                             status=status, headers=headers)


class FakeTranscribe:
    def __init__(self, *, key: str | None = "sk-transcribe-test-key", text: str = "Hello there.") -> None:
        self.key = key
        self.text = text  # the transcript answered when nothing else is scripted
        self.url = ""  # the base URL, as DISPATCH_TRANSCRIBE_URL takes it (…/v1)
        self.uploads: list[Upload] = []
        self.attempts = 0  # every request, including refused ones
        self._script: deque[dict[str, Any]] = deque()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_UPLOAD + 1024 * 1024)
        app.router.add_post("/v1/audio/transcriptions", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # Scripting: each call queues one answer, used by the next request in order.

    def fail(self, status: int, message: str = "The server had an error while processing your request.",
             *, retry_after: str | None = None) -> None:
        self._script.append({"status": status, "message": message, "retry_after": retry_after})

    def raw(self, body: bytes, content_type: str = "application/json", status: int = 200) -> None:
        self._script.append({"raw": body, "content_type": content_type, "status": status})

    def hang(self, seconds: float) -> None:
        self._script.append({"delay": seconds})

    def say(self, text: str) -> None:
        self._script.append({"text": text})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.attempts += 1
        auth = request.headers.get("Authorization", "")
        if self.key is not None and auth != f"Bearer {self.key}":
            shown = auth.removeprefix("Bearer ")
            masked = f"{shown[:3]}***{shown[-4:]}" if len(shown) > 8 else shown
            msg = (f"Incorrect API key provided: {masked}. You can find your API key at "
                   "https://platform.openai.com/account/api-keys.") if shown else (
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
            return _error(401, msg, code="invalid_api_key" if shown else None)
        if (request.content_length or 0) > MAX_UPLOAD + 64 * 1024:
            return _error(413, "Maximum content size limit (26214400) exceeded.")
        if not request.content_type.startswith("multipart/form-data"):
            return _error(400, "Could not parse multipart form")
        fields: dict[str, Any] = {}
        reader = await request.multipart()
        async for part in reader:
            if part.name == "file":
                fields["file"] = (part.filename or "", part.headers.get("Content-Type", ""), await part.read())
            elif part.name:
                fields[part.name] = (await part.text()).strip()
        if "file" not in fields:
            return _error(400, "1 validation error for Request\nbody -> file\n  field required", param="file")
        if not fields.get("model"):
            return _error(400, "you must provide a model parameter", param="model")
        filename, content_type, data = fields["file"]
        ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        if ext not in FORMATS:
            return _error(400, f"Invalid file format. Supported formats: {FORMATS}", param="file")
        if len(data) > MAX_UPLOAD:
            return _error(413, "Maximum content size limit (26214400) exceeded.")
        response_format = fields.get("response_format") or "json"
        if response_format not in RESPONSE_FORMATS:
            return _error(400, f"Invalid response_format {response_format!r}", param="response_format")
        upload = Upload(filename, content_type, data, fields["model"], response_format, auth)
        self.uploads.append(upload)
        if ext in ("ogg", "oga") and not upload.is_ogg_opus:
            return _error(400, "Audio file might be corrupted or unsupported", param="file")

        step = self._script.popleft() if self._script else {"text": self.text}
        if "delay" in step:
            await asyncio.sleep(step["delay"])
            step = {"text": self.text}
        if "raw" in step:
            return web.Response(body=step["raw"], status=step["status"], content_type=step["content_type"])
        if "status" in step:
            headers = {"Retry-After": step["retry_after"]} if step.get("retry_after") else None
            etype = "server_error" if step["status"] >= 500 else "invalid_request_error"
            return _error(step["status"], step["message"], etype=etype, headers=headers)
        if response_format == "text":
            return web.Response(text=step["text"], content_type="text/plain")
        return web.Response(text=json.dumps({"text": step["text"], "usage": {"type": "duration", "seconds": 3}}),
                            content_type="application/json")
