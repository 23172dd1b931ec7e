"""Sharding: prompts split into whole batches per worker; on a 2-worker Dask cluster (Prefect's DaskTaskRunner)
generation writes the same bytes as in one process."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from conftest import merge
from tasks.shard import batch_shards


@pytest.mark.parametrize("n, batch, shards, expected", [
    # 10 items in batches of 4 -> 3 batches (4, 4, 2); 2 shards take 2 and 1 batches: items 0-7 and 8-9,
    # and the second starts at batch 2 of the whole run.
    (10, 4, 2, [(0, 0, 8), (2, 8, 10)]),
    # 5 items -> 2 batches; 5 shards asked, only 2 can have work.
    (5, 4, 5, [(0, 0, 4), (1, 4, 5)]),
    # 12 items -> 3 batches of 4 over 3 shards: one batch each.
    (12, 4, 3, [(0, 0, 4), (1, 4, 8), (2, 8, 12)]),
    (3, 4, 1, [(0, 0, 3)]),
    (0, 4, 2, []),
])
def test_batch_shards(n, batch, shards, expected):
    assert batch_shards(n, batch, shards) == expected


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_two_dask_workers_generate_the_same_bytes(built_project, tmp_path):
    built, _, _ = built_project
    path = tmp_path / "proj"
    shutil.copytree(built, path)
    params = yaml.safe_load((path / "params.yaml").read_text())
    assert params["generate"]["batch_size"] < 32          # the tiny run's 32 prompts make 2+ batches: 2 shards
    out = path / "data/generations.jsonl"
    whole = out.read_bytes()
    out.unlink()
    merge(params, {"scale": {"runner": "dask", "workers": 2}})
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run = subprocess.run(["rft", "stage", "generate"], cwd=path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "rft-shards" in run.stderr                                  # the shards ran as a Prefect flow
    assert out.read_bytes() == whole
