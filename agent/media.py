"""Files attached to a request, as the model receives them.

A photo or image file becomes an Anthropic `image` content block, a short PDF a
`document` block, so the model sees them; every attached file, shown or not, is also
listed by its saved path, type and size, so tools can read, attach or send it on.

Images. JPEG, PNG, GIF and WebP are what the API accepts (BMP and TIFF are converted;
other formats, such as HEIC without a Pillow plugin, are listed). An image is resized so its
longest side is at most 1568 px (the API's native resolution: anything larger is
scaled down on their side anyway, and costs upload time and tokens), keeping its
aspect ratio, with its EXIF orientation applied (a phone photo taken upright stays
upright). Pillow reads the header before decoding anything, so a decompression bomb
(a 50000x50000 PNG of a few KB) is refused by its pixel count before a byte of it is
decoded. A JPEG (up to 50 MP) is decoded at a reduced scale (Pillow's draft mode);
other formats are decoded whole, so they are opened up to 25 MP: about 200 MB at
worst, for a moment (bench/media_bench.py measures it). An image that fits already (size, orientation,
format) goes as its original bytes.

PDFs. The API takes a PDF as a `document` block (base64) up to 32 MB per request and
100 pages (for models with a 200k context); each page costs roughly 1,500-3,000
tokens, so a PDF is shown whole only while it fits a fair share of the context budget
(DISPATCH_CONTEXT_TOKENS); a longer one is listed, and the model reads it a page at a
time with read_text. A file that says PDF but is not one, or is encrypted, is listed
with the reason.

Nothing here raises for a bad file: a refusal becomes a plain note next to the file's
line, and the file stays in the inbox, usable by the tools.
"""

from __future__ import annotations

import base64
import io
import logging
import mimetypes
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # Pillow is imported with the first image, not with Dispatch
    from PIL import Image

from store.config import Settings
from tools.documents.readers import human_size

log = logging.getLogger("dispatch.media")

MAX_SIDE = 1568  # px, the longest side the model sees natively
MAX_IMAGE_FILE = 50 * 1024 * 1024  # an image file larger than this is not opened
MAX_PIXELS = 50_000_000  # width * height of a JPEG (decoded at reduced scale): a 50 MP photo passes
MAX_FULL_PIXELS = 25_000_000  # other formats are decoded whole: ~100-200 MB at most, then resized
MAX_IMAGE_BASE64 = 5 * 1024 * 1024  # the API's limit on one image's base64 text
MAX_IMAGES = 10  # images shown per request; more are listed (each costs ~1,600-3,300 tokens)
IMAGE_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
CONVERTED = {"BMP", "TIFF"}  # scans and old screenshots: re-encoded as PNG or JPEG for the model

MAX_PDF_BYTES = 16 * 1024 * 1024  # ~21 MB as base64: the request stays under the API's 32 MB
MAX_PDF_PAGES = 100  # the API's limit for models with a 200k-token context
PDF_PAGE_TOKENS = 3_000  # the upper end of Anthropic's per-page estimate (text plus page image)

_LABELS = {
    ".csv": "CSV", ".tsv": "TSV", ".txt": "text", ".md": "Markdown", ".json": "JSON", ".pdf": "PDF",
    ".docx": "Word document", ".doc": "Word document (old format)", ".xlsx": "Excel workbook",
    ".xls": "Excel workbook (old format)", ".pptx": "PowerPoint deck", ".zip": "ZIP archive",
    ".ogg": "audio", ".oga": "audio", ".mp3": "audio", ".m4a": "audio", ".wav": "audio", ".mp4": "video",
    ".heic": "HEIC image", ".jpg": "image", ".jpeg": "image", ".png": "image", ".gif": "image", ".webp": "image",
}


class Refused(Exception):
    """Why a file is not shown to the model, in words for the model and the owner."""


@dataclass
class Attachment:
    """One attached file: its line in the request, and the block that shows it (if any)."""

    path: Path
    label: str
    size: int
    block: dict[str, Any] | None = None
    detail: str = ""  # "4032x3024, shown resized to 1568x1176", or why it is not shown
    tokens: int = 0  # what the block costs the model, roughly

    def line(self) -> str:
        extra = f"; {self.detail}" if self.detail else ""
        return f"- {self.path} ({self.label}, {human_size(self.size)}{extra})"


def request_content(settings: Settings, text: str, files: list[str]) -> tuple[list[dict[str, Any]], int]:
    """The first user message of a task: the image and document blocks first (the model
    reads a picture before the question about it best), then the request's text with
    every attached file listed. Returns the blocks and their estimated token cost."""
    attachments = [describe(settings, Path(f)) for f in files]
    shown = 0
    for a in attachments:
        if a.block is not None and a.block["type"] == "image":
            shown += 1
            if shown > MAX_IMAGES:
                a.block, a.tokens = None, 0
                a.detail = f"not shown: at most {MAX_IMAGES} images go with one request; ask to see it later"
    blocks = [a.block for a in attachments if a.block is not None]
    if attachments:
        text = (text.strip() or "(no text)") + "\n\nAttached files:\n" + "\n".join(a.line() for a in attachments)
    content = [*blocks, {"type": "text", "text": text}]
    return content, len(text) // 4 + 1 + sum(a.tokens for a in attachments)


def describe(settings: Settings, path: Path) -> Attachment:
    """What the model gets for one file. Never raises for the file's sake."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return Attachment(path, "file", 0, detail=f"can't be opened: {exc.strerror or exc}")
    suffix = path.suffix.lower()
    label = _LABELS.get(suffix) or mimetypes.guess_type(path.name)[0] or "file"
    att = Attachment(path, label, size)
    try:
        if suffix == ".pdf" or _starts_with(path, b"%PDF-"):
            att.label = "PDF"
            att.block, att.detail, att.tokens = pdf_block(settings, path, size)
        elif label in ("image", "HEIC image") or (mimetypes.guess_type(path.name)[0] or "").startswith("image/"):
            att.block, fmt, att.detail, att.tokens = image_block(path, size)
            att.label = f"{fmt} image"
    except Refused as exc:
        att.detail = str(exc)
    except Exception as exc:  # a file must never take the task down: list it with the reason
        log.warning("could not prepare %s: %r", path, exc)
        att.detail = f"not shown: it could not be read ({type(exc).__name__})"
    return att


# Images -------------------------------------------------------------------------------


def image_block(path: Path, size: int | None = None) -> tuple[dict[str, Any], str, str, int]:
    """(image block, format, detail, tokens) for an image file; Refused with the reason."""
    from PIL import Image, UnidentifiedImageError

    name = path.name
    size = path.stat().st_size if size is None else size
    if size > MAX_IMAGE_FILE:
        raise Refused(f"not shown: {human_size(size)} is too large an image to open "
                      f"(the limit is {human_size(MAX_IMAGE_FILE)})")
    with warnings.catch_warnings():
        # Pillow warns above its own pixel limit and raises at twice it; ours is lower, and checked first.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(path)
        except Image.DecompressionBombError:
            raise Refused(f"not shown: {name} claims to be an enormous image (a decompression bomb?); "
                          "it was not opened") from None
        except UnidentifiedImageError:
            raise Refused("not shown: it is not an image the model can see (JPEG, PNG, GIF or WebP); "
                          "convert it, or ask for what you need from it by name") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise Refused(f"not shown: the image is damaged ({exc})") from None
        with im:
            try:
                return _image_from(im, path, size)
            except (OSError, SyntaxError, ValueError, EOFError) as exc:  # truncated or corrupt data
                raise Refused(f"not shown: the image is damaged ({exc})") from None


def _image_from(im: Image.Image, path: Path, size: int) -> tuple[dict[str, Any], str, str, int]:
    from PIL import Image, ImageOps

    fmt = im.format or "?"
    width, height = im.size
    if fmt not in IMAGE_FORMATS and fmt not in CONVERTED:
        raise Refused(f"not shown: {fmt} is not a format the model can see (JPEG, PNG, GIF or WebP)")
    limit = MAX_PIXELS if fmt == "JPEG" else MAX_FULL_PIXELS
    if width < 1 or height < 1 or width * height > limit:
        raise Refused(f"not shown: {width}x{height} pixels is more than the {limit // 1_000_000} megapixels "
                      f"Dispatch opens as {fmt} (it may be a decompression bomb)")
    orientation = im.getexif().get(0x0112, 1)  # EXIF Orientation; 1 = upright as stored
    animated = getattr(im, "is_animated", False)  # not n_frames: that walks every frame of a hostile GIF
    if (fmt in IMAGE_FORMATS and max(width, height) <= MAX_SIDE and orientation in (1, None) and not animated
            and _b64_len(size) <= MAX_IMAGE_BASE64):
        im.load()  # a truncated or corrupt file fails here, not at the API
        data = path.read_bytes()
        return (_image(IMAGE_FORMATS[fmt], data), fmt, f"{width}x{height}, shown",
                _image_tokens(width, height))
    # A JPEG is decoded at the smallest DCT scale still at least the target size (reducing_gap=1),
    # which halves the work for a 12 MP photo; bicubic then makes the final size (from at most
    # twice it, where Lanczos is no sharper to the model and costs twice the time).
    im.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BICUBIC, reducing_gap=1.0)
    im = ImageOps.exif_transpose(im)
    media_type, data = _encode(im)
    w, h = im.size
    shown = f"{width}x{height}, shown resized to {w}x{h}" if (w, h) not in ((width, height), (height, width)) \
        else f"{width}x{height}, shown"
    return _image(media_type, data), fmt, shown, _image_tokens(w, h)


def _encode(im: Image.Image) -> tuple[str, bytes]:
    """PNG keeps transparency and sharp text (a screenshot); a photo goes as JPEG."""
    from PIL import Image

    has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
    if has_alpha or im.mode in ("1", "L", "P"):
        out = io.BytesIO()
        im.save(out, "PNG", optimize=False)
        if _b64_len(out.tell()) <= MAX_IMAGE_BASE64:
            return "image/png", out.getvalue()
    if im.mode != "RGB":
        flat = Image.new("RGB", im.size, "white")
        rgba = im.convert("RGBA")
        flat.paste(rgba, mask=rgba.getchannel("A"))
        im = flat
    for quality in (85, 70, 50):
        out = io.BytesIO()
        im.save(out, "JPEG", quality=quality)
        if _b64_len(out.tell()) <= MAX_IMAGE_BASE64:
            break
    return "image/jpeg", out.getvalue()


def _image(media_type: str, data: bytes) -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": media_type,
                                        "data": base64.b64encode(data).decode("ascii")}}


def _image_tokens(width: int, height: int) -> int:
    return width * height // 750 + 1  # Anthropic's estimate for an image the model sees


def _b64_len(n: int) -> int:
    return (n + 2) // 3 * 4


# PDFs -----------------------------------------------------------------------------------


def pdf_pages_allowed(settings: Settings) -> int:
    """Pages shown whole: the API's limit, or half the context budget, whichever is less."""
    return max(1, min(MAX_PDF_PAGES, settings.context_tokens // 2 // PDF_PAGE_TOKENS))


def pdf_block(settings: Settings, path: Path, size: int) -> tuple[dict[str, Any] | None, str, int]:
    """(document block or None, detail, tokens). A PDF too long to show is listed only."""
    import pypdf  # imported here: most requests carry no PDF
    from pypdf.errors import PyPdfError

    read_it = "read it with read_text"
    if not _starts_with(path, b"%PDF-", within=1024):
        raise Refused(f"not shown: it is named like a PDF but is not one; {read_it} if it is text")
    if size > MAX_PDF_BYTES:
        return None, f"too large to show whole (over {human_size(MAX_PDF_BYTES)}); {read_it}", 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = pypdf.PdfReader(path, strict=False)
            if reader.is_encrypted:
                raise Refused("not shown: it is encrypted (password-protected); ask the owner for an "
                              "unprotected copy")
            pages = len(reader.pages)
    except (PyPdfError, ValueError, KeyError, TypeError, RecursionError, OSError) as exc:
        raise Refused(f"not shown: it is a damaged PDF ({type(exc).__name__}); {read_it} may still work") from None
    if pages < 1:
        raise Refused("not shown: the PDF has no pages")
    limit = pdf_pages_allowed(settings)
    if pages > limit:
        return None, f"{pages} pages, more than the {limit} shown whole; {read_it}, a part at a time", 0
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    block = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": data},
             "title": path.name}
    return block, f"{pages} page{'s' if pages != 1 else ''}, shown", pages * PDF_PAGE_TOKENS


def _starts_with(path: Path, magic: bytes, within: int = 0) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(len(magic) + within)
    except OSError:
        return False
    return head.startswith(magic) if not within else magic in head
