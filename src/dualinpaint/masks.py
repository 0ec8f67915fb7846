"""Every mask generator of the package, the kind registry, a probability-weighted sampler and mask sets.

Conventions (owned here): a mask is float {0, 1} with **1 = hole**. Generators in ``MASK_KINDS`` return
``np.ndarray`` H×W float32; the public helpers return torch float32 tensors 1×H×W (batches N×1×H×W).
Mask files are 8-bit L PNGs, white (255) = hole. Every random choice comes from an explicit
``numpy.random.Generator``; the global RNGs (``random``, ``np.random.*``, ``torch``) are never used.

Kinds (``MASK_KINDS``):

- ``center``: PICNet's / the paper's "intermediate" hole, rows [H/4, 3H/4) × cols [W/4, 3W/4).
- ``rect``: 1..N random axis-aligned rectangles, sides a fraction of the image side.
- ``stroke``: DeepFill v2 free-form brush strokes (``brush_stroke_mask``), widths scaled by min(H, W)/256.
- ``picnet_regular`` / ``picnet_irregular``: PICNet's ``random_regular_mask`` / ``random_irregular_mask``
  re-implemented with its bugs fixed (axes of non-square images; draws of exactly 0.6 / 0.8 drew nothing).
- ``lama_thin`` / ``lama_medium`` / ``lama_thick``: LaMa's ``configs/data_gen/random_{thin,medium,thick}_256``
  (or ``_512`` with ``reference=512``) with masks whose hole area exceeds ``max_area`` (0.5) redrawn,
  all pixel quantities scaled by min(H, W)/reference.
- ``folder``: a mask file from a folder (white = hole), resized with NEAREST and thresholded.

Every random kind redraws a mask that comes out without any hole pixel.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import io
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from dualinpaint.images import atomic_write_bytes, list_images, mask_to_tensor, open_image

__all__ = [
    "MASK_KINDS",
    "MIN_SIZE",
    "MaskSampler",
    "center_mask",
    "folder_mask",
    "generate_mask",
    "hole_ratio",
    "lama_medium_mask",
    "lama_thick_mask",
    "lama_thin_mask",
    "load_mask_file",
    "load_mask_set",
    "make_mask_set",
    "picnet_irregular_mask",
    "picnet_regular_mask",
    "rect_mask",
    "stroke_mask",
]

MaskFn = Callable[..., np.ndarray]

MIN_SIZE = 8
"""Smallest height or width accepted by the generators."""

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT_VERSION = 1

_MAX_EMPTY_REDRAWS = 100
_MAX_AREA_REDRAWS = 100


# ----------------------------------------------------------------------------------------------------------
# Validation and drawing helpers
# ----------------------------------------------------------------------------------------------------------


def _check_size(height: int, width: int) -> None:
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"mask {name} must be an int, got {type(value).__name__}")
        if value < MIN_SIZE:
            raise ValueError(f"mask {name} must be at least {MIN_SIZE}, got {value}")


def _check_rng(rng: Any) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            "rng must be a numpy.random.Generator (e.g. np.random.default_rng(seed)), "
            f"got {type(rng).__name__}"
        )


def _canvas(height: int, width: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("L", (width, height), 0)
    return image, ImageDraw.Draw(image)


def _to_mask(image: Image.Image) -> np.ndarray:
    return (np.asarray(image) > 0).astype(np.float32)


def _dot(draw: ImageDraw.ImageDraw, x: float, y: float, diameter: float) -> None:
    """Filled disc of the given diameter centred at (x, y) (at least one pixel)."""
    r = max(diameter, 1.0) / 2.0
    draw.ellipse((x - r, y - r, x + r, y + r), fill=255)


def _polyline(
    draw: ImageDraw.ImageDraw, points: list[tuple[float, float]], width: float, *, discs: str = "ends"
) -> None:
    """Thick polyline with round caps (like OpenCV's thick lines); ``discs='all'`` rounds every joint."""
    w = max(1, round(width))
    if len(points) >= 2:
        draw.line(points, fill=255, width=w, joint="curve" if discs == "ends" and len(points) > 2 else None)
    chosen = points if discs == "all" or len(points) < 2 else [points[0], points[-1]]
    for x, y in chosen:
        _dot(draw, x, y, w)


def _clip(value: float, lo: float, hi: float) -> float:
    """Scalar clip (``np.clip`` on Python scalars is ~5x slower)."""
    return min(max(value, lo), hi)


def _ratio(mask: np.ndarray) -> float:
    """Exact hole fraction of an H×W array (count / pixels, in float64)."""
    return np.count_nonzero(mask > 0.5) / mask.size


def _scaled(value: float, scale: float, minimum: int = 1) -> int:
    return max(minimum, round(value * scale))


def _check_count_range(name: str, lo: int, hi: int, minimum: int = 1) -> None:
    if lo < minimum or hi < lo:
        raise ValueError(f"{name}: need {minimum} <= min <= max, got min={lo}, max={hi}")


# ----------------------------------------------------------------------------------------------------------
# The registry wrapper: argument checks, empty-mask redraws, output normalisation
# ----------------------------------------------------------------------------------------------------------


def _mask_kind(*, redraw_empty: bool) -> Callable[[MaskFn], MaskFn]:
    """Wrap a generator ``fn(height, width, rng, *, opt=...)`` into the registry calling convention.

    The wrapper checks the size and the rng, rejects unknown options with a ``ValueError`` naming the valid
    ones, redraws (up to ``_MAX_EMPTY_REDRAWS`` times) masks without any hole pixel when ``redraw_empty``,
    and returns H×W float32 in {0, 1}.
    """

    def decorate(fn: MaskFn) -> MaskFn:
        params = inspect.signature(fn).parameters.values()
        valid = tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY)
        required = tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty)

        @functools.wraps(fn)
        def wrapper(height: int, width: int, rng: np.random.Generator, **options: Any) -> np.ndarray:
            _check_size(height, width)
            _check_rng(rng)
            unknown = sorted(set(options) - set(valid))
            if unknown:
                raise ValueError(
                    f"unknown option(s) {', '.join(map(repr, unknown))} for mask generator {fn.__name__}; "
                    f"valid options: {', '.join(valid) or '(none)'}"
                )
            missing = [name for name in required if name not in options]
            if missing:
                raise ValueError(
                    f"mask generator {fn.__name__} needs option(s) {', '.join(map(repr, missing))}"
                )
            for _ in range(_MAX_EMPTY_REDRAWS if redraw_empty else 1):
                mask = np.asarray(fn(int(height), int(width), rng, **options))
                if mask.any():
                    break
            else:
                if redraw_empty:
                    raise RuntimeError(
                        f"{fn.__name__} produced an empty mask {_MAX_EMPTY_REDRAWS} times in a row at "
                        f"{height}x{width}; check its options {options}"
                    )
            if mask.shape != (height, width):
                raise AssertionError(f"{fn.__name__} returned shape {mask.shape}, expected {(height, width)}")
            return (mask > 0.5).astype(np.float32)

        return wrapper

    return decorate


# ----------------------------------------------------------------------------------------------------------
# Generators
# ----------------------------------------------------------------------------------------------------------


@_mask_kind(redraw_empty=False)
def center_mask(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """PICNet's center ("intermediate") hole: rows [H/4, 3H/4) × cols [W/4, 3W/4); 128² at 256². H×W.

    Deterministic: ``rng`` is accepted for a uniform signature and not used.
    """
    mask = np.zeros((height, width), np.float32)
    mask[int(height / 4) : int(height * 3 / 4), int(width / 4) : int(width * 3 / 4)] = 1.0
    return mask


@_mask_kind(redraw_empty=True)
def rect_mask(
    height: int,
    width: int,
    rng: np.random.Generator,
    *,
    min_count: int = 1,
    max_count: int = 3,
    min_size: float = 0.1,
    max_size: float = 0.5,
    margin: float = 0.0,
) -> np.ndarray:
    """``min_count..max_count`` random axis-aligned rectangles. H×W.

    Each rectangle's height (width) is uniform in [min_size, max_size] × H (× W), at least one pixel, and it
    lies fully inside the image shrunk by ``margin`` × the side on every border.
    """
    _check_count_range("rect count", min_count, max_count)
    if not 0.0 < min_size <= max_size <= 1.0:
        raise ValueError(f"rect sizes: need 0 < min_size <= max_size <= 1, got {min_size}, {max_size}")
    if not 0.0 <= margin < 0.5 or max_size > 1.0 - 2.0 * margin:
        raise ValueError(f"rect margin {margin} must be in [0, 0.5) and leave room for max_size {max_size}")
    mask = np.zeros((height, width), np.float32)
    for _ in range(int(rng.integers(min_count, max_count + 1))):
        corner = []
        for side in (height, width):
            lo = int(round(margin * side))
            extent = max(1, int(round(rng.uniform(min_size, max_size) * side)))
            extent = min(extent, side - 2 * lo)
            start = int(rng.integers(lo, side - lo - extent + 1))
            corner.append((start, extent))
        (y, h), (x, w) = corner
        mask[y : y + h, x : x + w] = 1.0
    return mask


@_mask_kind(redraw_empty=True)
def stroke_mask(
    height: int,
    width: int,
    rng: np.random.Generator,
    *,
    min_strokes: int = 1,
    max_strokes: int = 3,
    min_vertices: int = 4,
    max_vertices: int = 11,
    min_width: float = 12.0,
    max_width: float = 40.0,
    mean_angle: float = 2 * math.pi / 5,
    angle_range: float = 2 * math.pi / 15,
    reference: int = 256,
) -> np.ndarray:
    """DeepFill v2 free-form brush strokes (``inpaint_ops.brush_stroke_mask``). H×W.

    Each of ``min_strokes..max_strokes`` strokes is a polyline of ``min_vertices..max_vertices`` segments
    whose directions zig-zag around ``mean_angle``, segment lengths ~ N(r, r/2) clipped to [0, 2r] with
    r = √(H²+W²)/8, a brush width uniform in [min_width, max_width] (pixels at ``reference`` size, scaled by
    min(H, W)/reference) and a disc at every vertex. The mask is then flipped left/right and top/bottom with
    probability 1/2 each. Fixes DeepFill's swapped (h, w) and its discarded flips.
    """
    _check_count_range("stroke count", min_strokes, max_strokes)
    _check_count_range("stroke vertices", min_vertices, max_vertices)
    if not 0.0 < min_width <= max_width:
        raise ValueError(f"stroke widths: need 0 < min_width <= max_width, got {min_width}, {max_width}")
    scale = min(height, width) / reference
    radius = math.sqrt(height * height + width * width) / 8
    image, draw = _canvas(height, width)
    for _ in range(int(rng.integers(min_strokes, max_strokes + 1))):
        n_vertex = int(rng.integers(min_vertices, max_vertices + 1))
        angle_min = mean_angle - rng.uniform(0, angle_range)
        angle_max = mean_angle + rng.uniform(0, angle_range)
        angles = [
            2 * math.pi - rng.uniform(angle_min, angle_max)
            if i % 2 == 0
            else rng.uniform(angle_min, angle_max)
            for i in range(n_vertex)
        ]
        vertices = [(int(rng.integers(0, width)), int(rng.integers(0, height)))]
        for angle in angles:
            r = float(_clip(rng.normal(radius, radius / 2), 0, 2 * radius))
            x = int(_clip(vertices[-1][0] + r * math.cos(angle), 0, width - 1))
            y = int(_clip(vertices[-1][1] + r * math.sin(angle), 0, height - 1))
            vertices.append((x, y))
        brush = rng.uniform(min_width, max_width) * scale
        _polyline(draw, vertices, brush, discs="all")
    mask = _to_mask(image)
    if rng.random() < 0.5:
        mask = mask[:, ::-1]
    if rng.random() < 0.5:
        mask = mask[::-1, :]
    return np.ascontiguousarray(mask)


@_mask_kind(redraw_empty=True)
def picnet_regular_mask(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """PICNet's random regular mask (``util/task.py`` ``random_regular_mask``). H×W.

    N ~ U{1..5} rectangles; top row ~ U{0 .. H − H/(N+1)}, height ~ U{H/(N+7) .. H − top} (columns alike with
    W). Holes can cover most of the image.
    """
    mask = np.zeros((height, width), np.float32)
    n = int(rng.integers(1, 6))
    lim_y, lim_x = int(height - height / (n + 1)), int(width - width / (n + 1))
    for _ in range(n):
        y = int(rng.integers(0, lim_y + 1))
        x = int(rng.integers(0, lim_x + 1))
        h = int(rng.integers(int(height / (n + 7)), int(height - y) + 1))
        w = int(rng.integers(int(width / (n + 7)), int(width - x) + 1))
        mask[y : y + h, x : x + w] = 1.0
    return mask


def _ellipse_arc(
    cx: float, cy: float, ax: float, ay: float, rotation: float, start: float, end: float
) -> list[tuple[float, float]]:
    """Points of an arc (degrees, like ``cv2.ellipse``: start/end swapped when start > end)."""
    start, end = min(start, end), max(start, end)
    n = max(2, int(math.ceil((end - start) / 2.0)) + 1)
    cos_r, sin_r = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
    points = []
    for t in np.linspace(math.radians(start), math.radians(end), n):
        ex, ey = ax * math.cos(t), ay * math.sin(t)
        points.append((cx + ex * cos_r - ey * sin_r, cy + ex * sin_r + ey * cos_r))
    return points


@_mask_kind(redraw_empty=True)
def picnet_irregular_mask(
    height: int,
    width: int,
    rng: np.random.Generator,
    *,
    min_shapes: int = 16,
    max_shapes: int = 64,
    min_width: int = 4,
    max_width: int = 20,
    reference: int = 256,
) -> np.ndarray:
    """PICNet's random irregular mask (``util/task.py`` ``random_irregular_mask``). H×W.

    ``min_shapes..max_shapes`` shapes; each is with probability 0.6 a line between two random points, 0.2 a
    filled disc, 0.2 an elliptic arc (half-axes up to the image size, rotation/start/end in [3, 180]°).
    Line/arc thickness and disc radius are U{min_width..max_width} pixels at ``reference`` size, scaled by
    min(H, W)/reference. Fixed: x runs along the width and y along the height (PICNet swapped them for
    non-square images), and u ∈ [0.6, 0.8) / [0.8, 1) always draws.
    """
    _check_count_range("picnet_irregular shapes", min_shapes, max_shapes)
    _check_count_range("picnet_irregular width", min_width, max_width)
    scale = min(height, width) / reference
    image, draw = _canvas(height, width)
    for _ in range(int(rng.integers(min_shapes, max_shapes + 1))):
        u = rng.random()
        if u < 0.6:
            x1, x2 = (int(v) for v in rng.integers(0, width, size=2))
            y1, y2 = (int(v) for v in rng.integers(0, height, size=2))
            thickness = int(rng.integers(min_width, max_width + 1)) * scale
            _polyline(draw, [(x1, y1), (x2, y2)], thickness)
        elif u < 0.8:
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            radius = int(rng.integers(min_width, max_width + 1)) * scale
            _dot(draw, x, y, 2 * radius)
        else:
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            ax, ay = int(rng.integers(1, width + 1)), int(rng.integers(1, height + 1))
            rotation, start, end = (int(v) for v in rng.integers(3, 181, size=3))
            thickness = int(rng.integers(min_width, max_width + 1)) * scale
            _polyline(draw, _ellipse_arc(x, y, ax, ay, rotation, start, end), thickness)
    return _to_mask(image)


# LaMa's evaluation mask settings, verbatim from advimman/lama configs/data_gen/random_<kind>_<ref>.yaml.
# Tuples: strokes = (min_times, max_times, max_width, max_len, max_angle), boxes = (min_times, max_times,
# bbox_min_size, bbox_max_size, margin). As LaMa's generator classes actually draw them (their ramp code at
# coef 1): stroke count U{min_times..max_times+1}; each stroke has 1..5 segments of length
# 10 + U{0..max_len-1}, width 5 + U{0..max_width-1} and angle 0.01 + U{0..max_angle-1} rad; box count
# U{min_times..max_times}, box sides U{bbox_min_size..bbox_max_size} inside the margin. The mixture picks
# boxes with probability box_proba / (irregular_proba + box_proba) = 0.3 / 1.3 ≈ 23 % (MixedMaskGenerator).
_LAMA_PRESETS: dict[str, dict[int, dict[str, Any]]] = {
    "thin": {
        256: {"strokes": (4, 50, 10, 40, 4), "box_proba": 0.0, "boxes": None},
        512: {"strokes": (4, 70, 20, 100, 4), "box_proba": 0.0, "boxes": None},
    },
    "medium": {
        256: {"strokes": (4, 5, 50, 100, 4), "box_proba": 0.3, "boxes": (1, 5, 10, 50, 0)},
        512: {"strokes": (4, 10, 100, 200, 4), "box_proba": 0.3, "boxes": (1, 5, 30, 150, 0)},
    },
    "thick": {
        256: {"strokes": (1, 5, 100, 200, 4), "box_proba": 0.3, "boxes": (1, 3, 30, 150, 10)},
        512: {"strokes": (1, 5, 250, 450, 4), "box_proba": 0.3, "boxes": (1, 4, 30, 300, 10)},
    },
}


def _lama_strokes(
    height: int, width: int, rng: np.random.Generator, params: tuple[int, ...], scale: float
) -> np.ndarray:
    """LaMa's ``make_random_irregular_mask`` (LINE method), pixel quantities multiplied by ``scale``."""
    min_times, max_times, max_width, max_len, max_angle = params
    image, draw = _canvas(height, width)
    for i in range(int(rng.integers(min_times, max_times + 2))):  # LaMa's ramp adds 1 to max_times
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        for _ in range(1 + int(rng.integers(0, 5))):
            angle = 0.01 + int(rng.integers(0, max_angle))
            if i % 2 == 0:
                angle = 2 * 3.1415926 - angle
            length = (10 + int(rng.integers(0, max_len))) * scale
            brush = (5 + int(rng.integers(0, max_width))) * scale
            end_x = int(_clip(x + length * math.sin(angle), 0, width - 1))
            end_y = int(_clip(y + length * math.cos(angle), 0, height - 1))
            _polyline(draw, [(x, y), (end_x, end_y)], brush)
            x, y = end_x, end_y
    return _to_mask(image)


def _lama_boxes(
    height: int, width: int, rng: np.random.Generator, params: tuple[int, ...], scale: float
) -> np.ndarray:
    """LaMa's ``make_random_rectangle_mask``, pixel quantities multiplied by ``scale``."""
    min_times, max_times, bbox_min, bbox_max, margin = params
    margin = min(_scaled(margin, scale, minimum=0), (min(height, width) - 1) // 2)
    room = min(height, width) - 2 * margin
    bbox_max = min(_scaled(bbox_max, scale), room)
    bbox_min = min(_scaled(bbox_min, scale), bbox_max)
    mask = np.zeros((height, width), np.float32)
    for _ in range(int(rng.integers(min_times, max_times + 1))):
        box_w = int(rng.integers(bbox_min, bbox_max + 1))
        box_h = int(rng.integers(bbox_min, bbox_max + 1))
        x = int(rng.integers(margin, width - margin - box_w + 1))
        y = int(rng.integers(margin, height - margin - box_h + 1))
        mask[y : y + box_h, x : x + box_w] = 1.0
    return mask


def _lama(
    preset: str, height: int, width: int, rng: np.random.Generator, max_area: float, reference: int
) -> np.ndarray:
    if reference not in _LAMA_PRESETS[preset]:
        raise ValueError(
            f"lama_{preset}: reference must be one of {sorted(_LAMA_PRESETS[preset])}, got {reference}"
        )
    if not 0.0 < max_area <= 1.0:
        raise ValueError(f"lama_{preset}: max_area must be in (0, 1], got {max_area}")
    cfg = _LAMA_PRESETS[preset][reference]
    scale = min(height, width) / reference
    p_box = cfg["box_proba"] / (1.0 + cfg["box_proba"])
    for _ in range(_MAX_AREA_REDRAWS):
        if cfg["boxes"] is not None and rng.random() < p_box:
            mask = _lama_boxes(height, width, rng, cfg["boxes"], scale)
        else:
            mask = _lama_strokes(height, width, rng, cfg["strokes"], scale)
        if 0.0 < _ratio(mask) <= max_area:
            return mask
    raise RuntimeError(
        f"lama_{preset}: no mask with 0 < hole area <= {max_area} in {_MAX_AREA_REDRAWS} draws "
        f"at {height}x{width}"
    )


@_mask_kind(redraw_empty=True)
def lama_thin_mask(
    height: int, width: int, rng: np.random.Generator, *, max_area: float = 0.5, reference: int = 256
) -> np.ndarray:
    """LaMa "thin": only strokes (256 preset: 4–51 strokes, width 5–14 px, segments 10–49 px). H×W.

    Hole area ≤ ``max_area`` (redrawn otherwise). ``reference`` picks LaMa's 256 or 512 preset; pixel sizes
    scale by min(H, W)/reference.
    """
    return _lama("thin", height, width, rng, max_area, reference)


@_mask_kind(redraw_empty=True)
def lama_medium_mask(
    height: int, width: int, rng: np.random.Generator, *, max_area: float = 0.5, reference: int = 256
) -> np.ndarray:
    """LaMa "medium": strokes (256: 4–6, width 5–54, segments 10–109) or, p=0.3/1.3, 1–5 boxes 10–50 px. H×W.

    Hole area ≤ ``max_area`` (redrawn otherwise). ``reference`` picks LaMa's 256 or 512 preset; pixel sizes
    scale by min(H, W)/reference.
    """
    return _lama("medium", height, width, rng, max_area, reference)


@_mask_kind(redraw_empty=True)
def lama_thick_mask(
    height: int, width: int, rng: np.random.Generator, *, max_area: float = 0.5, reference: int = 256
) -> np.ndarray:
    """LaMa "thick": strokes (256: 1–6, width 5–104, segments 10–209) or, p=0.3/1.3, 1–3 boxes 30–150 px
    with a 10 px margin. H×W.

    Hole area ≤ ``max_area`` (redrawn otherwise). ``reference`` picks LaMa's 256 or 512 preset; pixel sizes
    scale by min(H, W)/reference.
    """
    return _lama("thick", height, width, rng, max_area, reference)


@functools.lru_cache(maxsize=16)
def _folder_files(folder: str) -> tuple[Path, ...]:
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"mask folder does not exist or is not a folder: {folder}")
    files = tuple(list_images(root))
    if not files:
        raise ValueError(f"mask folder {folder} holds no image files")
    return files


def _mask_array(path: Path, height: int, width: int, threshold: int, invert: bool) -> np.ndarray:
    image = open_image(path)
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.NEAREST)
    return mask_to_tensor(image, threshold=threshold, invert=invert)[0, 0].numpy()


@_mask_kind(redraw_empty=False)
def folder_mask(
    height: int,
    width: int,
    rng: np.random.Generator,
    *,
    path: str | os.PathLike,
    index: int | None = None,
    threshold: int = 127,
    invert: bool = False,
) -> np.ndarray:
    """A mask file from the folder ``path`` (searched recursively, sorted; white = hole). H×W.

    Files are resized to H×W with NEAREST (aspect ratio not kept) and pixels brighter than ``threshold`` are
    holes. With ``index`` the file ``index % n_files`` is used as it is (evaluation, deterministic);
    otherwise a file is drawn with ``rng`` (training), and files without any hole are redrawn. The file list
    is cached per folder for the life of the process.
    """
    files = _folder_files(str(Path(path).resolve()))
    if index is not None:
        return _mask_array(files[int(index) % len(files)], height, width, threshold, invert)
    for _ in range(_MAX_EMPTY_REDRAWS):
        mask = _mask_array(files[int(rng.integers(0, len(files)))], height, width, threshold, invert)
        if mask.any():
            return mask
    raise ValueError(
        f"mask folder {path}: {_MAX_EMPTY_REDRAWS} random files had no hole pixel at {height}x{width}"
    )


MASK_KINDS: dict[str, MaskFn] = {
    "center": center_mask,
    "rect": rect_mask,
    "stroke": stroke_mask,
    "picnet_regular": picnet_regular_mask,
    "picnet_irregular": picnet_irregular_mask,
    "lama_thin": lama_thin_mask,
    "lama_medium": lama_medium_mask,
    "lama_thick": lama_thick_mask,
    "folder": folder_mask,
}
"""Mask kind name → ``fn(height, width, rng, **options) -> np.ndarray`` (H×W float32 in {0, 1}, 1 = hole)."""


def _generator(kind: str) -> MaskFn:
    try:
        return MASK_KINDS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown mask kind {kind!r}; valid kinds: {', '.join(MASK_KINDS)}") from None


# ----------------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------------


def generate_mask(
    kind: str, height: int, width: int, rng: np.random.Generator, **options: Any
) -> torch.Tensor:
    """One mask of ``kind`` as a float32 tensor 1×H×W in {0, 1} (1 = hole).

    ``options`` go to the generator (e.g. ``path=`` for ``folder``). Unknown kinds or options raise
    ``ValueError``.
    """
    return torch.from_numpy(_generator(kind)(height, width, rng, **options))[None]


def hole_ratio(mask: torch.Tensor) -> float:
    """Fraction of hole pixels (values > 0.5) in a mask of any shape (H×W, 1×H×W, N×1×H×W)."""
    if mask.numel() == 0:
        raise ValueError("hole_ratio of an empty tensor")
    return _ratio(mask.detach().cpu().numpy())  # numpy: a torch reduction costs ~100x more on small masks


class MaskSampler:
    """Draws masks of several kinds by probability, e.g. ``MaskSampler({"stroke": 3, "rect": 1}, 256, 256)``.

    ``kinds`` maps kind names to non-negative weights (normalised; the sum must be > 0). ``folder`` is the
    mask folder, required when ``folder`` has a positive weight. ``options`` maps a kind to keyword options
    for its generator. Holds plain data only, so it pickles into DataLoader workers.
    """

    def __init__(
        self,
        kinds: Mapping[str, float],
        height: int,
        width: int,
        folder: str | os.PathLike | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        _check_size(height, width)
        if not isinstance(kinds, Mapping) or not kinds:
            raise ValueError(f"mask kinds must be a non-empty mapping {{kind: probability}}, got {kinds!r}")
        for kind, weight in kinds.items():
            _generator(kind)
            if isinstance(weight, bool) or not isinstance(weight, (int, float, np.integer, np.floating)):
                raise ValueError(f"probability of mask kind {kind!r} must be a number, got {weight!r}")
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"probability of mask kind {kind!r} must be finite and >= 0, got {weight!r}")
        total = float(sum(kinds.values()))
        if total <= 0:
            raise ValueError(f"mask kind probabilities must sum to > 0, got {dict(kinds)}")
        self.kinds: tuple[str, ...] = tuple(k for k, w in kinds.items() if w > 0)
        self.probabilities: dict[str, float] = {k: float(kinds[k]) / total for k in self.kinds}
        self._p = np.array([self.probabilities[k] for k in self.kinds], dtype=np.float64)
        self._p /= self._p.sum()
        self.height, self.width = int(height), int(width)
        self.options: dict[str, dict[str, Any]] = {}
        for kind, opts in (options or {}).items():
            _generator(kind)
            self.options[kind] = dict(opts)
        self.folder: str | None = None
        if "folder" in self.kinds:
            if folder is None or str(folder) == "":
                raise ValueError("mask kind 'folder' has a positive probability but no folder was given")
            self.folder = str(folder)
            self.options.setdefault("folder", {})["path"] = self.folder
        # Fail now on bad options or folders, not later in a DataLoader worker: one throwaway draw per kind
        # (with its own seeded Generator; no global RNG is touched).
        for kind in self.kinds:
            generate_mask(
                kind, self.height, self.width, np.random.default_rng(0), **self.options.get(kind, {})
            )

    def __repr__(self) -> str:
        probs = ", ".join(f"{k}: {p:.3g}" for k, p in self.probabilities.items())
        return f"MaskSampler({{{probs}}}, height={self.height}, width={self.width}, folder={self.folder!r})"

    def draw(self, rng: np.random.Generator) -> tuple[str, torch.Tensor]:
        """Pick a kind by probability, then a mask: returns ``(kind, mask 1×H×W)``."""
        _check_rng(rng)
        kind = self.kinds[int(rng.choice(len(self.kinds), p=self._p))]
        return kind, generate_mask(kind, self.height, self.width, rng, **self.options.get(kind, {}))

    def __call__(self, rng: np.random.Generator) -> torch.Tensor:
        """One mask, float32 1×H×W in {0, 1}."""
        return self.draw(rng)[1]

    def batch(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        """``n`` independent masks, float32 N×1×H×W."""
        if n < 1:
            raise ValueError(f"batch size must be >= 1, got {n}")
        return torch.stack([self(rng) for _ in range(n)])


def _encode_png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((mask > 0.5).astype(np.uint8) * 255, "L").save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def make_mask_set(
    kind: str,
    count: int,
    size: int,
    seed: int,
    out_dir: str | os.PathLike,
    *,
    min_ratio: float | None = None,
    max_ratio: float | None = None,
    folder: str | os.PathLike | None = None,
    options: Mapping[str, Any] | None = None,
    max_attempts: int = 1000,
) -> dict:
    """Write ``count`` size×size masks ``00000.png``… (L, white = hole) and ``manifest.json`` to ``out_dir``.

    Mask ``i`` is drawn with ``np.random.default_rng([seed, i])``, so the set is bit-identical for the same
    arguments (with the same Pillow/zlib) and mask ``i`` does not depend on ``count``. With ratio bounds,
    mask ``i`` is redrawn until its hole ratio is in [min_ratio, max_ratio); after ``max_attempts`` draws a
    ``ValueError`` is raised. ``folder`` is the mask folder of the ``folder`` kind (random files).
    ``options`` go to the generator. Files are written atomically, the manifest last. Returns the manifest:
    ``{format_version, kind, size, seed, count, min_ratio, max_ratio, options, folder, files: [{name, sha256,
    hole_ratio}]}``.
    """
    gen = _generator(kind)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count must be a positive int, got {count!r}")
    lo = 0.0 if min_ratio is None else float(min_ratio)
    hi = math.inf if max_ratio is None else float(max_ratio)
    if not (0.0 <= lo < hi and (max_ratio is None or hi <= 1.0)):
        raise ValueError(
            f"need 0 <= min_ratio < max_ratio <= 1, got min_ratio={min_ratio}, max_ratio={max_ratio}"
        )
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    opts = dict(options or {})
    try:
        json.dumps(opts)
    except TypeError as err:
        raise ValueError(
            f"make_mask_set options must be JSON-serialisable (they go in the manifest): {err}"
        ) from None
    if folder is not None and str(folder) == "":
        folder = None
    if kind == "folder":
        if folder is None:
            raise ValueError("make_mask_set(kind='folder') needs folder=")
        opts["path"] = str(folder)
    elif folder is not None:
        raise ValueError(f"folder= is only used by kind 'folder', not {kind!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for index in range(int(count)):
        rng = np.random.default_rng([int(seed), index])
        for _ in range(max_attempts):
            mask = gen(size, size, rng, **opts)
            ratio = _ratio(mask)
            if lo <= ratio < hi:
                break
        else:
            raise ValueError(
                f"mask {index} of kind {kind!r} at {size}x{size}: no hole ratio in [{lo}, {hi}) after "
                f"{max_attempts} draws; this kind rarely reaches that range"
            )
        data = _encode_png(mask)
        name = f"{index:05d}.png"
        atomic_write_bytes(out / name, data)
        files.append({"name": name, "sha256": hashlib.sha256(data).hexdigest(), "hole_ratio": ratio})
    manifest = {
        "format_version": MANIFEST_FORMAT_VERSION,
        "kind": kind,
        "size": int(size),
        "seed": int(seed),
        "count": int(count),
        "min_ratio": None if min_ratio is None else lo,
        "max_ratio": None if max_ratio is None else hi,
        "options": {k: v for k, v in opts.items() if k != "path"},
        "folder": None if folder is None else str(folder),
        "files": files,
    }
    atomic_write_bytes(out / MANIFEST_NAME, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return manifest


def load_mask_set(out_dir: str | os.PathLike) -> tuple[list[torch.Tensor], dict]:
    """Read a set written by ``make_mask_set``: masks (1×H×W each) in manifest order, and the manifest.

    Each file's sha256 is checked against the manifest; a missing file or a mismatch raises ``ValueError``
    naming the file.
    """
    root = Path(out_dir)
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text())
    except FileNotFoundError:
        raise ValueError(f"no {MANIFEST_NAME} in mask set folder {root}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{root / MANIFEST_NAME} is not valid JSON: {err}") from None
    masks = []
    for entry in manifest["files"]:
        path = root / entry["name"]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ValueError(f"mask set file missing: {path}") from None
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise ValueError(f"mask set file {path} does not match the sha256 in {MANIFEST_NAME}")
        with Image.open(io.BytesIO(data)) as image:
            mask = mask_to_tensor(image)[0]
        if tuple(mask.shape[-2:]) != (manifest["size"], manifest["size"]):
            raise ValueError(
                f"mask set file {path} has size {tuple(mask.shape[-2:])}, manifest says {manifest['size']}"
            )
        masks.append(mask)
    return masks, manifest


def load_mask_file(
    path: str | os.PathLike,
    size: tuple[int, int] | None = None,
    threshold: int = 127,
    invert: bool = False,
) -> torch.Tensor:
    """One mask file (white = hole, any mode) → float32 tensor 1×H×W in {0, 1}.

    ``size`` is ``(height, width)``; when given the file is resized with NEAREST first. Pixels brighter than
    ``threshold`` are holes; ``invert`` swaps the convention (for black = hole files). Unreadable files raise
    ``ValueError``.
    """
    image = open_image(path)
    if size is not None:
        height, width = (int(v) for v in size)
        if height < 1 or width < 1:
            raise ValueError(f"mask size must be positive (height, width), got {size}")
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.NEAREST)
    return mask_to_tensor(image, threshold=threshold, invert=invert)[0]
