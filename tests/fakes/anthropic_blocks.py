"""Image and document blocks, checked as Anthropic's Messages API checks them.

From the vision and PDF-support docs: base64 images of type image/jpeg, image/png,
image/gif or image/webp, whose bytes really are that format; at most 5 MB of base64
per image; at most 8000x8000 px (2000x2000 when a request carries more than 20
images); base64 PDFs of media type application/pdf that parse, at most 100 pages; a
request of at most 32 MB. Unknown fields in a block are refused. Error texts follow
the API's `path: message` form.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from typing import Any, Iterator

MAX_REQUEST_BYTES = 32 * 1024 * 1024
MAX_IMAGE_BASE64 = 5 * 1024 * 1024
MAX_SIDE, MAX_SIDE_MANY, MANY = 8000, 2000, 20
MAX_PDF_PAGES = 100
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_MAGIC = {"image/jpeg": (b"\xff\xd8\xff",), "image/png": (b"\x89PNG\r\n\x1a\n",),
          "image/gif": (b"GIF87a", b"GIF89a"), "image/webp": (b"RIFF",)}
_FIELDS = {"image": {"type", "source", "cache_control"},
           "document": {"type", "source", "title", "context", "citations", "cache_control"}}


class MediaInvalid(Exception):
    """A block the real API answers with 400 invalid_request_error."""


def media_blocks(body: dict) -> Iterator[tuple[str, dict]]:
    """(path, block) of every image and document block, in user turns and tool results."""
    for n, msg in enumerate(body.get("messages") or []):
        content = msg.get("content")
        if not isinstance(content, list):
            continue
        for c, block in enumerate(content):
            if not isinstance(block, dict):
                continue
            if block.get("type") in _FIELDS:
                yield f"messages.{n}.content.{c}", block
            inner = block.get("content") if block.get("type") == "tool_result" else None
            for i, part in enumerate(inner if isinstance(inner, list) else []):
                if isinstance(part, dict) and part.get("type") in _FIELDS:
                    yield f"messages.{n}.content.{c}.content.{i}", part


def validate_media(body: dict) -> None:
    blocks = list(media_blocks(body))
    images = sum(1 for _, b in blocks if b["type"] == "image")
    pages = 0
    for path, block in blocks:
        extra = sorted(set(block) - _FIELDS[block["type"]])
        if extra:
            raise MediaInvalid(f"{path}.{block['type']}.{extra[0]}: Extra inputs are not permitted")
        if block["type"] == "image":
            _image(path, block, images)
        else:
            pages += _document(path, block)
    if pages > MAX_PDF_PAGES:
        raise MediaInvalid(f"A maximum of {MAX_PDF_PAGES} PDF pages may be provided.")


def _source(path: str, block: dict, kinds: tuple[str, ...]) -> tuple[dict, bytes]:
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") != "base64":
        raise MediaInvalid(f"{path}.{block['type']}.source: Input tag {source and source.get('type')!r} found "
                           "using 'type' does not match any of the expected tags: 'base64'")
    where = f"{path}.{block['type']}.source.base64"
    if source.get("media_type") not in kinds:
        quoted = [repr(k) for k in kinds]  # pydantic's wording: 'a', 'b' or 'c'
        allowed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
        raise MediaInvalid(f"{where}.media_type: Input should be {allowed}")
    data = source.get("data")
    if not isinstance(data, str) or not data:
        raise MediaInvalid(f"{where}.data: Field required")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise MediaInvalid(f"{where}.data: Invalid base64 data") from None
    return source, raw


def _image(path: str, block: dict, count: int) -> None:
    from PIL import Image

    source, raw = _source(path, block, IMAGE_TYPES)
    where = f"{path}.image.source.base64"
    if len(source["data"]) > MAX_IMAGE_BASE64:
        raise MediaInvalid(f"{where}: image exceeds 5 MB maximum: {len(source['data'])} bytes > "
                           f"{MAX_IMAGE_BASE64} bytes")
    media_type = source["media_type"]
    if not raw.startswith(_MAGIC[media_type]) or (media_type == "image/webp" and raw[8:12] != b"WEBP"):
        raise MediaInvalid(f"{where}.data: Image does not match the provided media type {media_type}")
    from PIL import ImageFile

    # libpng, like most decoders, drops an ancillary chunk whose CRC is wrong and goes on (the
    # MCP reference server's tiny image has such an iCCP chunk); Pillow does so only with
    # this switch, which skips CRCs of ancillary chunks alone. Critical chunks are still checked.
    lenient, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(raw)) as im:
                width, height = im.size
                im.load()
    except Exception:
        raise MediaInvalid(f"{where}.data: Could not process image") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = lenient
    limit = MAX_SIDE_MANY if count > MANY else MAX_SIDE
    if max(width, height) > limit:
        many = " for many-image requests" if count > MANY else ""
        raise MediaInvalid(f"{where}.data: At least one of the image dimensions exceed max allowed size{many}: "
                           f"{limit} pixels")


def _document(path: str, block: dict) -> int:
    import pypdf

    _, raw = _source(path, block, ("application/pdf",))
    title = block.get("title")
    if title is not None and not isinstance(title, str):
        raise MediaInvalid(f"{path}.document.title: Input should be a valid string")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = pypdf.PdfReader(io.BytesIO(raw), strict=False)
            if not raw.startswith(b"%PDF-") or reader.is_encrypted:
                raise ValueError("not a plain PDF")
            return len(reader.pages)
    except Exception:
        raise MediaInvalid(f"{path}.pdf.source.base64.data: The PDF specified was not valid.") from None
