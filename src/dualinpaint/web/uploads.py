"""Uploads at the edge of the web app: decoding untrusted image bytes (format allow-list, pixel cap
read from the header before decoding, EXIF orientation), reading form fields, encoding PNG results, and
collecting the inpainter's warnings per request thread. No FastAPI here."""

import io
import json
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image, ImageOps, UnidentifiedImageError

MB = 1 << 20
PACKAGE_DIR = Path(__file__).resolve().parent.parent
# Formats the server opens (JPEG includes camera MPO files; AVIF when Pillow has it). Everything else
# (EPS would start Ghostscript, …) is refused before decoding.
FORMATS = ("PNG", "JPEG", "WEBP", "AVIF", "BMP", "TIFF", "GIF")
ACCEPTED_TYPES = ("application/octet-stream", "")  # besides image/*: what clients send for unknown files


class Upload(NamedTuple):
    """One uploaded file of the multipart form."""

    data: bytes
    filename: str | None
    content_type: str | None


class UploadError(Exception):
    """A bad request: ``status`` is the HTTP code, the message is shown to the user as is."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------------------------------------ decoding


def decode_upload(
    data: bytes, *, field: str, filename: str | None, content_type: str | None, max_pixels: int
) -> Image.Image:
    """Uploaded bytes → a fully loaded PIL image with its EXIF orientation applied (mode kept).

    Raises ``UploadError``: 415 for a non-image content type or an unreadable format, 413 for more than
    ``max_pixels`` pixels (checked on the header, before decoding), 422 for an empty, truncated or
    corrupt file.
    """
    name = f"{field} ({filename})" if filename else field
    ctype = (content_type or "").split(";")[0].strip().lower()
    if not (ctype.startswith("image/") or ctype in ACCEPTED_TYPES):
        raise UploadError(415, f"{name}: expected an image file, got content type {ctype!r}")
    if not data:
        raise UploadError(422, f"{name} is empty")
    try:
        im = Image.open(io.BytesIO(data), formats=_formats())  # reads the header only
    except Image.DecompressionBombError as err:
        raise UploadError(413, f"{name} is too large: {err}") from None
    except UnidentifiedImageError:
        raise UploadError(
            415, f"{name} is not an image this server reads (PNG, JPEG, WebP, BMP, TIFF or GIF)"
        ) from None
    except Exception as err:  # Pillow raises many kinds of errors on malformed headers
        raise UploadError(422, f"{name} is corrupt: {err}") from None
    width, height = im.size
    if width * height > max_pixels:
        raise UploadError(
            413,
            f"{name} is {width}×{height} = {width * height / 1e6:.1f} MP; "
            f"this server accepts at most {max_pixels / 1e6:g} MP",
        )
    if width == 0 or height == 0:
        raise UploadError(422, f"{name} has no pixels ({width}×{height})")
    from ..images import frame_count  # torch is loaded by now: a fill follows

    frames = frame_count(im)
    try:
        im.load()
        image = ImageOps.exif_transpose(im)
    except Exception as err:
        raise UploadError(422, f"{name} is corrupt or truncated: {err}") from None
    if frames > 1:
        warnings.warn(f"{name} has {frames} frames; using the first", stacklevel=2)
    return image


def _formats() -> list[str]:
    """``FORMATS`` this Pillow build can open."""
    Image.init()
    return [f for f in FORMATS if f in Image.OPEN]


def size_text(n: float) -> str:
    """Bytes as "293 KB" or "20 MB"."""
    return f"{n / MB:.3g} MB" if n >= MB else f"{n / 1024:.3g} KB"


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes of ``image`` (its mode, ICC profile and EXIF kept)."""
    params: dict[str, Any] = {}
    for key in ("icc_profile", "exif", "dpi"):
        if image.info.get(key):
            params[key] = image.info[key]
    buf = io.BytesIO()
    image.save(buf, "PNG", **params)
    return buf.getvalue()


def _number_text(form: Any, name: str) -> str | None:
    """Form field ``name`` stripped, None when absent or blank; a 422 when it is a file."""
    raw = form.get(name)
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return None
    if not isinstance(raw, str):
        raise UploadError(422, f"{name} must be a number, not a file")
    return raw.strip()


def int_field(form: Any, name: str, default: int | None, lo: int, hi: int | None) -> int | None:
    """Form field ``name`` as an int in [lo, hi] (``default`` when absent or blank); else a 422."""
    text = _number_text(form, name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise UploadError(422, f"{name} must be a whole number, got {text[:40]!r}") from None
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise UploadError(422, f"{name} must be {bound}, got {value}")
    return value


def float_field(form: Any, name: str, default: float, lo: float, hi: float) -> float:
    """Form field ``name`` as a finite number in [lo, hi] (``default`` when absent or blank); else a 422."""
    text = _number_text(form, name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise UploadError(422, f"{name} must be a number, got {text[:40]!r}") from None
    if not lo <= value <= hi:  # NaN fails too
        raise UploadError(422, f"{name} must be between {lo:g} and {hi:g}, got {text[:40]}")
    return value


def bool_field(form: Any, name: str) -> bool:
    """Form field ``name`` as a bool (1/true/on/yes, 0/false/off/no or blank; absent: False); else a 422."""
    raw = form.get(name)
    if raw is None:
        return False
    text = raw.strip().lower() if isinstance(raw, str) else "?"
    if text in ("1", "true", "on", "yes"):
        return True
    if text in ("", "0", "false", "off", "no"):
        return False
    raise UploadError(422, f"{name} must be true or false, got {text[:40]!r}")


# ------------------------------------------------------------------------------------------------ warnings


class WarningRouter:
    """Collects the package's warnings per thread while several fills run at once.

    ``warnings.catch_warnings`` is process-wide and breaks when two threads enter and leave it out of
    order, so the first collecting thread opens one catch and the last one closes it. Meanwhile a warning
    raised from dualinpaint code in a collecting thread goes to that thread's list; any other warning goes
    to the handler that was installed before.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sinks: dict[int, list[str]] = {}
        self._catch: warnings.catch_warnings | None = None
        self._previous: Callable[..., Any] = warnings.showwarning

    @contextmanager
    def collect(self) -> Iterator[list[str]]:
        sink: list[str] = []
        ident = threading.get_ident()
        with self._lock:
            if not self._sinks:
                self._catch = warnings.catch_warnings()
                self._catch.__enter__()
                warnings.filterwarnings("always", category=UserWarning)  # no once-per-location dedup
                self._previous = warnings.showwarning
                warnings.showwarning = self._show
            self._sinks[ident] = sink
        try:
            yield sink
        finally:
            with self._lock:
                del self._sinks[ident]
                if not self._sinks and self._catch is not None:
                    self._catch.__exit__(None, None, None)
                    self._catch = None

    def _show(self, message, category, filename, lineno, file=None, line=None) -> None:
        sink = self._sinks.get(threading.get_ident())
        if sink is not None and Path(filename).resolve().is_relative_to(PACKAGE_DIR):
            sink.append(str(message))
        else:
            self._previous(message, category, filename, lineno, file, line)


ROUTER = WarningRouter()


def header_value(messages: list[str]) -> str:
    """A JSON list of ASCII strings (header values must be latin-1; keep them plain ASCII)."""
    return json.dumps([m.replace("×", "x") for m in messages], ensure_ascii=True)
