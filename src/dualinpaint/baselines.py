"""Classical (non-learned) inpainting baselines behind one signature.

Every baseline is ``fn(image, mask) -> image`` with ``image`` a float tensor N×3×H×W in [-1, 1] (usually
N = 1), ``mask`` N×1×H×W (or 1×1×H×W) with 1 = hole, binarised at 0.5. The image is quantised to uint8
(round, clip, as :func:`dualinpaint.images.tensor_to_pil` does), filled by the third-party routine, and
composited: outside the hole the result is exactly the quantised input, so a baseline changes hole pixels
only. The result is float32 N×3×H×W in [-1, 1] on the input's device.

| name | routine | package |
|---|---|---|
| telea | ``cv2.inpaint(..., cv2.INPAINT_TELEA)``, radius 3 | opencv-python-headless (``dualinpaint[eval]``) |
| ns | ``cv2.inpaint(..., cv2.INPAINT_NS)``, radius 3 | opencv-python-headless (``dualinpaint[eval]``) |
| biharmonic | ``skimage.restoration.inpaint_biharmonic`` | scikit-image (``dualinpaint[eval]``) |
| harmonic | :func:`~dualinpaint.generator.harmonic_fill`, 20 sweeps per level | none |
| mlbiharmonic | :func:`~dualinpaint.generator.biharmonic_fill`, 50 CG steps per level (the prefill) | none |
| patchmatch | ``patchmatch_cython.inpaint_pyramid``, patch 5, seed 0 | patchmatch-cython |

Optional packages are imported inside the functions; a missing one raises ``ImportError`` naming what to
install. :func:`available_baselines` lists the names whose packages import.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .images import pil_to_tensor, tensor_to_pil

Baseline = Callable[[Tensor, Tensor], Tensor]

_EVAL_HINT = "pip install 'dualinpaint[eval]'"
_REQUIRES = {
    "telea": ("cv2", f"opencv is not installed: {_EVAL_HINT}"),
    "ns": ("cv2", f"opencv is not installed: {_EVAL_HINT}"),
    "biharmonic": ("skimage", f"scikit-image is not installed: {_EVAL_HINT}"),
    "patchmatch": ("patchmatch_cython", "patchmatch-cython is not installed: pip install patchmatch-cython"),
}


def _import(name: str):
    """Import the optional module that baseline ``name`` needs, or raise ImportError with the install hint."""
    if name not in _REQUIRES:
        return None
    module, hint = _REQUIRES[name]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(hint) from None


def _apply(image: Tensor, mask: Tensor, fill: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Tensor:
    """Quantise, call ``fill(rgb uint8 H×W×3, hole bool H×W) -> uint8 H×W×3`` per image, composite."""
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"expected an image N×3×H×W, got {tuple(image.shape)}")
    n, _, h, w = image.shape
    if (
        mask.dim() != 4
        or mask.shape[1] != 1
        or tuple(mask.shape[-2:]) != (h, w)
        or mask.shape[0] not in (1, n)
    ):
        raise ValueError(f"expected a mask {n}×1×{h}×{w}, got {tuple(mask.shape)}")
    holes = (mask.detach().cpu() > 0.5).expand(n, 1, h, w).numpy()[:, 0]
    out = []
    for i in range(n):
        rgb = np.array(tensor_to_pil(image[i]))
        hole = holes[i]
        if hole.all():
            raise ValueError("the mask covers the whole image: there is nothing to inpaint from")
        if hole.any():
            seen = rgb.copy()
            seen[hole] = 0  # a method must never see the hole's real pixels (OpenCV's Telea/NS read them)
            filled = np.asarray(fill(seen, hole))
            if filled.shape != rgb.shape or filled.dtype != np.uint8:
                raise RuntimeError(
                    f"baseline returned {filled.dtype} {filled.shape}, expected uint8 {rgb.shape}"
                )
            rgb[hole] = filled[hole]
        out.append(pil_to_tensor(Image.fromarray(rgb, "RGB")))
    return torch.cat(out).to(image.device)


def telea(image: Tensor, mask: Tensor, radius: float = 3.0) -> Tensor:
    """OpenCV's fast-marching inpainting (Telea 2004), inpaint radius ``radius`` pixels."""
    cv2 = _import("telea")
    return _apply(
        image, mask, lambda rgb, hole: cv2.inpaint(rgb, hole.astype(np.uint8), radius, cv2.INPAINT_TELEA)
    )


def ns(image: Tensor, mask: Tensor, radius: float = 3.0) -> Tensor:
    """OpenCV's Navier–Stokes inpainting (Bertalmío et al. 2001), inpaint radius ``radius`` pixels."""
    cv2 = _import("ns")
    return _apply(
        image, mask, lambda rgb, hole: cv2.inpaint(rgb, hole.astype(np.uint8), radius, cv2.INPAINT_NS)
    )


def biharmonic(image: Tensor, mask: Tensor) -> Tensor:
    """scikit-image's biharmonic inpainting, each RGB channel separately (``channel_axis=-1``)."""
    _import("biharmonic")
    from skimage.restoration import inpaint_biharmonic

    def fill(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
        out = inpaint_biharmonic(rgb.astype(np.float64) / 255.0, hole, channel_axis=-1)
        return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)

    return _apply(image, mask, fill)


def _pyramid_fill(image: Tensor, mask: Tensor, fn: Callable, iters: int) -> Tensor:
    """Apply a parameter-free fill of :mod:`dualinpaint.generator` in float64 with as many pyramid levels
    (at most 5, the ``photo`` preset's) as both sides are divisible by 2 that often."""

    def fill(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
        h, w = hole.shape
        levels = 0
        while levels < 5 and h % 2 ** (levels + 1) == 0 and w % 2 ** (levels + 1) == 0:
            levels += 1
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].double() / 127.5 - 1
        m = torch.from_numpy(hole)[None, None].double()
        with torch.no_grad():
            out = fn(x * (1 - m), m, iters, levels)[0].permute(1, 2, 0).numpy()
        return np.clip(np.rint((out + 1) * 127.5), 0, 255).astype(np.uint8)

    return _apply(image, mask, fill)


def harmonic(image: Tensor, mask: Tensor, iters: int = 20) -> Tensor:
    """The multilevel harmonic fill (the previous shipped model's prefill), without a network."""
    from .generator import harmonic_fill

    return _pyramid_fill(image, mask, harmonic_fill, iters)


def mlbiharmonic(image: Tensor, mask: Tensor, iters: int = 50) -> Tensor:
    """The multilevel biharmonic fill the shipped ``photo`` model adds its residual to, without a network."""
    from .generator import biharmonic_fill

    return _pyramid_fill(image, mask, biharmonic_fill, iters)


def patchmatch(image: Tensor, mask: Tensor, patch_size: int = 5, seed: int = 0) -> Tensor:
    """Coarse-to-fine PatchMatch (Barnes et al. 2009) from patchmatch-cython; deterministic for a seed."""
    pm = _import("patchmatch")
    return _apply(
        image, mask, lambda rgb, hole: pm.inpaint_pyramid(rgb, hole, patch_size=patch_size, seed=seed)
    )


BASELINES: dict[str, Baseline] = {
    "telea": telea,
    "ns": ns,
    "biharmonic": biharmonic,
    "harmonic": harmonic,
    "mlbiharmonic": mlbiharmonic,
    "patchmatch": patchmatch,
}


def get_baseline(name: str) -> Baseline:
    """The baseline called ``name``; ValueError listing the valid names otherwise."""
    try:
        return BASELINES[name]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; valid: {', '.join(BASELINES)}") from None


def available_baselines() -> list[str]:
    """Names of the baselines whose packages import here, in registry order."""
    names = []
    for name in BASELINES:
        try:
            _import(name)
        except ImportError:
            continue
        names.append(name)
    return names
