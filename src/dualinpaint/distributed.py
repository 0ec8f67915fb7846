"""Distributed training from torchrun's environment only (RANK, LOCAL_RANK, WORLD_SIZE).

Every helper is a no-op in a single process. Gradients are averaged explicitly with one all-reduce per
optimiser step (``average_gradients``) rather than through ``DistributedDataParallel``: the WGAN-GP
penalty needs a double backward, which DDP's reducer does not support, and an explicit average keeps the
D and G steps written out in the trainer. Rank 0 alone logs and writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: global rank, local rank (device index), number of processes."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def dist_info_from_env() -> DistInfo:
    """Read torchrun's RANK / LOCAL_RANK / WORLD_SIZE; a plain process is rank 0 of 1."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistInfo()
    env = os.environ
    return DistInfo(int(env["RANK"]), int(env.get("LOCAL_RANK", 0)), int(env["WORLD_SIZE"]))


def init_distributed(info: DistInfo) -> torch.device:
    """Start the process group when launched by torchrun (nccl on GPU, gloo on CPU); return the device."""
    if torch.cuda.is_available():
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if info.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def shutdown_distributed() -> None:
    """Destroy the process group if one was started."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (so all start identical)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def average_gradients(params: list[nn.Parameter]) -> None:
    """All-reduce and average the gradients of ``params`` across ranks (one flat buffer)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def _collective_device() -> torch.device:
    """Where small collective tensors must live: nccl takes CUDA tensors only, gloo CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_mean(values: dict[str, float]) -> dict[str, float]:
    """Average a dict of floats across ranks (for logging); identity in one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1 or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist(), strict=True))


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any rank (so all ranks stop at the same step)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
