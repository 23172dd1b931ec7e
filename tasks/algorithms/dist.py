"""Data parallelism for the algorithms that run their own loops (PPO, best-of-n, online DPO, Constitutional AI)
under ``accelerate launch``: each process samples and judges its share of the prompts, the shares are gathered
back in order, and PPO averages its gradients. In one process every helper is the identity.

The shares are contiguous (``span``), so gathering them in rank order restores the original order.
"""

from __future__ import annotations

from typing import Callable


def world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless a process group is running."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def span(n: int, rank: int, size: int) -> tuple[int, int]:
    """The contiguous share [lo, hi) of ``n`` items that process ``rank`` of ``size`` takes: the sizes differ by
    at most one and the shares tile 0..n in rank order."""
    return n * rank // size, n * (rank + 1) // size


def gather(items: list) -> list:
    """Every process's list, concatenated in rank order, on every process."""
    import torch.distributed as dist

    rank, size = world()
    if size == 1:
        return list(items)
    parts: list = [None] * size
    dist.all_gather_object(parts, list(items))
    return [x for part in parts for x in part]


def sharded(fn: Callable[[list], list], items: list) -> list:
    """``fn`` over this process's share of ``items``, gathered: the same list as ``fn(items)`` in one process
    for any ``fn`` that maps each item on its own (samples drawn per share differ from one process's draws)."""
    rank, size = world()
    lo, hi = span(len(items), rank, size)
    return gather(fn(items[lo:hi]))


def average_gradients(params: list) -> None:
    """Average the gradients of ``params`` over the processes, in one flat all-reduce (a missing gradient
    counts as zero)."""
    import torch
    import torch.distributed as dist

    _, size = world()
    if size == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= size
    offset = 0
    for p, g in zip(params, grads):
        p.grad = flat[offset:offset + g.numel()].view_as(p).clone()
        offset += g.numel()


def mean_over(values: dict[str, float]) -> dict[str, float]:
    """Each figure averaged over the processes (NaN where any process has none)."""
    import torch
    import torch.distributed as dist

    _, size = world()
    if size == 1 or not values:
        return dict(values)
    device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([float(v) for v in values.values()], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / size for k, v in zip(values, t.tolist())}
