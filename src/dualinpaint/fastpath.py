"""The CPU fast path for inference: a frozen, channels-last generator copy with cache-friendly attention.

``prepare_for_inference(net)`` returns a copy that computes the same function as ``net.eval()`` (to float
rounding) but faster on a CPU:

- spectral norm baked into the weights once (``generator.freeze_for_inference``) instead of a division
  per conv per forward;
- weights and activations in channels-last memory order (oneDNN's preferred layout for convolutions);
- the short+long term attention computed in blocks of query rows: the N×HW×HW attention matrix is never
  materialised (at 512² it is 64 MB, at 1024² 1 GB), each block's energy/softmax/product stays in the
  CPU cache, and the two value products (decoder and encoder features) share one matrix product. This
  is exact: each row of a softmax only depends on that row.

Also: whether this CPU computes bf16 natively (``bf16_supported``; the environment variable
``DUALINPAINT_BF16=0|1`` forces the answer), the number of physical cores (``physical_cores``) and
``resolve_precision`` ("auto" → bf16 only where supported).
"""

from __future__ import annotations

import os
from functools import lru_cache

import torch
from torch import nn

from .generator import DualPathInpainter, freeze_for_inference
from .layers import ShortLongAttention

PRECISIONS = ("auto", "fp32", "bf16")
BLOCK_ELEMENTS = 1 << 20  # attention rows per block × positions ≈ 1 M floats (4 MB): fits in L2/L3


BF16_ENV = "DUALINPAINT_BF16"


def bf16_supported(device: torch.device | str = "cpu") -> bool:
    """True where bf16 autocast runs natively: CUDA with bf16, or a CPU with AVX512-BF16 / AMX.

    The environment variable ``DUALINPAINT_BF16`` overrides the detection for every device: ``1`` answers
    True (bf16 autocast then runs even where it is only emulated, correct but slow), ``0`` answers False;
    unset or empty: detect. Any other value is a ValueError. ``precision="auto"`` (``resolve_precision``)
    and ``train.bf16`` both follow this answer, so the tests can take either branch on any machine.
    """
    forced = os.environ.get(BF16_ENV, "").strip()
    if forced:
        if forced not in ("0", "1"):
            raise ValueError(f"{BF16_ENV}={forced!r} must be 0 (no bf16) or 1 (bf16), or unset (detect)")
        return forced == "1"
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - builds without oneDNN
        return False


@lru_cache(maxsize=1)
def physical_cores() -> int:
    """Physical CPU cores available to this process (SMT siblings counted once); at least 1."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        allowed = list(range(os.cpu_count() or 1))
    cores = set()
    for cpu in allowed:
        try:
            with open(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list") as f:
                cores.add(f.read().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads and return the count in force: ``threads`` if given (>= 1, else
    ValueError); otherwise the physical core count, applied only where it lowers the current setting
    (SMT siblings slow convolutions down)."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads={threads} must be >= 1")
        torch.set_num_threads(threads)
    elif torch.get_num_threads() > physical_cores():
        torch.set_num_threads(physical_cores())
    return torch.get_num_threads()


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``auto`` → ``bf16`` when ``device`` (default the CPU) computes it natively (``bf16_supported``), else
    ``fp32``; others are checked and kept."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return precision


class BlockedAttention(ShortLongAttention):
    """``ShortLongAttention`` evaluated in blocks of query rows (same parameters, same function)."""

    def forward(
        self, x: torch.Tensor, pre: torch.Tensor | None = None, hole: torch.Tensor | None = None
    ) -> torch.Tensor:
        n, c, h, w = x.shape
        long = self.long_term and pre is not None
        if long and hole is None:
            raise ValueError("long-term attention needs the hole mask with the encoder feature")
        q = self.query(x).flatten(2)  # N×C'×L
        qt = q.transpose(1, 2).contiguous()  # N×L×C'
        values = torch.cat([x, pre], dim=1) if long else x
        v = values.flatten(2).transpose(1, 2).contiguous()  # N×L×Cv
        length = h * w
        rows = max(16, min(length, BLOCK_ELEMENTS // max(length, 1)))
        ctx = torch.empty(n, length, v.shape[-1], dtype=v.dtype, device=v.device)
        for i in range(0, length, rows):
            energy = torch.bmm(qt[:, i : i + rows], q)  # N×rows×L
            ctx[:, i : i + rows] = torch.bmm(torch.softmax(energy, dim=-1), v)
        ctx = ctx.transpose(1, 2).reshape(n, -1, h, w)
        y_d = self.gamma * ctx[:, :c] + x
        if not long:
            return y_d
        y_e = self.alpha * hole * ctx[:, c:] + (1 - hole) * pre
        return self.merge(torch.cat([y_d, y_e], dim=1))


def prepare_for_inference(net: nn.Module, *, channels_last: bool = True) -> nn.Module:
    """A fast inference copy of ``net`` (eval mode, no gradients); ``net`` itself is left untouched.

    Dual-path networks get frozen spectral norm and blocked attention; other families (baselines) are
    deep-copied as they are. ``channels_last`` converts the weights' memory format. A network this
    function returned is returned as it is when asked for the same memory format (no second copy).
    """
    if getattr(net, "fast_inference_copy", None) == ("channels_last" if channels_last else "contiguous"):
        return net
    if isinstance(net, DualPathInpainter):
        fast = freeze_for_inference(net)
        for module in fast.modules():
            if type(module) is ShortLongAttention:
                module.__class__ = BlockedAttention
    else:
        import copy

        fast = copy.deepcopy(net).eval().requires_grad_(False)
    fast = fast.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    fast.fast_inference_copy = "channels_last" if channels_last else "contiguous"
    return fast
