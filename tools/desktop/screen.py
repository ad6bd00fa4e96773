"""The screen as the computer tool sees it: is there a display, how big is it, and
what does it show, scaled to the size the model works in.

The model works in a smaller coordinate space than the real screen: Anthropic
recommends screenshots of about 1280x800 (larger ones are downscaled by the API
anyway, and cost more tokens while making clicks less precise). So a screenshot
is scaled down to fit `DISPATCH_COMPUTER_DISPLAY` (default 1280x800) keeping its
aspect ratio, the tool definition announces that size, and every coordinate the
model sends is mapped back to the real screen with the same factor. A screen
that already fits is used as is.

Screenshots come from mss (fast, no extra system tools). On Linux a display means
an X server in $DISPLAY (a Wayland session provides one through XWayland);
macOS and Windows always have one while someone is logged in.
"""

from __future__ import annotations

import base64
import io
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tools.registry import ToolError

if TYPE_CHECKING:
    from PIL.Image import Image

    from store.config import Settings

DEFAULT_LIMIT = (1280, 800)
SIZE_TTL_S = 30.0  # the screen size is read again at most this often (it rarely changes)


def display_problem() -> str | None:
    """Why there is no usable display, in a sentence the owner can act on; None if there is one."""
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        if os.environ.get("WAYLAND_DISPLAY"):
            return ("This is a Wayland session without XWayland ($DISPLAY is not set); computer control "
                    "needs an X display (enable XWayland, or log in to an X11 session).")
        return ("There is no display: $DISPLAY is not set (Dispatch is running headless, e.g. as a service "
                "started before the desktop session, or over SSH). Computer control needs a logged-in "
                "desktop; for a service run `systemctl --user import-environment DISPLAY XAUTHORITY` "
                "in the desktop session and restart it.")
    return None


def has_display() -> bool:
    return display_problem() is None


@dataclass(frozen=True)
class Geometry:
    """The real screen (its origin and size) and the size the model sees."""

    left: int
    top: int
    width: int
    height: int
    shown_width: int
    shown_height: int

    @property
    def scale(self) -> float:
        """Shown pixels per real pixel (1.0 when the screen fits)."""
        return self.shown_width / self.width

    def to_screen(self, x: int, y: int) -> tuple[int, int]:
        """A point the model named (in the shown image) on the real screen."""
        if not (0 <= x < self.shown_width and 0 <= y < self.shown_height):
            raise ToolError(f"({x}, {y}) is outside the screen, which is {self.shown_width}x{self.shown_height} "
                            "in the screenshots; take a screenshot and use coordinates inside it.")
        sx = min(self.width - 1, round(x * self.width / self.shown_width))
        sy = min(self.height - 1, round(y * self.height / self.shown_height))
        return self.left + sx, self.top + sy

    def to_shown(self, x: int, y: int) -> tuple[int, int]:
        """A point on the real screen in the model's coordinates."""
        sx = round((x - self.left) * self.shown_width / self.width)
        sy = round((y - self.top) * self.shown_height / self.height)
        return (max(0, min(self.shown_width - 1, sx)), max(0, min(self.shown_height - 1, sy)))


def fit(width: int, height: int, limit: tuple[int, int]) -> tuple[int, int]:
    """The largest size within `limit` with the screen's aspect ratio (never upscaled)."""
    scale = min(1.0, limit[0] / width, limit[1] / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def parse_limit(text: str) -> tuple[int, int]:
    """`DISPATCH_COMPUTER_DISPLAY=1280x800` -> (1280, 800)."""
    try:
        w, h = (int(p) for p in text.lower().replace(" ", "").split("x"))
    except ValueError:
        raise ValueError(f"{text!r} is not a size like 1280x800") from None
    if not (320 <= w <= 4096 and 240 <= h <= 4096):
        raise ValueError(f"{text!r} is outside 320x240 .. 4096x4096")
    return w, h


def _mss() -> Any:
    import mss

    factory = getattr(mss, "MSS", None) or mss.mss  # mss 10 renamed the factory
    return factory()


_size_cache: dict[str, tuple[float, tuple[int, int, int, int]]] = {}
_size_lock = threading.Lock()


def _monitor() -> tuple[int, int, int, int]:
    """(left, top, width, height) of the primary monitor, cached for SIZE_TTL_S."""
    key = os.environ.get("DISPLAY", "")
    with _size_lock:
        hit = _size_cache.get(key)
        if hit and time.monotonic() - hit[0] < SIZE_TTL_S:
            return hit[1]
    problem = display_problem()
    if problem:
        raise ToolError(problem)
    try:
        with _mss() as sct:
            monitors = sct.monitors
            mon = monitors[1] if len(monitors) > 1 else monitors[0]
    except Exception as exc:  # mss raises its own ScreenShotError, or Xlib/ctypes errors
        raise ToolError(f"Could not read the screen ({type(exc).__name__}: {exc}). "
                        "Is the desktop session running and unlocked?") from None
    box = (int(mon["left"]), int(mon["top"]), int(mon["width"]), int(mon["height"]))
    with _size_lock:
        _size_cache[key] = (time.monotonic(), box)
    return box


def geometry(settings: "Settings") -> Geometry:
    left, top, width, height = _monitor()
    shown = fit(width, height, limit_of(settings))
    return Geometry(left, top, width, height, *shown)


def limit_of(settings: "Settings") -> tuple[int, int]:
    raw = getattr(settings, "computer_display", "") or ""
    try:
        return parse_limit(raw) if raw else DEFAULT_LIMIT
    except ValueError:
        return DEFAULT_LIMIT  # Settings.problems() reports it at start-up


def shown_size(settings: "Settings") -> tuple[int, int]:
    """The size the tool definition announces. Without a display, the configured limit
    (the tool then explains that there is no display when it is used)."""
    try:
        g = geometry(settings)
    except ToolError:
        return limit_of(settings)
    return g.shown_width, g.shown_height


def grab(settings: "Settings", region: tuple[int, int, int, int] | None = None, *,
         full: bool = False) -> tuple["Image", Geometry]:
    """The primary screen (or `region`, in the model's coordinates: x1, y1, x2, y2) as a
    PIL image the size the model sees (`full`: the real size, for the owner's /screenshot)."""
    from PIL import Image

    g = geometry(settings)
    box = {"left": g.left, "top": g.top, "width": g.width, "height": g.height}
    out_size = (g.width, g.height) if full else (g.shown_width, g.shown_height)
    if region is not None:
        x1, y1 = g.to_screen(min(region[0], region[2]), min(region[1], region[3]))
        x2, y2 = g.to_screen(max(region[0], region[2]), max(region[1], region[3]))
        w, h = max(1, x2 - x1), max(1, y2 - y1)
        box = {"left": x1, "top": y1, "width": w, "height": h}
        out_size = fit(w, h, (g.shown_width, g.shown_height)) if w > g.shown_width or h > g.shown_height \
            else _upscale(w, h, (g.shown_width, g.shown_height))
    try:
        with _mss() as sct:
            shot = sct.grab(box)
    except Exception as exc:
        raise ToolError(f"Could not take a screenshot ({type(exc).__name__}: {exc}).") from None
    image = Image.frombytes("RGB", shot.size, shot.bgra, "raw", "BGRX")
    if image.size != out_size:
        image = image.resize(out_size, Image.Resampling.LANCZOS)
    return image, g


def _upscale(w: int, h: int, limit: tuple[int, int]) -> tuple[int, int]:
    """A zoomed region is enlarged to fill the shown size (so small text becomes legible)."""
    scale = min(limit[0] / w, limit[1] / h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def png_bytes(image: "Image") -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


MAX_PNG_BYTES = 600_000  # a busier screen (photos, video) goes as JPEG: same tokens, far fewer bytes


def image_block(image: "Image") -> dict[str, Any]:
    """A screenshot as a Messages API image block. PNG keeps small text crisp and is
    small for ordinary app windows; a screen full of photos would make a PNG of
    megabytes (sent with every call, stored in the thread), so it goes as JPEG."""
    raw, media = png_bytes(image), "image/png"
    if len(raw) > MAX_PNG_BYTES:
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="JPEG", quality=85)
        raw, media = buf.getvalue(), "image/jpeg"
    data = base64.standard_b64encode(raw).decode("ascii")
    return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
