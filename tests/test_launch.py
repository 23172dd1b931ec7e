"""Training under `accelerate launch`: the reward stage's data-parallel path on 2 CPU processes (gloo), the
configs in infra/accelerate/, and a missing config named by its key."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT, TINY_SECTIONS, merge


@pytest.mark.parametrize("name, kind", [("ddp", "MULTI_GPU"), ("zero2", "DEEPSPEED"), ("zero3", "DEEPSPEED"),
                                        ("fsdp", "FSDP")])
def test_accelerate_configs(name, kind):
    cfg = yaml.safe_load((ROOT / f"infra/accelerate/{name}.yaml").read_text())
    assert cfg["distributed_type"] == kind and cfg["num_machines"] == 1 and cfg["num_processes"] >= 2
    if kind == "DEEPSPEED":
        assert cfg["deepspeed_config"]["zero_stage"] == int(name[-1])


def _project(built, dest, **reward):
    shutil.copytree(built, dest)
    shutil.copytree(ROOT / "infra", dest / "infra", dirs_exist_ok=True)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    merge(params, {"reward": {"launcher": "accelerate", "num_processes": 2, **reward}})
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_reward_stage_trains_on_two_cpu_processes(built_project, tmp_path):
    from mlflow import MlflowClient

    from tasks.rewardmodel import RewardModel

    built, _, _ = built_project
    path = _project(built, tmp_path / "proj")
    out = subprocess.run(["rft", "stage", "train_reward"], cwd=path, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    stats = json.loads((path / "reports/reward/metrics.json").read_text())
    assert stats["world_size"] == 2                      # two processes shared the data, gradients averaged
    assert 0.0 <= stats["heldout_accuracy"] <= 1.0 and stats["train_pairs"] > 0
    scores = RewardModel(path / "models/reward", 64).score(["a fine meal", "cold soup"])
    assert len(scores) == 2 and all(s == s for s in scores)            # a model that loads and scores
    client = MlflowClient(f"sqlite:///{path / 'mlruns.db'}")
    (run,) = client.search_runs(["1"], "tags.`rft.stage` = 'train_reward'", order_by=["attributes.start_time DESC"],
                                max_results=1)
    assert run.data.tags["reward.launcher"] == "accelerate"
    assert client.get_metric_history(run.info.run_id, "train_loss")    # the main process's log, replayed


@pytest.mark.slow
def test_a_missing_accelerate_config_is_named(built_project, tmp_path):
    built, _, _ = built_project
    path = _project(built, tmp_path / "proj", accelerate_config="infra/accelerate/nope.yaml")
    out = subprocess.run(["rft", "stage", "train_reward"], cwd=path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 2 and "reward.accelerate_config: infra/accelerate/nope.yaml does not exist" in out.stderr


def test_optimize_launch_refuses_configs_that_shard_the_parameters_and_in_process_algorithms():
    from tasks.config import parse_params
    from tasks.errors import ConfigError, RFTError
    from tasks.launch import _config

    for name in ("ddp", "zero2"):
        assert _config("optimize.accelerate_config", str(ROOT / f"infra/accelerate/{name}.yaml"), whole_model=True)
    for name, why in (("zero3", "DEEPSPEED ZeRO-3"), ("fsdp", "FSDP")):
        with pytest.raises(RFTError, match=f"optimize.accelerate_config: .*{name}.yaml shards the parameters "
                                           f"\\({why}\\)"):
            _config("optimize.accelerate_config", str(ROOT / f"infra/accelerate/{name}.yaml"), whole_model=True)
    for algorithm in ("ppo", "best_of_n", "online_dpo", "constitutional"):
        with pytest.raises(ConfigError, match=f"optimize.launcher: accelerate runs .*; {algorithm} trains in the "
                                              "stage's process"):
            parse_params({"optimize": {"algorithm": algorithm, "launcher": "accelerate"}})


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("algorithm", ["dpo", "kto", "grpo", "rloo"])
def test_optimize_stage_trains_on_two_cpu_processes(built_project, tmp_path, algorithm):
    import torch
    from mlflow import MlflowClient
    from transformers import AutoModelForCausalLM

    built, _, _ = built_project
    path = tmp_path / "proj"
    shutil.copytree(built, path)
    shutil.copytree(ROOT / "infra", path / "infra", dirs_exist_ok=True)
    params = yaml.safe_load((path / "params.yaml").read_text())
    merge(params, {"optimize": {"algorithm": algorithm, "launcher": "accelerate", "num_processes": 2,
                                algorithm: TINY_SECTIONS[algorithm]}})        # a few steps each
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = subprocess.run(["rft", "stage", "optimize"], cwd=path, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((path / "reports/optimize/metrics.json").read_text())
    assert report["world_size"] == 2 and report["algorithm"] == algorithm and report["steps"] >= 1
    assert len((path / "reports/optimize/curve.csv").read_text().splitlines()) > 1   # the main process's probes
    cand = AutoModelForCausalLM.from_pretrained(path / "models/candidate").state_dict()
    champ = AutoModelForCausalLM.from_pretrained(path / "models/champion").state_dict()
    assert any(not torch.equal(cand[k], champ[k]) for k in champ)      # trained, and saved by the main process
    client = MlflowClient(f"sqlite:///{path / 'mlruns.db'}")
    (run,) = client.search_runs(["1"], "tags.`rft.stage` = 'optimize'", order_by=["attributes.start_time DESC"],
                                max_results=1)
    assert run.data.tags["optimize.launcher"] == "accelerate"
    assert client.get_metric_history(run.info.run_id, "train/loss")   # TRL's log, replayed from the main process
