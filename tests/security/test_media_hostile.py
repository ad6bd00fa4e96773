"""Hostile files from the phone (agent/media.py): decompression bombs, damaged and
disguised images, fake and locked PDFs. Each is refused with a plain note next to the
file's line, never decoded into memory, never sent as a block the API would refuse
(that would poison every later request of the thread), and the task goes on."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

from PIL import Image
from pypdf import PdfWriter

from agent import media
from agent.channel import Inbound
from bot.inbox import inbox_path
from tests.conftest import task_state, until
from tests.helpers import files_settings


def png_header_bomb(path: Path, width: int, height: int) -> Path:
    """A few hundred bytes whose header claims width x height pixels (RGB)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 65_536, 9)  # would inflate row after row of zeros
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def jpeg_claiming(path: Path, width: int, height: int) -> Path:
    """A real small JPEG whose frame header is patched to claim width x height."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16), "green").save(out, "JPEG")
    data = bytearray(out.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def note_for(settings: Any, path: Path) -> tuple[media.Attachment, str]:
    att = media.describe(settings, path)
    return att, att.line()


def test_decompression_bombs_are_refused_by_their_header(tmp_path):
    settings = files_settings(tmp_path)
    # 2.5 gigapixels: Pillow itself refuses to open it.
    att, line = note_for(settings, png_header_bomb(inbox_path(settings.inbox, "bomb.png"), 50_000, 50_000))
    assert att.block is None and "decompression bomb" in line and "it was not opened" in line
    # 81 and 36 megapixels: Pillow would open them; Dispatch's own limits refuse them before decoding.
    att, line = note_for(settings, png_header_bomb(inbox_path(settings.inbox, "big.png"), 9_000, 9_000))
    assert att.block is None and "9000x9000 pixels is more than the 25 megapixels Dispatch opens as PNG" in line
    att, line = note_for(settings, png_header_bomb(inbox_path(settings.inbox, "36mp.png"), 6_000, 6_000))
    assert att.block is None and "6000x6000 pixels is more than the 25 megapixels" in line
    att, line = note_for(settings, jpeg_claiming(inbox_path(settings.inbox, "81mp.jpg"), 9_000, 9_000))
    assert att.block is None and "9000x9000 pixels is more than the 50 megapixels Dispatch opens as JPEG" in line
    att, line = note_for(settings, jpeg_claiming(inbox_path(settings.inbox, "wide.jpg"), 65_000, 65_000))
    assert att.block is None and "not shown" in line


def test_damaged_and_disguised_images_are_listed_with_the_reason(tmp_path):
    settings = files_settings(tmp_path)
    whole = io.BytesIO()
    Image.effect_noise((400, 300), 80).convert("RGB").save(whole, "JPEG")
    cut = inbox_path(settings.inbox, "cut.jpg")
    cut.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    att, line = note_for(settings, cut)
    assert att.block is None and "the image is damaged" in line
    text = inbox_path(settings.inbox, "photo.jpg")
    text.write_text("<script>alert(1)</script>")
    att, line = note_for(settings, text)
    assert att.block is None and "not an image the model can see" in line
    ppm = inbox_path(settings.inbox, "scan.png")
    Image.new("RGB", (10, 10)).save(ppm, "PPM")  # a PPM named .png: not a format the API takes
    att, line = note_for(settings, ppm)
    assert att.block is None and "PPM is not a format the model can see" in line


def test_fake_and_locked_pdfs_are_not_sent_as_documents(tmp_path):
    settings = files_settings(tmp_path)
    html = inbox_path(settings.inbox, "invoice.pdf")
    html.write_text("<html><body>Pay now</body></html>")
    att, line = note_for(settings, html)
    assert att.block is None and "named like a PDF but is not one" in line
    junk = inbox_path(settings.inbox, "junk.pdf")
    junk.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 40)
    att, line = note_for(settings, junk)
    assert att.block is None and "not shown:" in line and ("damaged PDF" in line or "no pages" in line)
    locked = inbox_path(settings.inbox, "locked.pdf")
    writer = PdfWriter()
    writer.add_blank_page(100, 100)
    writer.encrypt("secret")
    with locked.open("wb") as f:
        writer.write(f)
    att, line = note_for(settings, locked)
    assert att.block is None and "encrypted (password-protected)" in line


async def test_a_task_with_hostile_files_runs_and_every_request_stays_valid(core, fake):
    inbox = core.settings.inbox
    files = [png_header_bomb(inbox_path(inbox, "bomb.png"), 50_000, 50_000),
             jpeg_claiming(inbox_path(inbox, "wide.jpg"), 65_000, 65_000)]
    fake_pdf = inbox_path(inbox, "statement.pdf")
    fake_pdf.write_bytes(b"%PDF-1.4\n1 0 obj garbage endobj\n%%EOF")
    files.append(fake_pdf)
    fake.reply("Those files could not be opened; I listed why.")
    fake.reply("Still here.")
    task = await core.submit(Inbound("what are these?", "console:local", files=[str(f) for f in files]))
    await until(lambda: task_state(core.store, task.id) == "done", timeout=20, what="the task")
    later = await core.submit(Inbound("and now?", "console:local"))
    await until(lambda: task_state(core.store, later.id) == "done", timeout=20, what="the next task")
    first = fake.requests[0]["messages"][-1]["content"]
    assert [b["type"] for b in first] == ["text"]  # nothing the API would refuse
    assert first[0]["text"].count("not shown:") == 3
    assert core.channel.texts[-1] == "Still here."
