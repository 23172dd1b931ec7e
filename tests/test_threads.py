"""Torch's thread pool sized from the cores a process may use: the cgroup quota read by hand, the precedence of
RFT_THREADS over scale.threads over the cores, and a bad value named."""

from __future__ import annotations

import pytest

from tasks.config import parse_params
from tasks.errors import ConfigError
from tasks.threads import cgroup_cpus, quota_v1, quota_v2, thread_count, usable_cores


def test_cgroup_quotas():
    # v2 cpu.max "<quota> <period>": 150000 us of CPU per 100000 us period is 1.5 CPUs; "max" is no limit.
    assert quota_v2("150000 100000\n") == 1.5 and quota_v2("max 100000\n") is None
    # v1: cfs_quota_us -1 is no limit; 50000 / 100000 is half a CPU.
    assert quota_v1("-1\n", "100000\n") is None and quota_v1("50000", "100000") == 0.5


def test_cgroup_files_v2_then_v1(tmp_path):
    assert cgroup_cpus(tmp_path) is None                              # neither file: no quota
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu/cpu.cfs_quota_us").write_text("300000\n")
    (tmp_path / "cpu/cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpus(tmp_path) == 3.0
    (tmp_path / "cpu.max").write_text("200000 100000\n")               # v2 when the unified file is there
    assert cgroup_cpus(tmp_path) == 2.0
    (tmp_path / "cpu.max").write_text("garbage\n")
    assert cgroup_cpus(tmp_path) is None


@pytest.mark.parametrize("affinity, quota, cores", [
    (4, None, 4),     # no quota: the CPU set
    (4, 1.5, 2),      # 1.5 CPUs of quota: 2 threads (rounded up), fewer than the 4 CPUs it may run on
    (2, 8.0, 2),      # a quota above the CPU set changes nothing
    (1, 0.5, 1),      # at least one
])
def test_usable_cores(affinity, quota, cores):
    assert usable_cores(affinity, quota) == cores


def test_rft_threads_wins_over_params_which_wins_over_the_cores():
    assert thread_count(4, {"RFT_THREADS": "1"}) == (1, "RFT_THREADS")
    assert thread_count(3, {}) == (3, "scale.threads")
    assert thread_count(None, {"RFT_THREADS": " "}) == (usable_cores(), "cores")
    with pytest.raises(ConfigError, match="RFT_THREADS: a whole number of threads >= 1, got 'two'"):
        thread_count(None, {"RFT_THREADS": "two"})
    with pytest.raises(ConfigError, match="scale.threads"):
        parse_params({"scale": {"threads": 0}})
