"""Whole cycles on a user's task (task.env: none): no hidden truth anywhere, judges and labels the user brings."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from chat_server import ChatServer
from conftest import ROOT, SHARED_HH, make_project, merge
from tiny_models import tiny_ab_judge, tiny_policy

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.filterwarnings("ignore")]

TINY_USER = {
    "generate": {"k": 3, "batch_size": 16, "max_new_tokens": 12, "sample_table_rows": 5},
    "reward": {"max_length": 96, "epochs": 1.0, "batch_size": 8, "warmup_steps": 0, "log_every": 1},
    "optimize": {"probe_prompts": 4, "probe_max_new_tokens": 12, "log_every": 1,
                 "grpo": {"max_steps": 2, "batch_size": 8, "num_generations": 4, "max_completion_length": 12}},
    "evaluate": {"samples_per_prompt": 1, "max_new_tokens": 12, "n_boot": 200},
}


def run(cmd, cwd, env=None):
    import os

    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})})


def _metrics(path):
    return json.loads((path / "reports/eval/metrics.json").read_text())


def _write_params(path, params):
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_cycle_with_http_and_llm_judges_on_chat_prompts(tmp_path):
    path = make_project(tmp_path / "proj")
    incoming = path / "data/incoming"
    tiny_policy(path / "models/user-policy")
    judge = tiny_ab_judge(tmp_path / "judge-lm")
    chats = [[{"role": "user", "content": f"Give me a tip about {topic}."}] for topic in
             ("bread", "apples", "rain", "tea", "jokes", "roads", "yeast", "water", "cats", "maps", "boats", "songs")]
    chats[0] = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi!"},
                {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Tell me about bread."}]
    (incoming / "prompts.jsonl").write_text("".join(json.dumps({"id": f"u{i}", "messages": m}) + "\n"
                                                    for i, m in enumerate(chats)))
    (incoming / "rubric.yaml").write_text(yaml.safe_dump({"criteria": [
        {"name": "helpful", "description": "The reply gives a useful tip.", "weight": 1.0}]}))
    with ChatServer(judge, api_key="k-123", fail_first=1, fail_status=503) as server:
        params = merge(yaml.safe_load((path / "params.yaml").read_text()), TINY_USER)
        params.update({
            "task": {"env": "none", "rubric": "data/incoming/rubric.yaml"},
            "policy": {"base_model": str(path / "models/user-policy"), "champion_dir": "models/champion"},
            "judges": {"api": {"kind": "http", "url": server.url, "model": "tiny", "api_key_env": "RFT_TEST_KEY",
                               "backoff": 0.01},
                       "local": {"kind": "llm", "model": str(judge)},
                       "reward": {"kind": "reward_model", "path": "models/reward"}},
            "prepare": {"input": "data/incoming/prompts.jsonl", "heldout_fraction": 0.25, "salt": "user-task"},
            "validate": {"prompt_max_tokens": 200},
            "label": {**params["label"], "source": "judge", "judge": "api", "pairs": "all_pairs"},
            "evaluate": {**TINY_USER["evaluate"], "judges": ["api", "local"]},
            "promote": {"winrate_source": "api", "alarm_judge": "local", "dvc_push": False},
            # A large step, so that the candidate's samples differ from the champion's and the judges are asked.
            "optimize": merge(params["optimize"], {"grpo": {"lr": 0.05}}),
        })
        _write_params(path, params)
        out = run(["rft", "cycle"], path, env={"RFT_TEST_KEY": "k-123"})
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "k-123" not in text
    labels = [json.loads(line) for line in (path / "data/labels.jsonl").read_text().splitlines()]
    assert labels and {r["labeler"] for r in labels} == {"ai:api"}
    m = _metrics(path)
    for key in ("winrate_api", "winrate_api_ci_low", "winrate_local", "judge_api.position_disagreement",
                "judge_local.position_disagreement"):
        assert key in m, key
    assert not [k for k in m if "truth" in k]                       # the task has no truth: no such number
    assert m["judge_api.unparsed"] == 0                              # every answer carried A/B log-probs
    # The prompts reached the policy through the one formatting function, as chat.
    gens = [json.loads(line) for line in (path / "data/generations.jsonl").read_text().splitlines()]
    assert {g["policy_version"] for g in gens} == {"policy/1"}
    # The LLM judge's model folder lies outside the project: its content hash is the evaluate run's lineage.
    import mlflow
    from mlflow import MlflowClient

    from tasks.io import dvc_md5

    mlflow.set_tracking_uri(f"sqlite:///{path / 'mlruns.db'}")
    client = MlflowClient()
    exp = client.get_experiment_by_name("rft-cycle")
    evaluate = next(r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("rft.stage") == "evaluate")
    assert evaluate.data.tags[f"dvc.md5.{Path(judge).as_posix()}"] == dvc_md5(judge)


def test_hh_rlhf_example_on_a_slice(tmp_path):
    if not SHARED_HH.exists():
        pytest.skip(f"{SHARED_HH} not found: the HH-RLHF sample lives in ../shared, outside the repository")
    path = make_project(tmp_path / "proj")
    shutil.copytree(ROOT / "examples", path / "examples")
    out = run(["rft", "import-hh", str(SHARED_HH), "data/incoming/hh", "--limit", "240"], path)
    assert out.returncode == 0, out.stderr[-2000:]
    params = yaml.safe_load((ROOT / "examples/hh-rlhf/params.yaml").read_text())
    merge(params, TINY_USER)                            # the example's settings, shrunk to a slice
    params["bootstrap"].update(vocab_size=400, n_layer=2, n_head=2, n_embd=32, pretrain_steps=15, sft_steps=10,
                               batch_size=8, log_every=5)
    params["validate"]["prompt_max_tokens"] = 250          # a 400-token vocabulary spends more tokens per prompt
    params["promote"]["dvc_push"] = False
    _write_params(path, params)
    gold = run(["rft", "train-reward-model", "data/incoming/hh/gold_pairs.jsonl", "data/incoming/hh/gold-reward"],
               path)
    assert gold.returncode == 0, gold.stderr[-2000:]
    out = run(["rft", "cycle"], path)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    m = _metrics(path)
    assert {"winrate_gold", "winrate_gold_ci_low", "reward_human_accuracy", "human_agreement_gold"} <= set(m)
    assert not [k for k in m if "truth" in k]
    assert m["human_pairs"] == len((path / "data/incoming/hh/heldout_pairs.jsonl").read_text().splitlines())
    labels = [json.loads(line) for line in (path / "data/labels.jsonl").read_text().splitlines()]
    assert {r["labeler"] for r in labels} == {"human:pairs"} and all(r["messages"][-1]["role"] == "user"
                                                                      for r in labels)
    # DVC recorded every stage the flow ran: nothing is stale but, after a promotion, what reads the champion.
    status = run(["dvc", "status", "--json"], path)
    assert status.returncode == 0, status.stderr[-2000:]
    promoted = ((path / "models/champion/model.safetensors").read_bytes()
                == (path / "models/candidate/model.safetensors").read_bytes())
    assert set(json.loads(status.stdout or "{}")) == ({"generate", "optimize", "evaluate"} if promoted else set()), \
        status.stdout[-2000:]
    # And DVC alone runs the stages whose inputs this example replaces, with the same stage functions. (The whole
    # pipeline under `dvc repro` from nothing: tests/test_e2e.py::test_fresh_clone_repro_runs_every_stage_then_none.)
    mine = ("corpus", "label", "train_reward", "evaluate")
    forced = run(["dvc", "repro", "--force", "--single-item", *mine], path)
    assert forced.returncode == 0, (forced.stdout + forced.stderr)[-3000:]
    ran = [line.split("'")[1] for line in forced.stdout.splitlines() if line.startswith("Running stage")]
    assert sorted(ran) == sorted(mine), forced.stdout[-2000:]
    assert "winrate_gold" in _metrics(path) and not [k for k in _metrics(path) if "truth" in k]
