"""A CPU smoke test per stage, on a tiny project built once (tests/conftest.py::built_project)."""

import json
import re

import pytest

from tasks.io import read_jsonl
from tasks.policy import read_meta
from tasks.tracking import logged_model_id

# Each test reads the tiny project that conftest.py::built_project runs every stage on: minutes, so slow.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]


def test_corpus(built_project):
    path, m, _ = built_project
    assert m["corpus"] == {"texts": 300, "demos": 160, "prompts": 40}
    assert json.loads((path / "data/corpus/manifest.json").read_text())["env"] == "reviews"
    assert len(read_jsonl(path / "data/corpus/prompts.jsonl")) == 40


def test_bootstrap(built_project):
    path, m, _ = built_project
    b = m["bootstrap"]
    base = path / "models/base"
    assert (base / "config.json").exists() and (base / "tokenizer.json").exists()
    meta = read_meta(base)
    assert meta["registry_name"] == "policy" and meta["registry_version"] == b["registry_version"] == 1
    # SFT must lower the held-out demonstration loss, or the base policy learned nothing from it.
    assert b["sft_val_loss_after"] < b["sft_val_loss_before"]
    assert json.loads((path / "reports/bootstrap/metrics.json").read_text())["trained"] == 1


def test_bootstrap_registers_champion(built_project):
    import mlflow
    from mlflow import MlflowClient

    path, _, _ = built_project
    mlflow.set_tracking_uri(f"sqlite:///{path / 'mlruns.db'}")
    mv = MlflowClient().get_model_version_by_alias("policy", "champion")
    assert int(mv.version) == 1 and mv.tags["source"] == "bootstrap"
    model = MlflowClient().get_logged_model(logged_model_id(mv))
    assert model.name == "policy" and json.loads(model.tags["mlflow.modelVersions"]) == [
        {"name": "policy", "version": "1"}]
    mlmodel = __import__("yaml").safe_load(mlflow.artifacts.load_text(f"{model.artifact_location}/MLmodel"))
    assert mlmodel["flavors"]["transformers"]["source_model_name"] == "models/base"     # not a scratch folder


def test_champion_is_seeded_from_base(built_project):
    path, m, _ = built_project
    assert m["champion"]["seeded"] == 1
    assert (path / "models/champion/model.safetensors").read_bytes() == \
        (path / "models/base/model.safetensors").read_bytes()


def test_a_changed_base_reseeds_the_champion_only_when_params_say_so(built_project, tmp_path, monkeypatch):
    # A promoted champion (v2 here, as a copy of the base relabelled) and then a new base (its weights changed, as
    # a bootstrap on new corpus files would): the champion stage must not silently put the base back in its place.
    import shutil

    import mlflow
    import yaml
    from safetensors.torch import load_file, save_file

    from tasks.config import parse_params
    from tasks.errors import RFTError
    from tasks.policy import write_meta
    from tasks.stages.champion import run as run_champion
    from tasks.stages.common import StageContext

    path, _, _ = built_project
    work = tmp_path / "proj"
    shutil.copytree(path, work)
    monkeypatch.chdir(work)
    raw = yaml.safe_load((work / "params.yaml").read_text())
    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlruns.db'}")
    client = mlflow.MlflowClient()
    champion, base = work / "models/champion", work / "models/base"
    write_meta(champion, {**read_meta(champion), "promoted_at": "2026-01-01T00:00:00+00:00"})
    weights = load_file(base / "model.safetensors")
    name = sorted(weights)[0]
    weights[name] = weights[name] + 1.0
    save_file(weights, base / "model.safetensors", metadata={"format": "pt"})
    before = (champion / "model.safetensors").read_bytes()
    alias = client.get_model_version_by_alias("policy", "champion").version

    with pytest.raises(RFTError) as err:
        run_champion(StageContext(parse_params(raw)))
    assert "models/base changed since models/champion" in str(err.value) and "champion.reseed: true" in str(err.value)
    assert (champion / "model.safetensors").read_bytes() == before                  # nothing moved
    assert client.get_model_version_by_alias("policy", "champion").version == alias

    # A champion folder that is gone (a clone without dvc pull) while policy@champion is a promoted version: the
    # stage says to restore it, rather than seeding the base and moving the alias back with no gate.
    shutil.move(champion, tmp_path / "kept")
    v1 = client.get_model_version("policy", alias)
    v2 = client.create_model_version("policy", v1.source, run_id=v1.run_id)          # as a promotion registers
    client.set_registered_model_alias("policy", "champion", v2.version)
    lost = f"models/champion is missing, while the registry's policy@champion is v{v2.version}, not the base"
    with pytest.raises(RFTError, match=lost):
        run_champion(StageContext(parse_params(raw)))
    assert not champion.exists()
    shutil.move(tmp_path / "kept", champion)

    raw["champion"] = {"reseed": True}
    assert run_champion(StageContext(parse_params(raw)))["seeded"] == 1
    assert (champion / "model.safetensors").read_bytes() == (base / "model.safetensors").read_bytes() != before
    assert client.get_model_version_by_alias("policy", "champion").version == 1    # the lineage restarts at the base


def test_prepare(built_project):
    path, m, _ = built_project
    rows = read_jsonl(path / "data/prompts.jsonl")
    assert {r["split"] for r in rows} == {"train", "heldout"}
    # Held out: exactly the prompts whose salted hash falls below the fraction (none is a demonstration's).
    import yaml

    from tasks.heldout import is_heldout
    from tasks.prompting import prompt_key

    params = yaml.safe_load((path / "params.yaml").read_text())["prepare"]
    demos = {prompt_key(d["prompt"]) for d in read_jsonl(path / "data/corpus/demos.jsonl")}
    expected = {r["id"] for r in rows if prompt_key(r["prompt"]) not in demos
                and is_heldout(prompt_key(r["prompt"]), params["salt"], params["heldout_fraction"])}
    assert m["prepare"]["heldout"] == sum(r["split"] == "heldout" for r in rows) == len(expected) > 0
    assert {r["id"] for r in rows if r["split"] == "heldout"} == expected
    train = {r["prompt"].lower() for r in rows if r["split"] == "train"}
    assert not train & {r["prompt"].lower() for r in rows if r["split"] == "heldout"}


def test_validate_prompts(built_project):
    path, m, _ = built_project
    report = json.loads((path / "reports/validation/prompts.json").read_text())
    assert report["passed"] and report["rows"] == 40
    summary = (path / report["summary"]).read_text()     # the page that opens offline: every rule passed
    assert "all rules passed" in summary and summary.count('<tr class="ok">') == report["rules"]
    latest = path / report["data_docs"]
    assert latest.name == "latest.html"                  # a fixed name: the report is the same bytes each run
    target = re.search(r'url=([^"]+)"', latest.read_text()).group(1)
    page = latest.parent / target
    assert "validations" in page.parts and "Succeeded" in page.read_text()


def test_generate(built_project):
    path, m, _ = built_project
    rows = read_jsonl(path / "data/generations.jsonl")
    n_train = sum(r["split"] == "train" for r in read_jsonl(path / "data/prompts.jsonl"))
    assert len(rows) == 3 * n_train == m["generate"]["generations"]
    assert set(rows[0]) == {"prompt_id", "response_id", "response", "policy_version", "seed"}
    assert rows[0]["policy_version"] == "policy/1"
    assert len({r["response_id"] for r in rows}) == len(rows)
    assert m["generate"]["tokens_per_second"] > 0
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{path / 'mlruns.db'}")
    (run,) = mlflow.search_runs(search_all_experiments=True, filter_string="tags.rft.stage = 'generate'",
                                output_format="list")
    # No GPU and vLLM here: generate.backend auto ran the transformers sampler, and says so.
    assert run.data.tags["generate.backend"] == "transformers" and run.data.tags["generate.runner"] == "local"
    from tasks.threads import thread_count

    # The thread count the stage used, and where it came from (RFT_THREADS, or the cores this process may use).
    assert (int(run.data.tags["rft.threads"]), run.data.tags["rft.threads_from"]) == thread_count(None)


def test_label(built_project):
    path, m, _ = built_project
    rows = read_jsonl(path / "data/labels.jsonl")
    assert rows and all(r["labeler"] == "ai:embedding" for r in rows)
    assert all(r["chosen"] != r["rejected"] and r["score_chosen"] >= r["score_rejected"] for r in rows)
    # best_vs_worst: at most one pair per prompt
    assert len({r["prompt_id"] for r in rows}) == len(rows)


def test_validate_labels(built_project):
    path, _, _ = built_project
    assert json.loads((path / "reports/validation/labels.json").read_text())["passed"]


def test_label_with_simulated_annotator_and_all_pairs(built_project, tmp_path):
    from tasks.config import parse_params
    from tasks.judges import JudgeContext
    from tasks.labelers import get_labeler

    path, _, _ = built_project
    # A sharp annotator (T = 1e-4) with no noise chooses by the hidden truth whenever scores differ.
    params = parse_params({"label": {"source": "simulated", "pairs": "all_pairs"},
                           "truth": {"noise": 0.0, "temperature": 1e-4}})
    prompts = {r["id"]: r["prompt"] for r in read_jsonl(path / "data/prompts.jsonl")}
    trained = sum(r["split"] == "train" for r in read_jsonl(path / "data/prompts.jsonl"))
    out = get_labeler("simulated")(params.label, JudgeContext.of(params), prompts,
                                   read_jsonl(path / "data/generations.jsonl"))
    rows, stats = out.rows, out.stats
    assert list(out.ratings) == [] and out.annotations is None
    assert all(r["labeler"] == "human:simulated-annotator" for r in rows)
    # k = 3 -> up to 3 pairs per prompt, minus identical, empty or tied ones
    assert stats["pairs"] + stats["skipped_identical"] + stats["skipped_empty"] + stats["skipped_tie"] \
        == 3 * trained
    assert stats["truth_agreement"] == 1.0


def test_train_reward(built_project):
    path, m, _ = built_project
    r = m["train_reward"]
    assert (path / "models/reward/model.safetensors").exists()
    assert r["registry_version"] == 1
    assert r["train_pairs"] + r["heldout_pairs"] == len(read_jsonl(path / "data/labels.jsonl"))
    # The reported accuracy is the saved model's: re-scoring the held-out pairs from disk gives it back.
    from tasks.prompting import prompt_key, prompt_of
    from tasks.reward_model import RewardModel, pair_text, pairwise_stats
    from tasks.reward_training import split_pairs

    prompts = {r["id"]: prompt_of(r) for r in read_jsonl(path / "data/prompts.jsonl")}
    labels = read_jsonl(path / "data/labels.jsonl")
    pairs = [(pair_text(prompts[x["prompt_id"]], x["chosen"]), pair_text(prompts[x["prompt_id"]], x["rejected"]))
             for x in labels]
    _, val = split_pairs(pairs, [prompt_key(prompts[x["prompt_id"]]) for x in labels], 0.15, 0)   # by text
    rm = RewardModel(path / "models/reward", 64)
    again = pairwise_stats(rm.score([c for c, _ in val]), rm.score([x for _, x in val]))
    assert len(val) == r["heldout_pairs"] and again["accuracy"] == pytest.approx(r["heldout_accuracy"])


def test_optimize(built_project):
    import csv
    import math

    path, m, _ = built_project
    o = m["optimize"]
    meta = read_meta(path / "models/candidate")
    assert meta["registry_version"] == o["registry_version"] == 2 and meta["parent_version"] == 1
    curve = list(csv.DictReader((path / "reports/optimize/curve.csv").open()))
    # probes at step 0 and after each of the 2 steps (log_every = 1)
    assert [int(r["step"]) for r in curve] == [0, 1, 2]
    assert all(math.isfinite(float(r["kl"])) and math.isfinite(float(r["reward"])) for r in curve)
    # The policy really moved: the candidate's weights differ from the champion's.
    assert (path / "models/candidate/model.safetensors").read_bytes() != \
        (path / "models/champion/model.safetensors").read_bytes()
    # One point, one value: MLflow's history of the probe is the curve, and the final figure is its end.
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{path / 'mlruns.db'}")
    client = MlflowClient()
    history = client.get_metric_history(meta["run_id"], "health/probe_reward")
    assert sorted((m.step, m.value) for m in history) == [(int(r["step"]), float(r["reward"])) for r in curve]
    assert o["final_probe_reward"] == pytest.approx(float(curve[-1]["reward"]))
    # The logged model is named for what it is, linked to its version, sourced from models/candidate, and
    # carries the stage's final figures (not those of step 0, before training).
    mv = client.get_model_version("policy", str(o["registry_version"]))
    model = client.get_logged_model(logged_model_id(mv))
    assert model.name == "policy"
    assert {"name": "policy", "version": str(o["registry_version"])} in json.loads(model.tags["mlflow.modelVersions"])
    figures = {m.key: m for m in model.metrics}
    assert figures["final_probe_reward"].value == pytest.approx(float(curve[-1]["reward"]))
    assert figures["health/probe_reward"].step == int(curve[-1]["step"]) == 2
    mlmodel = __import__("yaml").safe_load(mlflow.artifacts.load_text(f"{model.artifact_location}/MLmodel"))
    assert mlmodel["flavors"]["transformers"]["source_model_name"] == "models/candidate"


def test_evaluate(built_project):
    path, m, _ = built_project
    e = m["evaluate"]
    held = sum(r["split"] == "heldout" for r in read_jsonl(path / "data/prompts.jsonl"))
    assert e["heldout_prompts"] == held == e["comparisons"] > 0          # one sample per prompt (tiny params)
    for key in ("winrate_truth", "winrate_embedding"):
        assert e[f"{key}_ci_low"] <= e[key] <= e[f"{key}_ci_high"]
    rows = read_jsonl(path / "data/eval.jsonl")
    assert len(rows) == 2 * held and {r["judge"] for r in rows} == {"human:simulated-annotator", "ai:embedding"}
    assert json.loads((path / "reports/eval/metrics.json").read_text()) == pytest.approx(e)


def test_optimize_with_dpo(built_project, tmp_path, monkeypatch):
    import shutil

    from tasks.config import parse_params
    from tasks.stages.common import StageContext
    from tasks.stages.optimize import run as run_optimize

    path, _, _ = built_project
    work = tmp_path / "proj"
    shutil.copytree(path, work)
    monkeypatch.chdir(work)
    raw = __import__("yaml").safe_load((work / "params.yaml").read_text())
    params = parse_params({**raw, "optimize": {**raw["optimize"], "algorithm": "dpo",
                                               "dpo": {"epochs": 1.0, "batch_size": 8}}})
    out = run_optimize(StageContext(params))
    assert out["pairs"] == len(read_jsonl(work / "data/labels.jsonl")) and out["registry_version"] == 3


def test_the_docs_model_snippet_runs_after_the_stages_alone(built_project):
    """`rft stage` for every stage (what the fixture did) promotes nothing: the snippet still runs."""
    from conftest import docs_snippet, run_snippet

    out = run_snippet(docs_snippet("architecture.md", "models:/policy@champion"), built_project[0])
    assert out.returncode == 0, out.stderr[-3000:]
