"""How many CPU threads this process may use, and torch's pool sized to it.

Every torch process starts one intra-op thread per core it sees, and OpenMP
threads spin while they wait. Two cycles side by side on 2 cores then run 4
spinning threads on 2 cores, and each step takes tens of times longer. So the
pool is sized from the cores this process may really use:

1. ``RFT_THREADS`` in the environment, when set (one per cycle when you run two
   cycles on a 2-core machine, for instance);
2. else ``scale.threads`` in ``params.yaml``, when set;
3. else the CPUs of the process's affinity mask (``os.sched_getaffinity``: a
   ``taskset`` or a container's CPU set), capped by the cgroup's CPU quota
   (``cpu.max`` in cgroup v2, ``cpu.cfs_quota_us / cpu.cfs_period_us`` in v1),
   rounded up.

Importing ``tasks`` sets ``OMP_NUM_THREADS`` from 1 or 3 before torch loads; each
stage applies the final count and records it in its MLflow run (tags
``rft.threads`` and ``rft.threads_from``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from tasks.errors import ConfigError

ENV = "RFT_THREADS"
CGROUP = Path("/sys/fs/cgroup")


def quota_v2(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` (``"<quota> <period>"``, quota ``max`` for none)."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    quota, period = int(parts[0]), int(parts[1])
    return quota / period if quota > 0 and period > 0 else None


def quota_v1(quota_us: str, period_us: str) -> float | None:
    """CPUs allowed by cgroup v1's ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us`` (quota -1 for none)."""
    quota, period = int(quota_us.strip()), int(period_us.strip())
    return quota / period if quota > 0 and period > 0 else None


def cgroup_cpus(root: Path = CGROUP) -> float | None:
    """The CPU quota of this process's cgroup, or None when there is none (or it cannot be read)."""
    try:
        if (root / "cpu.max").is_file():
            return quota_v2((root / "cpu.max").read_text())
        v1 = root / "cpu"
        if (v1 / "cpu.cfs_quota_us").is_file():
            return quota_v1((v1 / "cpu.cfs_quota_us").read_text(), (v1 / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None


def usable_cores(affinity: int | None = None, quota: float | None = None) -> int:
    """The cores this process may use: its affinity mask, capped by the cgroup quota rounded up; at least 1."""
    if affinity is None:
        affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if quota is None:
        quota = cgroup_cpus()
    return max(1, min(affinity, math.ceil(quota)) if quota else affinity)


def thread_count(setting: int | None = None, env: dict | None = None) -> tuple[int, str]:
    """``(threads, where the number came from)``: ``RFT_THREADS``, then ``scale.threads``, then the cores."""
    env = os.environ if env is None else env          # RFT_THREADS: the user's setting of the thread count
    raw = env.get(ENV, "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ConfigError(f"{ENV}: a whole number of threads >= 1, got {raw!r}")
        return int(raw), ENV
    if setting:
        return setting, "scale.threads"
    return usable_cores(), "cores"


def apply(setting: int | None = None) -> tuple[int, str]:
    """Size torch's intra-op pool (or, before torch loads, ``OMP_NUM_THREADS``) and return the count."""
    import sys

    n, source = thread_count(setting)
    os.environ["OMP_NUM_THREADS"] = str(n)      # what torch and the processes this one starts size their pools by
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    return n, source
