"""Sharding a stage's work across workers: Prefect's task runners over a Dask cluster (``scale.runner``).

A stage splits its items into contiguous shards aligned to its batches
(``batch_shards``), and ``run_shards`` runs one call per shard on the runner
that ``scale.runner`` names: ``local`` (in this process, one after the other)
or ``dask`` (a Prefect flow whose ``DaskTaskRunner`` drives a local cluster of
``scale.workers`` processes, or the existing scheduler at ``scale.address``).
Each shard seeds its batches as the whole run would, so the joined result is
the unsharded result, byte for byte.
"""

from __future__ import annotations

from typing import Callable


def batch_shards(n_items: int, batch_size: int, n_shards: int) -> list[tuple[int, int, int]]:
    """Split ``n_items`` into at most ``n_shards`` contiguous runs of whole batches.

    Returns ``(first_batch, start, stop)`` per shard: the index of its first batch in the whole run, and its
    slice of the items. Batches are dealt as evenly as possible, earlier shards taking one more.
    """
    n_batches = -(-n_items // batch_size) if n_items else 0
    n_shards = max(1, min(n_shards, n_batches))
    base, extra = divmod(n_batches, n_shards)
    shards, first = [], 0
    for i in range(n_shards if n_batches else 0):
        count = base + (1 if i < extra else 0)
        shards.append((first, first * batch_size, min(n_items, (first + count) * batch_size)))
        first += count
    return shards


def _local(fn: Callable, calls: list[dict], scale) -> list:
    return [fn(**kw) for kw in calls]


def _dask(fn: Callable, calls: list[dict], scale) -> list:
    from prefect import flow, task
    from prefect_dask import DaskTaskRunner

    if scale.address:
        runner = DaskTaskRunner(address=scale.address)
    else:
        runner = DaskTaskRunner(cluster_class="distributed.LocalCluster",
                                cluster_kwargs={"n_workers": scale.workers, "threads_per_worker": 1,
                                                "processes": True, "dashboard_address": None})
    shard = task(fn, name=f"shard-{fn.__name__}", persist_result=False)

    @flow(name="rft-shards", task_runner=runner, persist_result=False)
    def shards() -> list:
        futures = [shard.submit(**kw) for kw in calls]
        return [f.result() for f in futures]

    return shards()


RUNNERS: dict[str, Callable] = {"local": _local, "dask": _dask}


def run_shards(fn: Callable, calls: list[dict], scale) -> list:
    """``[fn(**kw) for kw in calls]``, on the runner ``scale.runner`` names, results in the order of ``calls``."""
    return RUNNERS[scale.runner](fn, calls, scale)
