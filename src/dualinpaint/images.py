"""Conversions at the edges: PIL images and files ↔ the package's tensor convention.

Inside the package an image is a float tensor N×3×H×W, RGB, in [-1, 1], and a mask is a float tensor
N×1×H×W in {0, 1} with 1 = hole. Mask *files* are white = hole. Only this module (and the readers and
writers that call it) knows about uint8, HWC or PIL.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


class ImageTooLarge(ValueError):
    """An image has more pixels than allowed (a decompression bomb, or just too big to handle)."""


def open_image(path: str | os.PathLike, max_pixels: int | None = None) -> Image.Image:
    """Open an image file fully (not lazily), with its EXIF orientation applied.

    Raises ``ValueError`` with a one-line message when the file is missing or not a readable image, and
    ``ImageTooLarge`` (a ``ValueError``) when it has more than ``max_pixels`` pixels, checked on the header
    before anything is decoded (default: Pillow's decompression-bomb limit, 2 × ``Image.MAX_IMAGE_PIXELS``).
    A file with several frames (animated GIF, APNG, WebP, multi-page TIFF) gives its first frame and a
    warning.
    """
    if max_pixels is None and Image.MAX_IMAGE_PIXELS is not None:
        max_pixels = 2 * Image.MAX_IMAGE_PIXELS
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise ValueError(f"cannot read image {path}: the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # the size is checked here, on our own terms: Pillow's 1×–2× band would print a multi-line
            # DecompressionBombWarning and decode anyway
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                check_pixels(im.size, max_pixels, path)
                frames = frame_count(im)
                im.load()
                image = ImageOps.exif_transpose(im)
    except ImageTooLarge:
        raise
    except UnidentifiedImageError:
        raise ValueError(
            f"cannot read image {path}: not an image file, or a format Pillow cannot read"
        ) from None
    except FileNotFoundError:
        raise ValueError(f"no such image file: {path}") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a folder, not an image file") from None
    except Image.DecompressionBombError as err:
        raise ImageTooLarge(f"{path} is too large to decode safely: {_one_line(err)}") from None
    except MemoryError:
        raise ValueError(f"not enough memory to decode {path}") from None
    except Exception as err:  # Pillow raises many kinds of errors (struct.error, …) on malformed files
        raise ValueError(f"cannot read image {path}: {_one_line(err)}") from None
    if frames > 1:
        warnings.warn(f"{Path(path).name} has {frames} frames; using the first", stacklevel=2)
    return image


def check_pixels(size: tuple[int, int], max_pixels: int | None, name: object) -> None:
    """Raise ``ImageTooLarge`` when ``size`` (W, H) has more than ``max_pixels`` pixels (None: no limit)."""
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLarge(
            f"{name} is {width}×{height} = {width * height / 1e6:.1f} MP, more than the limit of "
            f"{max_pixels / 1e6:g} MP (a decompression bomb?)"
        )


def frame_count(im: Image.Image) -> int:
    """Number of frames of an animated or multi-page image (1 for a still; camera MPO files count 1)."""
    if im.format == "MPO":  # a JPEG with its preview/stereo images: the first is the photo
        return 1
    try:
        return int(getattr(im, "n_frames", 1))
    except Exception:  # a corrupt frame index: the first frame is what gets decoded anyway
        return 1


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 300 else text[:297] + "…"


def to_rgb(image: Image.Image) -> Image.Image:
    """Return an RGB copy of any Pillow image (alpha composited on black is *not* done: alpha is dropped)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        top = float(arr.max(initial=0))
        if image.mode.startswith("I;16"):
            hi = 65535.0  # 16-bit samples: a dark 16-bit image stays dark
        elif image.mode == "I":
            hi = 65535.0 if top > 255 else 255.0  # 32-bit ints: 16-bit data (old Pillow PNGs) or 8-bit
        else:
            hi = 1.0 if top <= 1.0 else 255.0  # floats: [0, 1] or [0, 255]
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if image.mode == "La":  # premultiplied: Pillow converts it to LA only
        image = image.convert("LA")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image (any mode) → float tensor 1×3×H×W in [-1, 1]."""
    arr = np.asarray(to_rgb(image), dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).div(127.5).sub(1.0).contiguous()


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """Float tensor 3×H×W or 1×3×H×W in [-1, 1] → RGB PIL image (rounded, clipped)."""
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"tensor_to_pil takes one image, got a batch of {image.shape[0]}")
        image = image[0]
    arr = image.detach().float().cpu().add(1.0).mul(127.5).round().clamp(0, 255)
    return Image.fromarray(arr.permute(1, 2, 0).to(torch.uint8).numpy(), "RGB")


def mask_to_tensor(mask: Image.Image, threshold: int = 127, invert: bool = False) -> torch.Tensor:
    """Mask image (white = hole, any mode) → float tensor 1×1×H×W in {0, 1}, 1 = hole.

    Pixels brighter than ``threshold`` are holes. A mask with an alpha channel uses its alpha where the
    colour channels are uniform (a transparent-background brush layer). ``invert`` swaps the convention.
    """
    if mask.mode in ("RGBA", "LA", "PA") or (mask.mode == "P" and "transparency" in mask.info):
        rgba = mask.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"))
        grey = np.asarray(rgba.convert("L"))
        arr = alpha if grey.min() == grey.max() and alpha.min() != alpha.max() else grey
    else:
        arr = np.asarray(to_rgb(mask).convert("L"))
    hole = arr > threshold
    if invert:
        hole = ~hole
    return torch.from_numpy(hole.astype(np.float32))[None, None]


def tensor_to_mask(mask: torch.Tensor) -> Image.Image:
    """Float mask 1×1×H×W or H×W (1 = hole) → L-mode PIL image, white = hole."""
    arr = (mask.detach().cpu().reshape(mask.shape[-2], mask.shape[-1]) > 0.5).numpy().astype(np.uint8) * 255
    return Image.fromarray(arr, "L")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_image_atomic(
    image: Image.Image, path: str | os.PathLike, format: str | None = None, **params
) -> None:
    """Save a PIL image atomically (temporary file + rename); format from the suffix unless given."""
    import io

    path = Path(path)
    fmt = format or Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the image format from the file name {path.name!r}")
    buf = io.BytesIO()
    try:
        image.save(buf, format=fmt, **params)
    except (OSError, ValueError, KeyError) as err:  # this format cannot store the mode (LA as BMP, …)
        mode = "RGBA" if image.mode in ("LA", "PA", "RGBa") else "RGB"
        if image.mode == mode:
            raise ValueError(f"cannot write {path.name} as {fmt}: {_one_line(err)}") from None
        buf = io.BytesIO()
        try:
            image.convert(mode).save(buf, format=fmt, **params)
        except (OSError, ValueError, KeyError) as err2:
            raise ValueError(
                f"cannot write a {image.mode} image as {fmt} ({path.name}): {_one_line(err2)}"
            ) from None
        warnings.warn(f"{path.name}: {fmt} cannot store mode {image.mode}; saved as {mode}", stacklevel=2)
    atomic_write_bytes(path, buf.getvalue())


def list_images(root: str | os.PathLike) -> list[Path]:
    """All image files under ``root`` (recursive), sorted by path."""
    root = Path(root)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
