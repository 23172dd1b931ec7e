"""Sharding a stage's work across workers: Prefect's task runners over a Dask or Ray cluster (``scale.runner``).

A stage splits its items into contiguous shards aligned to its batches
(``batch_shards``), and ``run_shards`` runs one call per shard on the runner
that ``scale.runner`` names:

- ``local``: in this process, one after the other;
- ``dask``: a Prefect flow whose ``DaskTaskRunner`` (prefect-dask) drives a
  local cluster of ``scale.workers`` processes, or the scheduler at
  ``scale.address``;
- ``ray``: the same flow on Prefect's ``RayTaskRunner`` (prefect-ray), over a
  local Ray instance with ``scale.workers`` CPUs, or the cluster at
  ``scale.address`` (``ray://head:10001``).

A stage that shards more than once (judging scores every response, then
compares pairs, for each judge) opens ``cluster(scale)`` around its work, so
that one cluster serves all its shard runs. Each shard seeds and batches its work as the
whole run would, so the joined result is the unsharded result, byte for byte.
"""

from __future__ import annotations

import dataclasses
import functools
from contextlib import contextmanager
from typing import Callable, Iterator

from tasks.runtime import setup_process


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


def _set_up(fn: Callable) -> Callable:
    """``fn``, run after ``setup_process()`` (offline, no telemetry, threads): a Dask or Ray worker is a process
    of its own, and on a remote cluster it does not inherit this one's environment."""
    @functools.wraps(fn)
    def in_worker(**kw):
        setup_process()
        return fn(**kw)

    return in_worker


def _on(runner, fn: Callable, calls: list[dict]) -> list:
    """``fn`` over ``calls`` as the tasks of one Prefect flow run on ``runner``."""
    from prefect import flow, task

    shard = task(_set_up(fn), name=f"shard-{fn.__name__}", persist_result=False)

    @flow(name="rft-shards", task_runner=runner, persist_result=False)
    def shards() -> list:
        futures = [shard.submit(**kw) for kw in calls]
        return [f.result() for f in futures]

    return shards()


def _dask(fn: Callable, calls: list[dict], scale) -> list:
    from prefect_dask import DaskTaskRunner

    if scale.address:
        return _on(DaskTaskRunner(address=scale.address), fn, calls)
    return _on(DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=_dask_local(scale)), fn, calls)


def _dask_local(scale) -> dict:
    return {"n_workers": scale.workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None}


def _ray(fn: Callable, calls: list[dict], scale) -> list:
    from prefect_ray import RayTaskRunner

    # A Ray instance that cluster() started is reused as it is; otherwise the runner starts (and stops) one.
    return _on(RayTaskRunner(address=scale.address, init_kwargs=_ray_init(scale)), fn, calls)


def _ray_init(scale) -> dict:
    local = {} if scale.address else {"num_cpus": scale.workers}
    return {**local, "include_dashboard": False, "log_to_driver": False}


RUNNERS: dict[str, Callable] = {"local": _local, "dask": _dask, "ray": _ray}


def run_shards(fn: Callable, calls: list[dict], scale) -> list:
    """``[fn(**kw) for kw in calls]``, on the runner ``scale.runner`` names, results in the order of ``calls``."""
    return RUNNERS[scale.runner](fn, calls, scale)


@contextmanager
def _no_cluster(scale) -> Iterator:
    yield scale


@contextmanager
def _dask_cluster(scale) -> Iterator:
    if scale.address:
        yield scale
        return
    from distributed import LocalCluster

    with LocalCluster(**_dask_local(scale)) as local:
        yield dataclasses.replace(scale, address=local.scheduler_address)


@contextmanager
def _ray_cluster(scale) -> Iterator:
    import ray

    if ray.is_initialized():
        yield scale
        return
    ray.init(scale.address, **_ray_init(scale))
    try:
        yield scale
    finally:
        ray.shutdown()


CLUSTERS: dict[str, Callable] = {"local": _no_cluster, "dask": _dask_cluster, "ray": _ray_cluster}


@contextmanager
def cluster(scale) -> Iterator:
    """One cluster for every ``run_shards`` inside: yields the ``scale`` to pass them (a local Dask cluster's
    address filled in). Stops what it started. ``None`` (nothing to shard) yields None and starts nothing."""

    if scale is None:
        yield None
        return
    with CLUSTERS[scale.runner](scale) as live:
        yield live
