"""Photos and PDFs from the phone reach the model as content blocks (agent/media.py),
through the real Core and the real anthropic client against the strict fake model,
which checks image and document blocks as the API does."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import anthropic
import pytest
from PIL import Image
from pypdf import PdfWriter
from sqlmodel import select

from agent import context, media
from agent.channel import Inbound
from bot.inbox import inbox_path
from store.models import Message, Task
from tests.conftest import task_state, until
from tests.helpers import files_settings


async def run(core: Any, text: str, files: list[Path]) -> Task:
    task = await core.submit(Inbound(text, "console:local", files=[str(f) for f in files]))
    await until(lambda: task_state(core.store, task.id) not in ("queued", "running"), timeout=20, what="task")
    with core.store.session() as s:
        return s.get(Task, task.id)


def photo(path: Path, size: tuple[int, int], *, orientation: int = 1, fmt: str = "JPEG", mode: str = "RGB") -> Path:
    """An image whose left half is red and right half blue, so orientation can be checked."""
    im = Image.new(mode, size, "red")
    im.paste(Image.new(mode, (size[0] // 2, size[1]), "blue"), (size[0] // 2, 0))
    exif = Image.Exif()
    exif[0x0112] = orientation
    kwargs: dict[str, Any] = {"exif": exif.tobytes()} if fmt in ("JPEG", "PNG", "WEBP") else {}
    im.save(path, fmt, **kwargs)
    return path


def pdf(path: Path, pages: int) -> Path:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(612, 792)
    with path.open("wb") as f:
        writer.write(f)
    return path


def decoded(block: dict) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(block["source"]["data"])))


def first_request_blocks(fake: Any) -> list[dict]:
    return fake.requests[0]["messages"][-1]["content"]


# A photo reaches the model ---------------------------------------------------------------


async def test_a_phone_photo_reaches_the_model_upright_and_resized(core, fake):
    # A phone held upright stores a landscape JPEG with EXIF orientation 6 (rotate 90°).
    path = photo(inbox_path(core.settings.inbox, "photo-17.jpg"), (4032, 3024), orientation=6)
    fake.reply("A whiteboard with two columns.")
    task = await run(core, "what's on this whiteboard?", [path])
    assert task.state == "done"

    image, text = first_request_blocks(fake)[:2]
    assert image["type"] == "image" and image["source"]["media_type"] == "image/jpeg"
    shown = decoded(image)
    assert shown.size == (1176, 1568)  # longest side 1568, aspect kept, turned upright
    # Orientation 6 turns the picture clockwise: the red left half ends up on top.
    assert shown.convert("RGB").getpixel((588, 200))[0] > 200 and shown.convert("RGB").getpixel((588, 1400))[2] > 200
    assert text["type"] == "text" and text["text"].startswith("what's on this whiteboard?")
    assert f"{path} (JPEG image, " in text["text"] and "4032x3024, shown resized to 1176x1568" in text["text"]
    # The stored turn counts what the image costs the model, not its base64 length.
    with core.store.session() as s:
        turn = s.exec(select(Message).where(Message.task_id == task.id).order_by(Message.id)).first()
    assert 1176 * 1568 // 750 < turn.tokens < 1176 * 1568 // 750 + 200


async def test_an_image_that_fits_goes_as_its_own_bytes_and_formats_keep_their_type(core, fake, tmp_path):
    small = photo(inbox_path(core.settings.inbox, "chart.png"), (800, 600), fmt="PNG")
    gif = photo(inbox_path(core.settings.inbox, "anim.gif"), (300, 200), fmt="GIF")
    webp = photo(inbox_path(core.settings.inbox, "sticker.webp"), (512, 512), fmt="WEBP")
    clear = photo(inbox_path(core.settings.inbox, "logo.png"), (2400, 1000), fmt="PNG", mode="RGBA")
    misnamed = photo(inbox_path(core.settings.inbox, "scan.jpg"), (500, 400), fmt="PNG")  # a PNG named .jpg
    fake.reply("Five images.")
    assert (await run(core, "look", [small, gif, webp, clear, misnamed])).state == "done"

    images = [b for b in first_request_blocks(fake) if b["type"] == "image"]
    assert [b["source"]["media_type"] for b in images] == ["image/png", "image/gif", "image/webp", "image/png",
                                                           "image/png"]
    assert base64.b64decode(images[0]["source"]["data"]) == small.read_bytes()  # nothing to do: sent as is
    resized = decoded(images[3])
    assert resized.size == (1568, 653) and resized.mode == "RGBA"  # transparency kept
    assert "(PNG image, " in first_request_blocks(fake)[-1]["text"].split(str(misnamed))[1]


def test_bmp_and_tiff_are_converted_for_the_model(tmp_path):
    settings = files_settings(tmp_path)
    tiff = photo(inbox_path(settings.inbox, "scan.tif"), (2000, 1000), fmt="TIFF")
    bmp = photo(inbox_path(settings.inbox, "old.bmp"), (300, 200), fmt="BMP")
    content, _ = media.request_content(settings, "read these", [str(tiff), str(bmp)])
    shown = [decoded(b) for b in content if b["type"] == "image"]
    assert [(im.format, im.size) for im in shown] == [("JPEG", (1568, 784)), ("JPEG", (300, 200))]
    assert "(TIFF image, " in content[-1]["text"] and "(BMP image, " in content[-1]["text"]


async def test_a_short_pdf_goes_as_a_document_and_a_long_one_is_listed(core, fake):
    short = pdf(inbox_path(core.settings.inbox, "brief.pdf"), 3)
    allowed = media.pdf_pages_allowed(core.settings)
    long = pdf(inbox_path(core.settings.inbox, "annual report.pdf"), allowed + 1)
    fake.reply("Read it.")
    assert (await run(core, "summarise these", [short, long])).state == "done"

    blocks = first_request_blocks(fake)
    (doc,) = [b for b in blocks if b["type"] == "document"]
    assert doc["source"]["media_type"] == "application/pdf" and doc["title"] == "brief.pdf"
    assert base64.b64decode(doc["source"]["data"]) == short.read_bytes()
    listing = blocks[-1]["text"]
    assert f"{short} (PDF, " in listing and "3 pages, shown" in listing
    assert f"{long} (PDF, " in listing and f"{allowed + 1} pages, more than the {allowed} shown whole" in listing


async def test_older_photos_and_pdfs_leave_the_context_and_the_thread_stays_valid(core, fake):
    for n in range(6):
        fake.reply(f"photo {n} seen")
        path = photo(inbox_path(core.settings.inbox, f"p{n}.jpg"), (64, 48))
        assert (await run(core, f"photo {n}", [path])).state == "done"
    for n in range(2):
        fake.reply(f"pdf {n} read")
        assert (await run(core, f"pdf {n}", [pdf(inbox_path(core.settings.inbox, f"d{n}.pdf"), 1)])).state == "done"
    last = fake.requests[-1]["messages"]
    kinds = [b["type"] for m in last for b in m["content"] if m["role"] == "user"]
    assert kinds.count("image") == 3 and kinds.count("document") == 1  # the newest three, the newest PDF
    notes = [b["text"] for m in last for b in m["content"] if b["type"] == "text" and b["text"].startswith("[An earlier")]
    assert notes.count(context.OLD_PHOTO) == 3 and notes.count(context.OLD_DOCUMENT) == 1


def test_thinning_counts_screenshots_and_photos_together_oldest_first():
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    messages: list[dict[str, Any]] = [{"role": "user", "content": [image, {"type": "text", "text": "photo"}]}]
    for i in range(5):
        messages.append({"role": "assistant", "content": [{"type": "tool_use", "id": f"t{i}", "name": "computer",
                                                           "input": {}}]})
        messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{i}",
                                                      "content": [image]}]})
    context.thin_images(messages)
    assert messages[0]["content"][0] == {"type": "text", "text": context.OLD_PHOTO}  # the photo was oldest
    shots = [m["content"][0]["content"][0]["type"] for m in messages[2::2]]
    assert shots == ["text", "text", "image", "image", "image"]


# Files the model cannot see are listed, never lost ------------------------------------------


def test_every_file_is_listed_with_name_type_and_size(tmp_path):
    settings = files_settings(tmp_path)
    sheet = inbox_path(settings.inbox, "orders.xlsx")
    sheet.write_bytes(b"PK\x03\x04" + b"\0" * 2044)
    voice = inbox_path(settings.inbox, "memo.ogg")
    voice.write_bytes(b"OggS" + b"\0" * 100)
    heic = inbox_path(settings.inbox, "IMG_1.HEIC")
    heic.write_bytes(b"\0\0\0\x18ftypheic" + b"\0" * 50)
    content, _ = media.request_content(settings, "file these", [str(sheet), str(voice), str(heic),
                                                               str(tmp_path / "gone.txt")])
    assert len(content) == 1
    lines = content[0]["text"].splitlines()
    assert lines[0] == "file these" and lines[2] == "Attached files:"
    assert lines[3] == f"- {sheet} (Excel workbook, 2.0 KB)"
    assert lines[4] == f"- {voice} (audio, 104 B)"
    assert lines[5].startswith(f"- {heic} (HEIC image, 62 B; not shown: it is not an image the model can see")
    assert lines[6].startswith(f"- {tmp_path / 'gone.txt'} (file, 0 B; can't be opened")


def test_more_images_than_one_request_takes_are_listed_not_shown(tmp_path):
    settings = files_settings(tmp_path)
    paths = [str(photo(inbox_path(settings.inbox, f"p{n}.png"), (20, 20), fmt="PNG")) for n in range(12)]
    content, _ = media.request_content(settings, "sort these", paths)
    assert sum(1 for b in content if b["type"] == "image") == media.MAX_IMAGES
    assert content[-1]["text"].count("not shown: at most") == 12 - media.MAX_IMAGES


# The fake model refuses what the API refuses --------------------------------------------------


async def _send(fake: Any, *blocks: dict) -> None:
    client = anthropic.AsyncAnthropic(api_key="sk-ant-test", base_url=fake.url, max_retries=0)
    try:
        fake.reply("ok")
        await client.messages.create(model="claude-sonnet-4-6", max_tokens=10,
                                     messages=[{"role": "user", "content": [*blocks, {"type": "text", "text": "?"}]}])
    finally:
        await client.close()


def _img(media_type: str, data: bytes) -> dict:
    return {"type": "image", "source": {"type": "base64", "media_type": media_type,
                                        "data": base64.b64encode(data).decode()}}


@pytest.mark.parametrize("block, error", [
    (_img("image/bmp", b"BM"), "media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"),
    (_img("image/jpeg", b"\x89PNG\r\n\x1a\n" + b"\0" * 20), "Image does not match the provided media type image/jpeg"),
    ({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "not base64!"}},
     "Invalid base64 data"),
    (_img("image/png", b"\x89PNG\r\n\x1a\n" + b"\0" * 20), "Could not process image"),
    (_img("image/png", b"\x89PNG\r\n\x1a\n" + b"\0" * (4 * 1024 * 1024)), "image exceeds 5 MB maximum"),
    ({"type": "image", "title": "x", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
     "image.title: Extra inputs are not permitted"),
    ({"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                     "data": base64.b64encode(b"%PDF-1.7 not really").decode()}},
     "The PDF specified was not valid."),
])
async def test_the_fake_refuses_bad_media_blocks_as_the_api_does(fake, block, error):
    with pytest.raises(anthropic.BadRequestError) as info:
        await _send(fake, block)
    assert error in str(info.value)


async def test_the_fake_refuses_oversized_images_and_too_many_pages(fake, tmp_path):
    wide = io.BytesIO()
    Image.new("L", (8001, 10)).save(wide, "PNG")
    with pytest.raises(anthropic.BadRequestError, match="exceed max allowed size: 8000 pixels"):
        await _send(fake, _img("image/png", wide.getvalue()))
    many = io.BytesIO()
    Image.new("L", (2001, 10)).save(many, "PNG")
    with pytest.raises(anthropic.BadRequestError, match="many-image requests: 2000 pixels"):
        await _send(fake, *[_img("image/png", many.getvalue())] * 21)
    big = pdf(tmp_path / "big.pdf", 101).read_bytes()
    doc = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                          "data": base64.b64encode(big).decode()}}
    with pytest.raises(anthropic.BadRequestError, match="A maximum of 100 PDF pages may be provided."):
        await _send(fake, doc)
