"""Sharding: prompts split into whole batches per worker; on a 2-worker Dask or Ray cluster (Prefect's
DaskTaskRunner and RayTaskRunner) generation and AI judging write the same bytes as in one process."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from conftest import merge

from tasks.workers import batch_shards


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


def _stage(path, name):
    run = subprocess.run(["rft", "stage", name], cwd=path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stderr


@pytest.fixture(scope="module")
def in_one_process(built_project, module_tmp):
    """The built project with the judge's batch at 32, labelled in one process: the bytes the sharded runs must
    write (generations from the built project's own generate stage, labels from this label stage)."""
    path = module_tmp("shard") / "proj"
    shutil.copytree(built_project[0], path)
    params = yaml.safe_load((path / "params.yaml").read_text())
    assert params["generate"]["batch_size"] < 32          # the tiny run's 32 prompts make 2+ batches: 2 shards
    assert params["label"]["judge"] == "embedding"
    # The judge's batch of 32 makes 4 batches of the 32 x 4 responses: 2 shards of 2 batches.
    merge(params, {"judges": {"embedding": {"batch_size": 32}}})
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _stage(path, "label")
    return path


@pytest.mark.servers
@pytest.mark.filterwarnings("ignore")
# Each runner on one stage (both go through the same sharding, tasks/workers.py): Dask generates, Ray judges. Every
# pair once would double the slowest tests of the suite (a cluster start and model loads per stage and runner).
@pytest.mark.parametrize("runner, started, stage, output", [
    ("dask", "rft-shards", "generate", "data/generations.jsonl"),
    ("ray", "Started a local Ray instance", "label", "data/labels.jsonl"),
])
def test_two_workers_generate_or_judge_the_same_bytes(in_one_process, tmp_path, runner, started, stage, output):
    path = tmp_path / "proj"
    shutil.copytree(in_one_process, path)
    out = path / output
    whole = out.read_bytes()
    out.unlink()

    params = yaml.safe_load((path / "params.yaml").read_text())
    merge(params, {"scale": {"runner": runner, "workers": 2}})
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    log = _stage(path, stage)
    assert started in log and "rft-shards" in log                      # the shards ran as a Prefect flow
    assert out.read_bytes() == whole
