"""Filling photos: the ``Inpainter`` (PIL in, PIL out, any size) and the ``fill`` and ``demo`` commands.

High-resolution strategy (IOPaint's "Crop", with LaMa's dilation advice):

1. the mask is thresholded at 127 (white = hole; ``invert`` swaps) and optionally dilated by a square
   max-filter of ``dilate`` px, so the fill also covers an object's anti-aliased fringe (no halo);
2. the holes' connected components get bounding boxes; each box gets a context window, the box grown by
   max(``min_margin``, ``margin`` × its longer side) on every side, made square (at least the training
   crop), shifted and clipped into the image; boxes whose windows overlap are merged until no two
   windows overlap, so each window holds the whole of its own holes and none of the others;
3. a window larger than ``working_size`` is shrunk (Lanczos, aspect kept) to fit, and its hole shrunk
   conservatively (a low-res pixel is a hole when any of its source pixels is); a smaller window is not
   upscaled. Either way it is then reflect-padded to a multiple of the network stride;
4. the network fills the window; the fill is cropped, resized back (bicubic) and **only hole pixels
   are pasted** into the image: every pixel outside the (dilated) hole is bit-identical to the input.
   ``feather`` blends the fill with the original over that many pixels inside the hole border.

torch and the package's torch-based modules are imported inside the functions that need them, so the
CLI can build its parser (``add_fill_arguments``) without paying for the torch import.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

if TYPE_CHECKING:
    import torch

    from .config import Config
    from .generator import DualPathInpainter

POLARITY_LIMIT = 0.7  # a mask with more hole than this is probably inverted
JPEG_QUALITY = 95
SAMPLES_DIR = Path(__file__).parent / "assets" / "samples"
_GRID_CELLS = 256  # components are found on a grid of at most this many cells per side

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 (end exclusive)
RUNTIMES = ("torch", "onnx")


class Inpainter:
    """Fills holes in PIL images of any size and mode with a ``DualPathInpainter``.

    ``working_size``: the largest side (px) the network is run at; a larger context window is shrunk
    to fit. Default: twice the training crop ``cfg.data.size`` (256 for the ``photo`` preset). The net is
    fully convolutional and its long-term attention is global, so it copes with windows somewhat larger
    than its training crops, while fills at much larger sizes turn mushy (LaMa#233) and cost grows with
    the area. Rounded down to a multiple of ``cfg.model.stride``.
    ``margin``, ``min_margin``: context around each hole, as a fraction of its longer side and a floor
    in px.

    Speed (see ``fastpath``; none of these changes what is filled beyond float rounding):
    ``runtime``: ``"torch"`` runs a fast copy of ``net`` (spectral norm frozen into the weights, blocked
    attention, ``channels_last`` memory order unless disabled) under ``torch.inference_mode``;
    ``"onnx"`` exports that network to ONNX in memory and runs it with ONNX Runtime (extra ``onnx``).
    ``precision``: ``"auto"`` (bf16 autocast only where the CPU computes bf16 natively), ``"fp32"`` or
    ``"bf16"`` (forced; emulated bf16 is slow). ``compile``: ``torch.compile`` the network on first use.
    ``threads``: intra-op threads; if given, ``torch.set_num_threads(threads)`` (process-wide). Default:
    the physical core count, applied only where it lowers torch's current setting.
    ``device``: where the network runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device``; see
    ``resolve_device``: asking for CUDA where there is none is a one-line ValueError). Default: the
    device ``net`` is on (the CPU for ``from_pretrained``). Cropping, resizing and pasting stay on the CPU
    with PIL/numpy; each window's tensors go to the device and its fills come back; bf16 autocast runs
    on the device's type, and ``precision="auto"`` asks that device (``fastpath.bf16_supported``).
    ``runtime="onnx"`` runs on the CPU only.
    ``adapt_steps`` > 0: before each window is filled, a copy of the network is fine-tuned for that many
    steps on the window's own known pixels (``adapt.adapt``, learning rate ``adapt_lr``; seeded, so
    reproducible) and fills that window; seconds per window on a CPU. Needs ``runtime="torch"``.
    ``texture`` > 0: after the network, texture copied from the window's own known region is added
    inside the hole at this strength (``texture.transfer_texture``; 1 = the energy of the hole's
    surroundings), at the window's full resolution on ``device``; samples drawn with a generator get
    different texture. Not part of the ONNX graph; it runs after either runtime.
    ``self.net`` is the network that runs (the fast copy, on ``self.device``); the ``net`` passed in is
    not modified.
    """

    def __init__(
        self,
        net: DualPathInpainter,
        cfg: Config,
        *,
        working_size: int | None = None,
        margin: float = 0.5,
        min_margin: int = 32,
        threads: int | None = None,
        precision: str = "auto",
        channels_last: bool = True,
        compile: bool = False,
        runtime: str = "torch",
        device: str | torch.device | None = None,
        adapt_steps: int = 0,
        adapt_lr: float | None = None,
        texture: float = 0.0,
    ) -> None:
        from .adapt import DEFAULT_LR
        from .fastpath import prepare_for_inference, resolve_precision, set_threads
        from .texture import check_strength

        if runtime not in RUNTIMES:
            raise ValueError(f"runtime={runtime!r}; valid: {', '.join(RUNTIMES)}")
        self.device = resolve_device(_device_of(net) if device is None else device)
        self.precision = resolve_precision(precision, self.device)
        if runtime == "onnx" and (precision == "bf16" or compile):
            raise ValueError("precision='bf16' and compile apply to the torch runtime, not to runtime='onnx'")
        if runtime == "onnx" and self.device.type != "cpu":
            raise ValueError(
                f"runtime='onnx' runs on the CPU; device={str(self.device)!r} needs runtime='torch'"
            )
        self.adapt_lr = DEFAULT_LR if adapt_lr is None else adapt_lr
        self.runtime = runtime
        self.cfg = cfg
        self.adapt_steps = self._check_adapt(adapt_steps)
        self.texture = check_strength(texture)
        self.stride = cfg.model.stride
        self.train_size = cfg.data.size
        size = 2 * cfg.data.size if working_size is None else int(working_size)
        if size < 2 * self.stride:
            raise ValueError(f"working_size={size} must be at least twice the network stride {self.stride}")
        self.working_size = size // self.stride * self.stride
        if margin < 0 or min_margin < 0:
            raise ValueError(f"margin={margin} and min_margin={min_margin} must be >= 0")
        self.margin = float(margin)
        self.min_margin = int(min_margin)
        self.threads = set_threads(threads)
        self.runtime = runtime
        self.channels_last = bool(channels_last) and runtime == "torch"
        self.compile = bool(compile)
        fast = prepare_for_inference(net.eval(), channels_last=self.channels_last)
        if fast is net and _device_of(net) != self.device:  # already a fast copy: move a copy of it
            import copy

            fast = copy.deepcopy(net)
        self.net = fast.to(self.device)  # a no-op where it is already there (every CPU network)
        self._compiled: Any = None
        self._onnx: dict[bool, Any] = {}
        if runtime == "onnx":
            from .export import require_onnxruntime

            require_onnxruntime()
            self._onnx_session(sampling=False)
        self.meta: dict[str, Any] = {}

    @classmethod
    def from_pretrained(
        cls, source: str | os.PathLike = "default", *, device: str | torch.device | None = None, **kw: Any
    ) -> Inpainter:
        """Load a packaged model name, a run folder or a ``.safetensors`` file (see checkpoint.load_model)
        and run it on ``device`` (default the CPU); ``kw`` are the constructor's other options."""
        from .checkpoint import load_model

        net, cfg, meta = load_model(source)
        inpainter = cls(net, cfg, device=device, **kw)
        inpainter.meta = meta
        return inpainter

    def _check_adapt(self, steps: int) -> int:
        """``steps`` if this Inpainter can adapt its network that much; ValueError (one line) otherwise."""
        from .adapt import DEFAULT_BATCH, check_adapt_options

        check_adapt_options(steps, self.adapt_lr, DEFAULT_BATCH)
        if steps and self.runtime != "torch":
            raise ValueError("adapt_steps > 0 fine-tunes the network in PyTorch: it needs runtime='torch'")
        if steps and self.cfg.model.family != "dualpath":
            raise ValueError(
                f"adapt_steps > 0 needs a dual-path model; this one is {self.cfg.model.family!r}"
            )
        return steps

    def __call__(
        self, image: Image.Image, mask: Image.Image | np.ndarray | torch.Tensor, **kw: Any
    ) -> Image.Image:
        """The first fill of ``fill(image, mask, **kw)``."""
        return self.fill(image, mask, **kw)[0]

    def fill(
        self,
        image: Image.Image,
        mask: Image.Image | np.ndarray | torch.Tensor,
        *,
        samples: int = 1,
        seed: int | None = None,
        dilate: int = 0,
        invert: bool = False,
        feather: int = 0,
        texture: float | None = None,
        adapt_steps: int | None = None,
    ) -> list[Image.Image]:
        """Fill the holes of ``image`` (any size); returns ``samples`` images of the same size.

        ``mask``: a PIL image (white = hole, thresholded at 127; resized with NEAREST and a warning if
        its size differs), a bool/uint8/float array H×W or a tensor H×W, 1×H×W or 1×1×H×W (1 = hole).
        ``samples`` 1 without ``seed``: deterministic fill (prior mean). ``samples`` > 1 or a ``seed``:
        draws from the prior with a generator seeded by ``seed`` (default 0), reproducible.
        Mode: RGB → RGB, RGBA → RGBA (alpha copied), L → L, LA → LA, P with transparency → RGBA; any
        other mode (P, CMYK, I;16, …) is filled in RGB and returned as RGB. ``image.info``'s ICC profile
        and EXIF are carried over. Pixels outside the (dilated) hole are bit-identical to the input (to
        its RGB/RGBA conversion for converted modes). A mask with no hole returns unchanged copies.
        ``dilate``: grow the hole by this many px first. ``feather``: blend over this many px inside the
        hole's border (this mixes in the original hole content there; combine with ``dilate``).
        ``invert``: black = hole. ``texture``, ``adapt_steps``: this call's texture strength and
        per-photo adaptation steps (None: the Inpainter's).
        Pass images opened with ``images.open_image`` (EXIF orientation applied).
        """
        import torch

        _check_image(image)
        if samples < 1 or dilate < 0 or feather < 0:
            raise ValueError(f"samples={samples} must be >= 1, dilate={dilate} and feather={feather} >= 0")
        from .texture import check_strength

        strength = self.texture if texture is None else check_strength(texture)
        steps = self.adapt_steps if adapt_steps is None else self._check_adapt(adapt_steps)
        hole = mask_array(mask, image.size, invert=invert)
        if not hole.any():
            warnings.warn("mask has no hole; nothing to fill", stacklevel=2)
            return [image.copy() for _ in range(samples)]
        fraction = float(hole.mean())
        if fraction == 1.0:
            warnings.warn(
                "mask covers the whole image: there is no context to fill from (inverted? try --invert)",
                stacklevel=2,
            )
        elif fraction > POLARITY_LIMIT:
            warnings.warn(
                f"mask is {fraction:.0%} hole (white = hole); it may be inverted: try --invert", stacklevel=2
            )
        if dilate:
            hole = dilate_mask(hole, dilate)
        base, alpha = _split_alpha(image)
        rgb = np.asarray(base)
        outs = [np.array(rgb) for _ in range(samples)]
        generator = None
        if samples > 1 or seed is not None:
            generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
        with torch.inference_mode():
            for win in self.windows(hole):
                y0, y1, x0, x1 = win
                inside = hole[y0:y1, x0:x1]
                weight = _feather_weights(hole, win, feather) if feather else None
                for out, filled in zip(
                    outs, self._fill_window(rgb, hole, win, samples, generator, strength, steps), strict=True
                ):
                    region = out[y0:y1, x0:x1]
                    if weight is not None:
                        filled = (weight * filled + (1.0 - weight) * region + 0.5).astype(np.uint8)
                    region[inside] = filled[inside]
        if samples > 1:
            _warn_if_samples_alike(outs, hole)
        return [_restore(image, alpha, out, hole) for out in outs]

    # ------------------------------------------------------------------------------------------ windows

    def window_for(self, box: Box, height: int, width: int) -> Box:
        """Context window (y0, y1, x0, x1) of a hole's bounding box: grown by the margin, square, clipped."""
        y0, y1, x0, x1 = box
        side = max(y1 - y0, x1 - x0)
        grow = max(self.min_margin, math.ceil(self.margin * side))
        square = max(side + 2 * grow, self.train_size)
        return (*_span(y0, y1, square, height), *_span(x0, x1, square, width))

    def windows(self, hole: np.ndarray) -> list[Box]:
        """Disjoint context windows covering every hole pixel of ``hole`` (bool H×W)."""
        h, w = hole.shape
        boxes = np.array(hole_boxes(hole), dtype=np.int64).reshape(-1, 4)
        while True:
            wins = np.array([self.window_for(tuple(b), h, w) for b in boxes], dtype=np.int64).reshape(-1, 4)
            overlap = (
                (wins[:, None, 0] < wins[None, :, 1])
                & (wins[None, :, 0] < wins[:, None, 1])
                & (wins[:, None, 2] < wins[None, :, 3])
                & (wins[None, :, 2] < wins[:, None, 3])
            )
            labels = _union_labels(overlap)
            if labels.max(initial=-1) + 1 == len(boxes):
                return [tuple(int(v) for v in win) for win in wins]
            boxes = np.array(
                [
                    [b[:, 0].min(), b[:, 1].max(), b[:, 2].min(), b[:, 3].max()]
                    for b in (boxes[labels == k] for k in range(labels.max() + 1))
                ],
                dtype=np.int64,
            )

    def _fill_window(
        self,
        rgb: np.ndarray,
        hole: np.ndarray,
        win: Box,
        samples: int,
        generator: torch.Generator | None,
        texture: float = 0.0,
        adapt_steps: int = 0,
    ) -> Iterator[np.ndarray]:
        """Run the net on one window (adapted to it first for ``adapt_steps`` steps); yields ``samples``
        fills as uint8 arrays of the window's size, with texture added at strength ``texture``."""
        import torch
        import torch.nn.functional as F

        y0, y1, x0, x1 = win
        crop = Image.fromarray(rgb[y0:y1, x0:x1])
        wh, ww = y1 - y0, x1 - x0
        hole_t = torch.from_numpy(hole[y0:y1, x0:x1]).float()[None, None]
        scale = min(1.0, self.working_size / max(wh, ww))
        if scale < 1.0:
            th, tw = (
                max(1, min(self.working_size, round(wh * scale))),
                max(1, min(self.working_size, round(ww * scale))),
            )
            crop = crop.resize((tw, th), Image.Resampling.LANCZOS)
            hole_t = F.adaptive_max_pool2d(hole_t, (th, tw))  # any hole pixel → hole: nothing is missed
        else:
            th, tw = wh, ww
        image_t = torch.from_numpy(np.asarray(crop, dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1.0
        # multiples of the stride, and at least two latent cells a side (instance norm needs > 1 value)
        pad_h = max(2 * self.stride, math.ceil(th / self.stride) * self.stride) - th
        pad_w = max(2 * self.stride, math.ceil(tw / self.stride) * self.stride) - tw
        if pad_h or pad_w:
            mode = "reflect" if pad_h < th and pad_w < tw else "replicate"
            image_t = F.pad(image_t, (0, pad_w, 0, pad_h), mode=mode)
            hole_t = F.pad(hole_t, (0, pad_w, 0, pad_h), mode=mode)
        device = next(self.net.parameters()).device
        image_t, hole_t = image_t.to(device), hole_t.to(device)
        noise = None
        if generator is not None:
            latent = self.net.latent_shape(image_t.shape[-2], image_t.shape[-1])
            noise = torch.randn((samples, 1, *latent), generator=generator).to(device)
        net = self.net
        if adapt_steps:
            from .adapt import adapt

            net = adapt(self.net, image_t, hole_t, steps=adapt_steps, lr=self.adapt_lr)
        filled = self.run_net(image_t, hole_t, noise, net=net)
        for one in filled[:, 0, :, :th, :tw]:
            arr = one.float().cpu().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)
            arr = arr.permute(1, 2, 0).numpy()
            if scale < 1.0:
                arr = np.asarray(Image.fromarray(arr).resize((ww, wh), Image.Resampling.BICUBIC))
            if texture > 0:
                arr = _add_texture(rgb[y0:y1, x0:x1], hole[y0:y1, x0:x1], arr, texture, generator, device)
            yield arr

    # ------------------------------------------------------------------------------------ execution

    def run_net(
        self,
        image: torch.Tensor,
        hole: torch.Tensor,
        noise: torch.Tensor | None = None,
        net: DualPathInpainter | None = None,
    ) -> torch.Tensor:
        """The network on one padded batch: image N×3×H×W in [-1, 1], hole N×1×H×W (1 = hole).

        ``noise`` None: the deterministic fill, returned as 1×N×3×H×W; ``noise`` S×N×Z×h×w: S sampled
        fills, S×N×3×H×W. Composites (pixels outside the hole are the input's), float32, on the runtime
        and precision this Inpainter was built with (on the device of ``image``; autocast on its type).
        ``net``: another network to run instead of ``self.net`` (a per-window adapted copy; not compiled).
        """
        import torch

        if self.runtime == "onnx":
            if noise is None:
                return self._onnx_session(sampling=False).run(image, hole)[None]
            session = self._onnx_session(sampling=True)
            with torch.inference_mode():  # the smooth fill (None without one) once for all samples
                base = self.net.prefill(image, hole)
            return torch.stack([session.run(image, hole, eps, base) for eps in noise])
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        if net is not None and net is not self.net:
            complete = net.complete
        else:
            complete = self._compiled_complete() if self.compile else self.net.complete
        bf16 = self.precision == "bf16"
        with torch.inference_mode(), torch.autocast(image.device.type, torch.bfloat16, enabled=bf16):
            out = complete(image, hole) if noise is None else complete(image, hole, noise=noise)
        out = out[None] if noise is None else out
        return out.float()

    def _compiled_complete(self) -> Any:
        """``torch.compile`` of ``self.net.complete``, built on first use (compiles per new input shape)."""
        import torch

        if self._compiled is None:
            self._compiled = torch.compile(self.net.complete)
        return self._compiled

    def _onnx_session(self, *, sampling: bool) -> Any:
        """The ONNX Runtime session of the deterministic or sampling graph (dynamic size), built once.
        A model's smooth fill is computed by PyTorch on each hole's box and fed to the graph."""
        if sampling not in self._onnx:
            from .export import runtime_session

            self._onnx[sampling], _ = runtime_session(self.net, sampling=sampling, threads=self.threads)
        return self._onnx[sampling]


# ----------------------------------------------------------------------------------------------- devices


def _add_texture(
    known: np.ndarray,
    hole: np.ndarray,
    filled: np.ndarray,
    strength: float,
    generator: torch.Generator | None,
    device: torch.device | None = None,
) -> np.ndarray:
    """``filled`` (uint8 H×W×3, one window's fill) with texture copied from ``known`` (the window's
    pixels) added inside ``hole`` (bool H×W) at ``strength`` (``texture.transfer_texture``, on
    ``device``, default the CPU); uint8 H×W×3."""
    import torch

    from .images import pil_to_tensor, tensor_to_pil
    from .texture import transfer_texture

    image = pil_to_tensor(Image.fromarray(np.where(hole[..., None], filled, known)))
    mask = torch.from_numpy(hole)[None, None].float()
    if device is not None:
        image, mask = image.to(device), mask.to(device)
    out = transfer_texture(image, mask, strength=strength, generator=generator)
    return np.asarray(tensor_to_pil(out))


def resolve_device(device: str | torch.device) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device`` → a checked ``torch.device`` (CUDA with
    its index). A one-line ValueError for anything else, and when CUDA (or that GPU) is not available."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device {str(device)!r} is not a device: use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise ValueError(f"device {str(device)!r} is not supported: use cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        build = "" if torch.version.cuda else " (this torch build has no CUDA)"
        raise ValueError(f"device {str(device)!r}: CUDA is not available on this machine{build}; use cpu")
    index = torch.cuda.current_device() if dev.index is None else dev.index
    if index >= torch.cuda.device_count():
        raise ValueError(
            f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return torch.device("cuda", index)


def _device_of(net: Any) -> torch.device:
    """The device of a network's first parameter (the CPU for one without parameters)."""
    import torch

    param = next(iter(net.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


# ------------------------------------------------------------------------------------------- mask helpers


def _check_image(image: Any) -> None:
    if not isinstance(image, Image.Image):
        raise ValueError(f"image must be a PIL image, got {type(image).__name__}")
    if image.width == 0 or image.height == 0:
        raise ValueError(f"image is empty ({image.width}×{image.height})")


def mask_array(
    mask: Image.Image | np.ndarray | torch.Tensor, size: tuple[int, int], *, invert: bool = False
) -> np.ndarray:
    """Any supported mask → bool array H×W (True = hole) for an image of ``size`` = (W, H).

    PIL masks: white = hole, threshold 127 (images.mask_to_tensor). Arrays/tensors: bool as is, integers
    or values above 1 thresholded at 127, other floats at 0.5. A size mismatch is resized (NEAREST) with a
    warning.
    """
    from .images import mask_to_tensor

    if isinstance(mask, Image.Image):
        if mask.width == 0 or mask.height == 0:
            raise ValueError(f"mask is empty ({mask.width}×{mask.height})")
        if mask.size != size:
            _warn_resize(mask.size, size)
            mask = mask.resize(size, Image.Resampling.NEAREST)
        return mask_to_tensor(mask, threshold=127, invert=invert)[0, 0].numpy() > 0.5
    if hasattr(mask, "detach"):  # a torch tensor
        mask = mask.detach().float().cpu().numpy()
    if not isinstance(mask, np.ndarray):
        raise ValueError(f"mask must be a PIL image, a numpy array or a tensor, got {type(mask).__name__}")
    arr = mask
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4):  # H×W×C: a hole in any colour channel
        arr = arr[..., :3].max(axis=-1)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"mask array must be H×W (or 1×H×W, 1×1×H×W, H×W×C), got shape {mask.shape}")
    if arr.dtype == bool:
        hole = arr
    elif np.issubdtype(arr.dtype, np.integer) or float(arr.max()) > 1.0:
        hole = arr > 127
    else:
        hole = arr > 0.5
    if hole.shape != (size[1], size[0]):
        _warn_resize((hole.shape[1], hole.shape[0]), size)
        small = Image.fromarray(hole.astype(np.uint8) * 255, "L")
        hole = np.asarray(small.resize(size, Image.Resampling.NEAREST)) > 127
    return ~hole if invert else np.array(hole)


def _warn_resize(got: tuple[int, int], want: tuple[int, int]) -> None:
    warnings.warn(
        f"mask is {got[0]}×{got[1]} but the image is {want[0]}×{want[1]}; mask resized (nearest)",
        stacklevel=3,
    )


def _dilate_axis(a: np.ndarray, r: int, axis: int) -> np.ndarray:
    """True where ``a`` has a True within ±r along ``axis`` (running-sum test, O(n) for any r)."""
    n = a.shape[axis]
    shape = list(a.shape)
    shape[axis] = 1
    c = np.concatenate([np.zeros(shape, np.int32), np.cumsum(a, axis=axis, dtype=np.int32)], axis=axis)
    idx = np.arange(n)
    return (
        np.take(c, np.minimum(idx + r + 1, n), axis=axis) - np.take(c, np.maximum(idx - r, 0), axis=axis)
    ) > 0


def dilate_mask(hole: np.ndarray, px: int) -> np.ndarray:
    """Grow the hole (bool H×W) by ``px`` pixels: a (2·px+1)² square max-filter, run near the holes only."""
    if px <= 0 or not hole.any():
        return hole
    rows, cols = np.flatnonzero(hole.any(axis=1)), np.flatnonzero(hole.any(axis=0))
    y0, y1 = max(0, rows[0] - px), min(hole.shape[0], rows[-1] + px + 1)
    x0, x1 = max(0, cols[0] - px), min(hole.shape[1], cols[-1] + px + 1)
    out = hole.copy()
    out[y0:y1, x0:x1] = _dilate_axis(_dilate_axis(hole[y0:y1, x0:x1], px, 1), px, 0)
    return out


def _feather_weights(hole: np.ndarray, win: Box, feather: int) -> np.ndarray:
    """Fill weight H×W×1 (float32) over window ``win``: k/(feather+1) at chessboard distance k ≤ feather
    from the nearest non-hole pixel, 1 deeper inside; outside the hole its value does not matter."""
    y0, y1, x0, x1 = win
    h, w = hole.shape
    g = feather + 1  # look this far beyond the window for known pixels
    gy0, gy1, gx0, gx1 = max(0, y0 - g), min(h, y1 + g), max(0, x0 - g), min(w, x1 + g)
    known = ~hole[gy0:gy1, gx0:gx1]
    steps = np.zeros(known.shape, np.float32)
    for _ in range(feather):
        known = _dilate_axis(_dilate_axis(known, 1, 1), 1, 0)
        steps += ~known
    weight = (steps + 1.0) / (feather + 1.0)
    return weight[y0 - gy0 : y1 - gy0, x0 - gx0 : x1 - gx0, None]


def hole_boxes(hole: np.ndarray) -> list[Box]:
    """Bounding boxes (y0, y1, x0, x1) of the hole's 8-connected components.

    Components are found on a grid of at most 256 cells per side (a cell is a hole when any of its pixels
    is), so nearby specks may share a box; each box is then tightened to its hole pixels.
    """
    h, w = hole.shape
    if hole.all():
        return [(0, h, 0, w)]
    cell = max(1, math.ceil(max(h, w) / _GRID_CELLS))
    gh, gw = math.ceil(h / cell), math.ceil(w / cell)
    padded = np.zeros((gh * cell, gw * cell), bool)
    padded[:h, :w] = hole
    grid = padded.reshape(gh, cell, gw, cell).any(axis=(1, 3))
    seen = np.zeros_like(grid)
    boxes = []
    for sy, sx in zip(*np.nonzero(grid), strict=True):
        if seen[sy, sx]:
            continue
        seen[sy, sx] = True
        queue, cy0, cy1, cx0, cx1 = deque([(sy, sx)]), sy, sy, sx, sx
        while queue:
            y, x = queue.popleft()
            cy0, cy1, cx0, cx1 = min(cy0, y), max(cy1, y), min(cx0, x), max(cx1, x)
            for ny in (y - 1, y, y + 1):
                for nx in (x - 1, x, x + 1):
                    if 0 <= ny < gh and 0 <= nx < gw and grid[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
        py0, px0 = cy0 * cell, cx0 * cell
        sub = hole[py0 : (cy1 + 1) * cell, px0 : (cx1 + 1) * cell]
        rows, cols = np.flatnonzero(sub.any(axis=1)), np.flatnonzero(sub.any(axis=0))
        boxes.append(
            (py0 + int(rows[0]), py0 + int(rows[-1]) + 1, px0 + int(cols[0]), px0 + int(cols[-1]) + 1)
        )
    return boxes


def _span(lo: int, hi: int, length: int, limit: int) -> tuple[int, int]:
    """An interval of ``length`` (at most ``limit``) centred on [lo, hi), covering it, inside [0, limit)."""
    length = min(length, limit)
    start = round((lo + hi - length) / 2)
    start = min(max(start, hi - length), lo)
    start = min(max(start, 0), limit - length)
    return start, start + length


def _union_labels(adjacent: np.ndarray) -> np.ndarray:
    """Connected-component labels 0..k-1 of a symmetric boolean adjacency matrix."""
    n = len(adjacent)
    labels = np.full(n, -1, np.int64)
    k = 0
    for i in range(n):
        if labels[i] >= 0:
            continue
        stack, labels[i] = [i], k
        while stack:
            j = stack.pop()
            for m in np.flatnonzero(adjacent[j] & (labels < 0)):
                labels[m] = k
                stack.append(int(m))
        k += 1
    return labels


# ------------------------------------------------------------------------------------------- mode helpers


def _split_alpha(image: Image.Image) -> tuple[Image.Image, np.ndarray | None]:
    """The RGB image to fill and the alpha channel to carry over (None when there is none)."""
    from .images import to_rgb

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        return rgba.convert("RGB"), np.asarray(rgba.getchannel("A"))
    return to_rgb(image), None


def _restore(
    image: Image.Image, alpha: np.ndarray | None, filled: np.ndarray, hole: np.ndarray
) -> Image.Image:
    """Give the filled RGB array the input's mode back; outside the hole, the input's pixels exactly."""
    if image.mode in ("L", "LA"):
        grey = np.asarray(Image.fromarray(filled, "RGB").convert("L"))
        orig = np.asarray(image.getchannel("L") if image.mode == "LA" else image)
        grey = np.where(hole, grey, orig)
        out = (
            Image.fromarray(np.dstack([grey, alpha]), "LA")
            if alpha is not None
            else Image.fromarray(grey, "L")
        )
    elif alpha is not None:
        out = Image.fromarray(np.dstack([filled, alpha]), "RGBA")
    else:
        out = Image.fromarray(filled, "RGB")
    for key in ("icc_profile", "exif", "dpi"):
        if key in image.info:
            out.info[key] = image.info[key]
    return out


# ------------------------------------------------------------------------------------------------- files


def _format_of(path: Path) -> str:
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the image format from the file name {path.name!r} (use .png or .jpg)")
    return fmt


def save_output(image: Image.Image, path: str | os.PathLike) -> None:
    """Write atomically; format from the suffix. JPEG/WebP at quality 95, PNG as is; ICC and EXIF kept.

    JPEG cannot hold alpha: RGBA/LA outputs are flattened to RGB/L (alpha dropped) with a warning.
    """
    from .images import save_image_atomic

    path = Path(path)
    fmt = _format_of(path)
    params: dict[str, Any] = {}
    if fmt == "JPEG":
        if image.mode not in ("RGB", "L", "CMYK"):
            warnings.warn(f"{path.name}: JPEG has no alpha channel; transparency dropped", stacklevel=2)
            image = image.convert("L" if image.mode == "LA" else "RGB")
        params["quality"] = JPEG_QUALITY
    elif fmt == "WEBP":
        params["quality"] = JPEG_QUALITY
    if fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        params.update({k: image.info[k] for k in ("icc_profile", "exif") if image.info.get(k)})
    save_image_atomic(image, path, format=fmt, **params)


SAMPLES_ALIKE = 1.0  # grey levels: fills whose mean |difference| in the hole is below this look the same


def _warn_if_samples_alike(outs: list[np.ndarray], hole: np.ndarray) -> None:
    """Warn (one line) when every fill differs from the first by less than SAMPLES_ALIKE grey levels on
    average over the hole's pixels: the model barely uses its random draw (outs H×W×C uint8, hole H×W)."""
    first = outs[0][hole].astype(np.int16)
    spread = max(float(np.abs(o[hole].astype(np.int16) - first).mean()) for o in outs[1:])
    if spread < SAMPLES_ALIKE:
        warnings.warn(
            f"the {len(outs)} samples differ by {spread:.2f} grey levels on average in the hole: this "
            "model barely uses its random draw, so they look the same (see its model card)",
            stacklevel=3,
        )


def _sample_paths(base: Path, samples: int) -> list[Path]:
    """``name.ext`` for one sample, ``name_0.ext … name_{K-1}.ext`` for K."""
    if samples == 1:
        return [base]
    return [base.with_name(f"{base.stem}_{i}{base.suffix}") for i in range(samples)]


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _mask_index(mask_dir: Path) -> dict[str, Path]:
    """Mask files by relative path without suffix and by bare stem (first in sorted order wins)."""
    from .images import list_images

    index: dict[str, Path] = {}
    for p in list_images(mask_dir):
        index.setdefault(p.relative_to(mask_dir).with_suffix("").as_posix(), p)
    for p in list_images(mask_dir):
        index.setdefault(p.stem, p)
    return index


def _find_mask(image: Path, rel: Path, index: dict[str, Path]) -> Path | None:
    """The mask of ``image``: same relative name or stem, or with a ``_mask`` suffix, any extension."""
    key = rel.with_suffix("").as_posix()
    for cand in (key, f"{key}_mask", rel.stem, f"{rel.stem}_mask"):
        p = index.get(cand)
        if p is not None and not _same(p, image):
            return p
    return None


def run_fill(
    image: str | os.PathLike,
    mask: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model: Inpainter | str | os.PathLike = "default",
    samples: int = 1,
    seed: int | None = None,
    invert: bool = False,
    dilate: int = 0,
    feather: int = 0,
    margin: float = 0.5,
    working_size: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    **speed: Any,
) -> int:
    """Fill one image file or a folder of images; returns the exit code (0 ok, 1 some files failed).

    Single file: ``out`` is the output file (format from its suffix; no suffix → the input's suffix is
    appended); an existing folder or a path ending in '/' gets the input's file name inside it.
    Folder (recursive): ``out`` is a folder (created) mirroring the input's sub-folders, names and
    formats. ``mask`` is one mask file for every image, or a folder where ``photo.jpg`` finds
    ``photo.*`` or ``photo_mask.*`` (any image extension, same sub-folder or by stem). Files used as masks
    and files under ``out`` are not inputs. K > 1 samples are written as ``name_0.ext … name_{K-1}.ext``.
    Writing onto an input or mask is refused unless ``overwrite``. Bad files in a folder are listed on
    stderr (one line each) and the rest are still filled. ``model``: an ``Inpainter`` or a model source
    (then ``margin``, ``working_size`` and ``speed`` — ``runtime``, ``precision``, ``compile``,
    ``threads``, ``device``, ``adapt_steps``, ``texture``, see ``Inpainter`` — configure the loaded
    one). Warnings are printed one line each.
    """
    from .images import list_images

    if speed.get("device") is not None and not isinstance(model, Inpainter):
        resolve_device(speed["device"])  # a wrong device is a one-line error before any work
    ends_with_sep = os.fspath(out).endswith(("/", os.sep))
    src, mask_path, out = Path(image), Path(mask), Path(out)
    if not src.exists():
        raise ValueError(f"no such image file or folder: {src}")
    if not mask_path.exists():
        raise ValueError(f"no such mask file or folder: {mask_path}")
    if samples < 1:
        raise ValueError(f"--samples {samples} must be >= 1")

    if src.is_file():
        if mask_path.is_dir():
            found = _find_mask(src, Path(src.name), _mask_index(mask_path))
            if found is None:
                raise ValueError(
                    f"no mask for {src.name} in {mask_path} (looked for {src.stem}.* and {src.stem}_mask.*)"
                )
            mask_path = found
        if out.is_dir() or ends_with_sep:
            base = out / src.name
        else:
            base = out if out.suffix else out.with_name(out.name + src.suffix)
        jobs = [(src, mask_path, _sample_paths(base, samples))]
    else:
        if out.is_file():
            raise ValueError(f"-o {out} is a file; with a folder of images it must be a folder")
        index = _mask_index(mask_path) if mask_path.is_dir() else None
        # earlier outputs and a mask folder inside the input folder are not inputs
        skip = [d.resolve() for d in (out, mask_path) if d.is_dir() and not _same(d, src)]
        candidates = [p for p in list_images(src) if not any(p.resolve().is_relative_to(d) for d in skip)]
        matched = {
            p: (_find_mask(p, p.relative_to(src), index) if index is not None else mask_path)
            for p in candidates
        }
        used = {m.resolve() for m in matched.values() if m is not None}
        jobs = []
        for p in candidates:
            if p.resolve() in used:
                continue
            jobs.append((p, matched[p], _sample_paths(out / p.relative_to(src), samples)))
        if not jobs:
            raise ValueError(f"no images to fill in {src}")
        if _same(out, src) and not overwrite:
            raise ValueError(
                f"-o {out} is the input folder: refusing to overwrite the inputs (pass --overwrite)"
            )
    for _, _, outs in jobs:
        for o in outs:
            _format_of(o)

    inpainter = (
        model
        if isinstance(model, Inpainter)
        else Inpainter.from_pretrained(model, margin=margin, working_size=working_size, **speed)
    )
    bad: list[tuple[Path, str]] = []
    folder = src.is_dir()
    bar = _progress(jobs, enabled=progress and folder)
    for path, mpath, outs in bar:
        try:
            if mpath is None:
                raise ValueError("no mask found (looked for NAME.* and NAME_mask.* in the mask folder)")
            _fill_file(
                inpainter, path, mpath, outs, samples, seed, invert, dilate, feather, overwrite, folder
            )
        except (ValueError, OSError, MemoryError) as err:
            if not folder:
                if isinstance(err, MemoryError):
                    raise ValueError(f"not enough memory to fill {path}") from None
                raise
            bad.append((path, str(err) or type(err).__name__))
    if folder:
        _note(f"filled {len(jobs) - len(bad)} of {len(jobs)} images into {out}", sys.stdout)
    if bad:
        _note(f"dualinpaint: {len(bad)} file(s) failed:", sys.stderr)
        for path, reason in bad:
            _note(f"  {path}: {reason}", sys.stderr)
        return 1
    return 0


def _fill_file(
    inpainter: Inpainter,
    path: Path,
    mask_path: Path,
    outs: list[Path],
    samples: int,
    seed: int | None,
    invert: bool,
    dilate: int,
    feather: int,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Fill one file and write its outputs; warnings are printed as one line each on stderr."""
    from .images import open_image

    for o in outs:
        if (o.exists() and (_same(o, path) or _same(o, mask_path))) and not overwrite:
            raise ValueError(f"output {o} is an input file; refusing to overwrite it (pass --overwrite)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image, mask = open_image(path), open_image(mask_path)  # may warn: an animation's first frame
        results = inpainter.fill(
            image, mask, samples=samples, seed=seed, invert=invert, dilate=dilate, feather=feather
        )
        for result, o in zip(results, outs, strict=True):
            try:
                save_output(result, o)
            except OSError as err:  # disk full, a file where a folder should be, …: one line, no traceback
                where = f" ({err.filename})" if err.filename and str(err.filename) != str(o) else ""
                raise ValueError(f"cannot write {o}: {err.strerror or err}{where}") from None
    for w in caught:
        _note(f"dualinpaint: warning: {path.name}: {w.message}", sys.stderr)
    if not quiet:
        for o in outs:
            print(f"wrote {o}")


def _progress(items: list, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, unit="img", desc="fill", dynamic_ncols=True)


def _note(text: str, stream) -> None:
    """Print one line without breaking a tqdm progress bar."""
    from tqdm import tqdm

    tqdm.write(text, file=stream)


# -------------------------------------------------------------------------------------------------- demo


def _overlay(image: Image.Image, hole: np.ndarray) -> Image.Image:
    """The image with its hole tinted red (50 %) for showing a mask."""
    arr = np.asarray(image.convert("RGB")).astype(np.float32)
    red = np.array([255.0, 0.0, 0.0], np.float32)
    arr[hole] = 0.5 * arr[hole] + 0.5 * red
    return Image.fromarray(arr.round().astype(np.uint8), "RGB")


def run_demo(
    out_dir: str | os.PathLike | None = None,
    *,
    model: Inpainter | str | os.PathLike = "default",
    texture: float | None = None,
) -> Path:
    """Inpaint the bundled sample photos; writes ``demo.png`` (rows: input | mask overlay | result).

    ``out_dir`` defaults to ``./dualinpaint-demo``. ``texture``: the fills' texture strength (None: the
    Inpainter's, 0 for a loaded model). Returns the path written.
    """
    from .checkpoint import CheckpointError, packaged_models
    from .images import open_image, save_image_atomic

    if isinstance(model, Inpainter):
        inpainter = model
    else:
        if str(model) == "default" and "default" not in packaged_models() and not Path(model).exists():
            raise ValueError(
                "no packaged model 'default' in this installation yet; pass --model PATH "
                "(a run folder or a model.safetensors file)"
            )
        try:
            inpainter = Inpainter.from_pretrained(model)
        except CheckpointError as err:
            raise ValueError(f"{err}; pass --model PATH (a run folder or a model.safetensors file)") from None
    photos = [p for p in sorted(SAMPLES_DIR.glob("*.jpg")) if (p.parent / f"{p.stem}_mask.png").is_file()]
    if not photos:
        raise ValueError(f"no sample photos with masks in {SAMPLES_DIR}")
    rows = []
    for photo in photos:
        image, mask = open_image(photo), open_image(photo.parent / f"{photo.stem}_mask.png")
        result = inpainter(image, mask, texture=texture)
        rows.append(
            [image.convert("RGB"), _overlay(image, mask_array(mask, image.size)), result.convert("RGB")]
        )
    sheet = _contact_sheet(rows, ["input", "mask", "result"])
    out = Path(out_dir if out_dir is not None else "dualinpaint-demo") / "demo.png"
    save_image_atomic(sheet, out)
    return out


def _contact_sheet(
    rows: list[list[Image.Image]], titles: list[str], height: int = 256, gap: int = 4
) -> Image.Image:
    """Rows of tiles (each scaled to ``height``) with column titles, on a white background."""
    rows = [
        [t.resize((max(1, round(t.width * height / t.height)), height), Image.Resampling.LANCZOS) for t in r]
        for r in rows
    ]
    col_w = [max(r[c].width for r in rows) for c in range(len(titles))]
    header = 18
    width = sum(col_w) + gap * (len(col_w) + 1)
    sheet = Image.new("RGB", (width, header + len(rows) * (height + gap) + gap), "white")
    draw = ImageDraw.Draw(sheet)
    x = gap
    for c, title in enumerate(titles):
        draw.text((x + 2, 3), title, fill="black")
        for r, row in enumerate(rows):
            sheet.paste(row[c], (x, header + gap + r * (height + gap)))
        x += col_w[c] + gap
    return sheet


# --------------------------------------------------------------------------------------------------- CLI


def add_fill_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dualinpaint fill``."""
    p = parser
    p.add_argument("image", help="image file, or a folder of images (recursive)")
    p.add_argument(
        "--mask",
        required=True,
        help="mask file (white = hole; one file may serve a whole folder) or a folder of masks matched by "
        "name: photo.jpg ← photo.* or photo_mask.*",
    )
    p.add_argument(
        "-o",
        "--out",
        required=True,
        help="output file (format from its suffix), or a folder (for a folder input, or ending in '/')",
    )
    p.add_argument(
        "--samples",
        type=int,
        default=1,
        metavar="K",
        help="K fills, one per draw of the latent: NAME_0.ext … NAME_{K-1}.ext (a warning says when they "
        "come out alike)",
    )
    p.add_argument(
        "--seed", type=int, default=None, help="seed of the random fills (default: deterministic fill)"
    )
    p.add_argument("--model", default="default", help="packaged model name, run folder or .safetensors file")
    p.add_argument("--invert", action="store_true", help="the mask is black = hole")
    p.add_argument(
        "--dilate", type=int, default=0, metavar="PX", help="grow the hole by PX pixels (against halos)"
    )
    p.add_argument(
        "--feather",
        type=int,
        default=0,
        metavar="PX",
        help="blend the fill over PX pixels inside the hole border",
    )
    p.add_argument(
        "--margin",
        type=float,
        default=0.5,
        metavar="F",
        help="context around a hole, × its size (default 0.5)",
    )
    p.add_argument(
        "--working-size",
        type=int,
        default=None,
        metavar="PX",
        help="largest side the network runs at (default 2 × training size)",
    )
    p.add_argument(
        "--adapt",
        type=int,
        default=0,
        metavar="STEPS",
        help="fine-tune the network on the photo's own known pixels for STEPS steps before filling each "
        "hole (per-photo adaptation; about 30 steps, seconds per hole on a CPU; default 0 = off)",
    )
    add_texture_argument(p, samples=True)
    p.add_argument("--overwrite", action="store_true", help="allow writing over an input file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_speed_arguments(p)


def add_texture_argument(
    parser: argparse.ArgumentParser, *, samples: bool = False, help: str | None = None
) -> None:
    """``--texture [S]``: a float, 1 when given without a value, 0 (off) when absent. ``samples``: say
    what it does with ``--samples``; ``help``: replaces what it does (the strength part stays)."""
    what = help or "add texture copied from the photo's own known region to the fill of large holes"
    parser.add_argument(
        "--texture",
        type=float,
        nargs="?",
        const=1.0,
        default=0.0,
        metavar="S",
        help=f"{what}, at strength S (default 1 when given; 0 = off, the default)"
        + ("; with --samples each fill gets different texture" if samples else ""),
    )


def add_speed_arguments(parser: argparse.ArgumentParser, *, runtime_only: bool = False) -> None:
    """``--runtime`` (and unless ``runtime_only``: ``--precision``, ``--compile``, ``--threads``,
    ``--device``)."""
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="torch",
        help="run the network with PyTorch (default) or ONNX Runtime (pip install 'dualinpaint[onnx]')",
    )
    if runtime_only:
        return
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="auto (default): bf16 only where the CPU computes it natively, else fp32",
    )
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the network first (slow start, faster runs)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, metavar="N", help="CPU threads (default: physical cores)"
    )
    parser.add_argument(
        "--device",
        default="cpu",
        metavar="DEV",
        help="run the network on cpu (default), cuda or cuda:N (--runtime torch only)",
    )


def fill_command(args: argparse.Namespace) -> int:
    """``dualinpaint fill``: see ``run_fill``."""
    return run_fill(
        args.image,
        args.mask,
        args.out,
        model=args.model,
        samples=args.samples,
        seed=args.seed,
        invert=args.invert,
        dilate=args.dilate,
        feather=args.feather,
        margin=args.margin,
        working_size=args.working_size,
        overwrite=args.overwrite,
        progress=not args.quiet,
        runtime=args.runtime,
        precision=args.precision,
        compile=args.compile,
        threads=args.threads,
        device=getattr(args, "device", "cpu"),
        adapt_steps=args.adapt,
        texture=args.texture,
    )


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dualinpaint demo``."""
    add_texture_argument(parser)
    parser.add_argument(
        "--model", default="default", help="packaged model name, run folder or .safetensors file"
    )
    parser.add_argument(
        "-o", "--out", default="dualinpaint-demo", help="output folder (default ./dualinpaint-demo)"
    )


def demo_command(args: argparse.Namespace) -> int:
    """``dualinpaint demo``: inpaint the bundled samples and say where the sheet went."""
    path = run_demo(args.out, model=args.model, texture=args.texture)
    print(f"wrote {path}")
    return 0
