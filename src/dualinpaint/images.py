"""Conversions at the edges: PIL images and files ↔ the package's tensor convention.

Inside the package an image is a float tensor N×3×H×W, RGB, in [-1, 1], and a mask is a float tensor
N×1×H×W in {0, 1} with 1 = hole. Mask *files* are white = hole. Only this module (and the readers and
writers that call it) knows about uint8, HWC or PIL.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file fully (not lazily), with its EXIF orientation applied.

    Raises ``ValueError`` with a one-line message when the file is missing or not a readable image.
    """
    try:
        with Image.open(path) as im:
            im.load()
            return ImageOps.exif_transpose(im)
    except FileNotFoundError:
        raise ValueError(f"no such image file: {path}") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Return an RGB copy of any Pillow image (alpha composited on black is *not* done: alpha is dropped)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float64)
        hi = 65535.0 if arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if image.mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        hi = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
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
    image.save(buf, format=fmt, **params)
    atomic_write_bytes(path, buf.getvalue())


def list_images(root: str | os.PathLike) -> list[Path]:
    """All image files under ``root`` (recursive), sorted by path."""
    root = Path(root)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
