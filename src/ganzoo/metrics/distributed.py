"""Gathering per-sample rows across ranks (torchrun / accelerate), in global sample order.

Each rank processes the batches ``rank, rank + world, ...``; every row carries its global sample
index, so after the gather every rank holds the same rows in the same order as a
single-process run. Uses tensor collectives only (no pickling), on CUDA for NCCL and on the CPU
for Gloo.
"""

from __future__ import annotations

import torch

__all__ = ["rank_world", "gather_rows", "all_min"]


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def rank_world() -> tuple[int, int]:
    dist = _dist()
    return (dist.get_rank(), dist.get_world_size()) if dist is not None else (0, 1)


def _comm_device() -> torch.device:
    dist = _dist()
    if dist is not None and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_min(value: int) -> int:
    """The minimum of an int over ranks (e.g. "every rank found the cache entry")."""
    dist = _dist()
    if dist is None:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def gather_rows(rows: list[torch.Tensor], index: list[torch.Tensor],
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Concatenate this rank's ``rows`` with every other rank's, sorted by global ``index``."""
    local = torch.cat(rows).to(dtype) if rows else None
    idx = torch.cat(index).long() if index else torch.zeros(0, dtype=torch.long)
    dist = _dist()
    if dist is None:
        if local is None:
            raise ValueError("nothing to gather")
        return local[idx.argsort()]
    device = _comm_device()
    world = dist.get_world_size()
    # Shape of one row, agreed on by all ranks (a rank may have had no batch at all).
    shape = torch.zeros(5, dtype=torch.int64, device=device)
    if local is not None:
        tail = list(local.shape[1:])
        if len(tail) > 4:
            raise ValueError("rows may have at most 4 trailing dimensions")
        shape[0] = len(tail)
        shape[1:1 + len(tail)] = torch.tensor(tail, dtype=torch.int64)
    dist.all_reduce(shape, op=dist.ReduceOp.MAX)
    tail = [int(s) for s in shape[1:1 + int(shape[0])]]
    if local is None:
        local = torch.zeros((0, *tail), dtype=dtype)
    count = torch.tensor([len(local)], dtype=torch.int64, device=device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    counts = [int(c) for c in counts]
    m = max(counts)
    padded = torch.zeros((m, *tail), dtype=dtype, device=device)
    padded[:len(local)] = local.to(device)
    pidx = torch.full((m,), -1, dtype=torch.long, device=device)
    pidx[:len(idx)] = idx.to(device)
    all_rows = [torch.empty_like(padded) for _ in range(world)]
    all_idx = [torch.empty_like(pidx) for _ in range(world)]
    dist.all_gather(all_rows, padded)
    dist.all_gather(all_idx, pidx)
    out = torch.cat([r[:c] for r, c in zip(all_rows, counts)]).cpu()
    order = torch.cat([i[:c] for i, c in zip(all_idx, counts)]).cpu().argsort()
    return out[order]
