"""End to end on the tiny default: the Prefect flow, MLflow runs and registry, and DVC's record."""

import json
import os
import subprocess

import pytest
import yaml
from conftest import docs_snippet, make_project, run_snippet

from tasks.heldout import prompt_digest
from tasks.manifest import STAGES
from tasks.policy import read_meta
from tasks.prompting import prompt_key, prompt_of

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.filterwarnings("ignore")]


def run(cmd, cwd):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def stale(path) -> set:
    """Stages that `dvc status` reports as changed."""
    out = run(["dvc", "status", "--json"], path)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout or "{}"))


# After a promotion the stages that read the champion are stale by design: they are the next
# cycle's work. Nothing else may be.
READS_CHAMPION = {"generate", "optimize", "evaluate"}


# The first cycle's gate cannot pass: its KL bound (1e-6 nats) is far below what two optimizer
# steps move the policy. So the first cycle must end with the champion where it was.
FIRST_GATE = {"max_kl": 1e-6}


@pytest.fixture(scope="module")
def cycled(module_tmp):
    """The first cycle, started as a person's `rft cycle` meets a scheduled one: two at once. One runs; the other
    waits for the project lock (lock.on_busy: wait) and then has nothing to do. An `rft gc` meanwhile, with
    lock.on_busy: fail, stops at once naming the running cycle. ``out.waiter`` and ``out.gc`` are theirs."""
    import time

    path = make_project(module_tmp("e2e") / "proj", {"promote": {"dvc_push": True, **FIRST_GATE}})
    logs = module_tmp("e2e-logs")
    procs = [subprocess.Popen(["rft", "cycle"], cwd=path, stdout=(logs / f"{i}.out").open("w"),
                              stderr=(logs / f"{i}.err").open("w")) for i in range(2)]
    waiter, deadline = None, time.monotonic() + 600
    while waiter is None and time.monotonic() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.5)
        waiter = next((i for i in range(2) if "waiting for the project lock" in (logs / f"{i}.err").read_text()),
                      None)
    fail = yaml.safe_load((path / "params.yaml").read_text())
    fail["lock"]["on_busy"] = "fail"
    (logs / "params-fail.yaml").write_text(yaml.safe_dump(fail, sort_keys=False))
    gc = run(["rft", "--params", str(logs / "params-fail.yaml"), "gc"], path)
    done = [subprocess.CompletedProcess(p.args, p.wait(timeout=3600), (logs / f"{i}.out").read_text(),
                                        (logs / f"{i}.err").read_text()) for i, p in enumerate(procs)]
    assert waiter is not None, [d.stderr[-2000:] for d in done]
    out = done[1 - waiter]
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    out.waiter, out.gc, out.pid = done[waiter], gc, procs[1 - waiter].pid
    return path, out


def test_two_cycles_started_together_run_one_at_a_time(cycled):
    path, out = cycled
    waited = out.waiter
    assert waited.returncode == 0, waited.stdout[-3000:] + waited.stderr[-3000:]
    # The waiter named the running cycle, then found its work done: no second iteration, no second run.
    holder = f"pid {out.pid} (rft cycle), since "
    assert holder in waited.stderr and "waiting for the project lock" in waited.stderr, waited.stderr[-2000:]
    assert "cycle: nothing to do" in waited.stdout + waited.stderr, waited.stdout[-2000:]
    assert "took over" not in waited.stderr + out.stderr
    client = _client(path)
    exp = client.get_experiment_by_name("rft-cycle").experiment_id
    assert len(client.search_runs([exp], "tags.`rft.kind` = 'cycle'")) == 1
    # `rft gc` during the cycle stopped at once, naming it, and changed nothing.
    assert out.gc.returncode == 2 and "the project is busy: pid " in out.gc.stderr, out.gc.stderr[-2000:]
    assert holder in out.gc.stderr and "Traceback" not in out.gc.stderr
    assert stale(path) == set()


def _client(path):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{path / 'mlruns.db'}")
    return MlflowClient()


def test_flow_prints_summary_and_where_to_look(cycled):
    _, out = cycled
    text = out.stdout + out.stderr
    assert "cycle summary" in text
    # The printed command runs from the shell the user is in (the environment's own mlflow), and says the page.
    import re
    from pathlib import Path

    hint = re.search(r"MLflow UI: (\S+) ui --backend-store-uri sqlite:///mlruns\.db --host 127\.0\.0\.1 --port 5000 "
                     r" \(or: make mlflow-ui\), then open "
                     r"http://127\.0\.0\.1:5000/#/experiments/\d+/runs/([0-9a-f]{32})",
                     text)
    assert hint, text[-2000:]
    exe = Path(hint.group(1)) if Path(hint.group(1)).is_absolute() else cycled[0] / hint.group(1)
    assert exe.is_file() and os.access(exe, os.X_OK)
    # Each dvc.lock update is printed once, by Prefect's handler (DVC's own printed each a second time).
    updates = [line for line in text.splitlines() if "lock file 'dvc.lock'" in line]
    assert updates and all("| dvc.dvcfile - " in line for line in updates), updates[:3]
    # Training bars are named by stage and phase; TRL's every-step dicts go to MLflow, not the console.
    assert "train_reward:" in text and "optimize grpo" in text
    import re as _re

    # Every progress bar says its stage (and phase): no "Loading weights" or other unlabelled bar.
    labels = {m.group(1).strip() for m in _re.finditer(r"([A-Za-z_ >0-9]+):\s+\d+%\|", text)}
    assert labels and all(label.split()[0] in STAGES for label in labels), labels
    assert "{'loss'" not in text and "'learning_rate'" not in text
    assert "LOAD_GLOBAL" not in text and "LOAD_FAST" not in text          # no bytecode disassembly
    assert "gradient_checkpointing" not in text           # a known-harmless warning, filtered by its message
    assert "interpreted in multiple ways" not in text     # the parent run's datasets name their source's kind
    for stage in STAGES:
        assert stage in text


# What a cycle may print besides progress bars, from `rft cycle` to its summary (docs/operations.md): 60 lines.
# Training prints one line every log_every steps and one at the end; the default cycle's share of that is 18
# lines (train_reward 42 steps / 10, optimize 60 / 5, and their closing lines; `make cycle` printed 58 lines in
# all). The rest, the same for the tiny project and the default, gets the other 42.
LINE_BUDGET = 60
DEFAULT_TRAINING_LINES = 18


def printed_lines(text: str) -> list[str]:
    """The lines a terminal keeps: each line's last carriage-return segment, without progress bars and blanks."""
    import re

    shown = (line.split("\r")[-1] for line in text.split("\n"))
    return [line for line in shown if line.strip() and not re.search(r"\d+%\|", line)]


def test_a_cycle_prints_within_its_line_budget(cycled):
    _, out = cycled
    import re

    lines = printed_lines(out.stdout + out.stderr)
    summary = next(i for i, line in enumerate(lines) if "cycle summary" in line)
    training = [line for line in lines[:summary] if re.match(r"\w[\w ]*( step \d+/\d+:|: \d+ steps in )", line)]
    assert len(training) >= 4                              # the counter sees the training lines it sets aside
    fixed = summary - len(training)
    assert fixed + DEFAULT_TRAINING_LINES <= LINE_BUDGET, "\n".join(lines[:summary])
    text = "\n".join(lines)
    # Known-harmless library messages are filtered (tasks/quiet.py); unlabelled per-file bars are off.
    for noise in ("Created temporary directory", "is empty", "loss_type=", "use_cache=True", "Loading weights",
                  "Writing model shards", "Generating lock file", "Creating initial MLflow database tables"):
        assert noise not in out.stdout + out.stderr, noise
    assert "Updating lock file" in text                      # DVC's own record of each stage stays


def test_the_line_counter_counts_what_a_terminal_shows():
    text = ("a\n\rtrain:  50%|#####     | 1/2\rtrain: 100%|##########| 2/2\n"
            "\n  \nstep 1: loss=0.5\n\r10:01 | INFO | done\n")
    assert printed_lines(text) == ["a", "step 1: loss=0.5", "10:01 | INFO | done"]


def test_mlflow_parent_and_child_runs(cycled, tmp_path):
    path, _ = cycled
    client = _client(path)
    exp = client.get_experiment_by_name("rft-cycle")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("rft.kind") == "cycle"]
    assert len(parents) == 1 and parents[0].data.tags["rft.status"] == "ok"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.data.tags["rft.stage"] for r in children) == sorted(STAGES)
    for child in children:
        assert child.info.status == "FINISHED" and child.data.metrics, child.info.run_name
        assert child.data.tags["git.commit"]
    generate = next(r for r in children if r.data.tags["rft.stage"] == "generate")
    assert generate.data.metrics["tokens_per_second"] > 0
    artifacts = [a.path for a in client.list_artifacts(generate.info.run_id)]
    assert "sample_generations.json" in artifacts
    # What a stage run logs comes from the manifest: its declared params and the hashes of its declared inputs.
    label = next(r for r in children if r.data.tags["rft.stage"] == "label")
    assert label.data.tags["rft.params"] == "label,label_studio,task,judges,truth"
    assert label.data.params["judges.embedding.kind"] == "embedding" and label.data.params["task.env"] == "reviews"
    assert "dvc.md5.tasks/envs/reviews/rubric.yaml" in label.data.tags and "dvc.md5.data/incoming" in label.data.tags
    # A table a person reads: pairs with the judge's scores and confidence.
    with open(client.download_artifacts(label.info.run_id, "label_sample.json", str(tmp_path))) as fh:
        table = json.load(fh)
    for column in ("prompt", "chosen", "rejected", "confidence", "score_chosen", "score_rejected"):
        assert column in table["columns"], column
    labels = [json.loads(line) for line in (path / "data/labels.jsonl").read_text().splitlines()]
    assert len(table["data"]) == min(40, len(labels))
    boot = next(r for r in children if r.data.tags["rft.stage"] == "bootstrap")
    assert len(client.get_metric_history(boot.info.run_id, "pretrain_loss")) >= 2   # a learning curve
    # Each stage that trains or samples records the precision in force and why (train.precision: auto here).
    from tasks.precision import for_sampling, resolve

    trains = resolve("auto", "cpu")
    for child in children:
        stage = child.data.tags["rft.stage"]
        if stage in ("bootstrap", "generate", "train_reward", "optimize", "evaluate"):
            expected = for_sampling(trains, "cpu") if stage in ("generate", "evaluate") else trains
            tags = child.data.tags
            assert (tags["rft.precision"], tags["rft.precision_setting"], tags["rft.precision_reason"]) == \
                (expected.dtype, "auto", expected.reason), child.info.run_name
    # Run names say what they are; the evaluate run names and tags both policy versions.
    assert generate.info.run_name == "cycle 1 / generate"
    evaluate = next(r for r in children if r.data.tags["rft.stage"] == "evaluate")
    assert evaluate.info.run_name == "cycle 1 / evaluate policy v2 vs v1"
    assert (evaluate.data.tags["rft.candidate_version"], evaluate.data.tags["rft.champion_version"]) == ("2", "1")


def test_the_parent_run_holds_the_cycles_params_results_and_datasets(cycled):
    path, _ = cycled
    client = _client(path)
    exp = client.get_experiment_by_name("rft-cycle")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`rft.kind` = 'cycle'")
    assert parent.info.run_name == "cycle 1"
    # The whole params.yaml, flattened: comparing two cycles shows what changed.
    params = yaml.safe_load((path / "params.yaml").read_text())
    assert parent.data.params["optimize.algorithm"] == params["optimize"]["algorithm"]
    assert parent.data.params["optimize.grpo.beta"] == str(params["optimize"]["grpo"]["beta"])
    assert parent.data.params["promote.max_kl"] == str(FIRST_GATE["max_kl"])
    assert len(parent.data.params) > 150
    # What it did: the gate's figures, the reward model's accuracy, and the decision.
    metrics = parent.data.metrics
    for key in ("winrate_truth", "winrate_truth_ci_low", "winrate_truth_ci_high", "kl",
                "reward_model.heldout_accuracy"):
        assert key in metrics, key
    assert metrics["promoted"] == 0.0 and parent.data.tags["rft.promoted"] == "false"
    # Its datasets, each with the DVC hash dvc.lock records as its digest.
    lock = yaml.safe_load((path / "dvc.lock").read_text())["stages"]
    outs = {o["path"]: o["md5"] for stage in lock.values() for o in stage.get("outs", [])}
    inputs = {d.dataset.name: (d.dataset.digest, [t.value for t in d.tags])
              for d in client.get_run(parent.info.run_id).inputs.dataset_inputs}
    for name, context in (("data/prompts.jsonl", "prompts (train and held-out)"), ("data/labels.jsonl", "labels"),
                          ("data/eval.jsonl", "held-out evaluation")):
        assert inputs[name] == (outs[name], [context]), name
    # The link to the Prefect flow run that ran it.
    assert len(parent.data.tags["prefect.flow_run_id"]) == 36


def test_a_refused_candidate_leaves_the_champion_where_it_was(cycled):
    path, out = cycled
    client = _client(path)
    # v1: the bootstrapped base; v2: this cycle's candidate, alias challenger.
    assert sorted(int(v.version) for v in client.search_model_versions("name='policy'")) == [1, 2]
    assert int(client.get_model_version_by_alias("policy", "challenger").version) == 2
    assert int(client.get_model_version_by_alias("reward-model", "challenger").version) == 1
    metrics = json.loads((path / "reports/eval/metrics.json").read_text())
    for key in ("winrate_truth", "winrate_truth_ci_low", "winrate_embedding", "reward_mean", "kl", "distinct_2"):
        assert isinstance(metrics[key], float), key
    assert metrics["kl"] > FIRST_GATE["max_kl"]
    reason = client.get_model_version("policy", "2").tags["rejected_reason"]
    assert reason.startswith("not promoted: ") and f"> {FIRST_GATE['max_kl']}" in reason
    assert int(client.get_model_version_by_alias("policy", "champion").version) == 1
    assert read_meta(path / "models/champion")["registry_version"] == 1
    assert (path / "models/champion/model.safetensors").read_bytes() == \
        (path / "models/base/model.safetensors").read_bytes()
    assert reason in out.stdout + out.stderr


def test_data_docs_runs_are_named_by_the_cycle(cycled):
    path, _ = cycled
    for suite in ("prompts", "labels"):
        runs = {p.name for p in (path / "reports/data_docs" / suite / "validations" / suite).iterdir()}
        assert runs == {f"cycle-1-{suite}"}, runs


def test_dvc_metrics_and_plots(cycled, tmp_path):
    path, _ = cycled
    shown = run(["dvc", "metrics", "show", "--json"], path)
    (files,) = json.loads(shown.stdout).values()
    # One small file of key figures: each win-rate with its CI, KL, rewards, the reward model's accuracy.
    assert list(files["data"]) == ["reports/metrics.json"]
    key = files["data"]["reports/metrics.json"]["data"]
    assert {"winrate_truth", "winrate_truth_ci_low", "winrate_embedding", "kl", "reward_model_accuracy"} <= set(key)
    assert len(key) <= 12 and all(isinstance(v, (int, float)) for v in key.values())
    table = run(["dvc", "metrics", "show"], path).stdout
    assert "data_docs" not in table and len(table.splitlines()[0]) < 400
    # The details: any stage's report, by name.
    details = run(["dvc", "metrics", "show", "--json", "reports/eval/metrics.json"], path)
    assert "distinct_2_champion" in details.stdout
    # Plots: reward and KL on their own labelled axes, and the PNG of both that works offline.
    out = tmp_path / "plots"
    plots = run(["dvc", "plots", "show", "-o", str(out)], path)
    assert plots.returncode == 0, plots.stderr
    page = (out / "index.html").read_text()
    assert "probe reward (reward model score)" in page and "KL to the reference (nats per sequence)" in page
    assert "curve.png" in page
    # The project's page template (.dvc/plots.html): offline, each blank vega plot is named, not left silent.
    assert "is drawn by vega, which this page loads from" in page and "vegaEmbed('#probe_reward'" in page
    png = (path / "reports/optimize/curve.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_dvc_status_clean_and_lineage_hashes_match_dvc_lock(cycled):
    path, _ = cycled
    promoted = int(_client(path).get_model_version_by_alias("policy", "champion").version) == 2
    assert stale(path) == (READS_CHAMPION if promoted else set())
    lock = yaml.safe_load((path / "dvc.lock").read_text())
    deps = {d["path"]: d["md5"] for d in lock["stages"]["generate"]["deps"]}
    client = _client(path)
    exp = client.get_experiment_by_name("rft-cycle")
    (gen,) = client.search_runs([exp.experiment_id], "tags.`rft.stage` = 'generate'")
    assert gen.data.tags["dvc.md5.data/prompts.jsonl"] == deps["data/prompts.jsonl"]
    assert gen.data.tags["dvc.md5.models/champion"] == deps["models/champion"]


def test_only_the_active_algorithms_section_is_a_dependency(cycled):
    path, _ = cycled
    assert stale(path) == set()         # the first cycle refused its candidate: nothing is stale
    lock = yaml.safe_load((path / "dvc.lock").read_text())
    recorded = set(lock["stages"]["optimize"]["params"]["params.yaml"])
    assert "optimize.grpo" in recorded and not {"optimize.dpo", "optimize.ppo", "optimize.kto"} & recorded
    original = (path / "params.yaml").read_text()
    try:
        params = yaml.safe_load(original)
        params["optimize"]["dpo"]["beta"] = 0.7            # another algorithm's section: nothing to redo
        (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        assert stale(path) == set()
        params["optimize"]["grpo"]["lr"] = 1e-3            # the active one: optimize is stale
        (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        assert stale(path) == {"optimize"}
    finally:
        (path / "params.yaml").write_text(original)
    assert stale(path) == set()


def test_second_repro_runs_only_stale_stages(cycled):
    # Without a promotion nothing is stale and `dvc repro` runs nothing.
    path, _ = cycled
    before = stale(path)
    out = run(["dvc", "repro"], path)
    ran = {line.split("'")[1] for line in out.stdout.splitlines() if line.startswith("Running stage")}
    assert out.returncode == 0 and ran == before, out.stdout


def test_promotion_moves_champion_and_next_cycle_starts_from_it(cycled, tmp_path):
    path, _ = cycled
    assert int(_client(path).get_model_version_by_alias("policy", "champion").version) == 1
    # Loosen the gate (promote.* is read by no stage, so every stage is skipped) and re-run.
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["promote"].update(min_ci_low=0.0, max_kl=1e9, max_length_ratio=1e9, alarm_judge=None,
                             min_distinct_ratio=None)
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # This cycle runs as on a small machine a user starts with: one core, no native bf16 (the AVX2 emulation), and a
    # Prefect home with no database yet (Prefect's first start migrates it, slowly on one core).
    home = tmp_path / "fresh-prefect-home"
    env = {**os.environ, "PREFECT_HOME": str(home), "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    env.pop("PREFECT_API_URL", None)
    out = subprocess.run(["rft", "cycle"], cwd=path, capture_output=True, text=True, env=env,
                         preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (home / "prefect.db").exists()
    client = _client(path)
    assert int(client.get_model_version_by_alias("policy", "champion").version) == 2
    assert client.get_model_version("policy", "2").tags["promotion_reason"].startswith("promoted: ")
    assert int(client.get_model_version_by_alias("reward-model", "champion").version) == 1
    assert (path / "models/champion/model.safetensors").read_bytes() == \
        (path / "models/candidate/model.safetensors").read_bytes()
    # The registry's champion is the champion folder, and loads by its alias as a working pipeline.
    import mlflow

    from tasks.mlmodels import verify_copy

    downloaded = mlflow.artifacts.download_artifacts("models:/policy@champion", dst_path=str(tmp_path))
    assert verify_copy(path / "models/champion", downloaded) == []
    pipe = mlflow.transformers.load_model("models:/policy@champion")
    assert pipe("Q: How was the soup?\nA:", max_new_tokens=4)[0]["generated_text"].startswith("Q: How was")
    assert stale(path) == READS_CHAMPION
    assert any(p.is_file() for p in (path / "dvc-storage").rglob("*"))          # promote.dvc_push
    # The next cycle samples from the new champion, on the prompts plus 10% new ones (as a scheduled retrain adds).
    rows = [json.loads(line) for line in (path / "data/corpus/prompts.jsonl").read_text().splitlines()]
    added = [{"id": f"new-{i}", "prompt": r["prompt"].rstrip("?.!") + ", in a few words?"}
             for i, r in enumerate(rows[:len(rows) // 10])]
    (path / "data/incoming/grown.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows + added))
    params["prepare"]["input"] = "data/incoming/grown.jsonl"
    params["promote"].update(min_ci_low=0.99)
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["rft", "cycle"], path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    gens = [json.loads(line) for line in (path / "data/generations.jsonl").read_text().splitlines()]
    assert {g["policy_version"] for g in gens} == {"policy/2"}
    assert int(client.get_model_version_by_alias("policy", "champion").version) == 2   # gate failed: stays
    # No prompt that any iteration trained on is in the third iteration's held-out set (the cycle checked this
    # itself before it sampled: tasks/provenance.py), and every prompt held out before is held out still.
    exp = client.get_experiment_by_name("rft-cycle").experiment_id
    cycles = client.search_runs([exp], "tags.`rft.kind` = 'cycle'", order_by=["attributes.start_time ASC"])
    assert len(cycles) == 3

    def record(run, name):
        return json.loads((tmp_path / client.download_artifacts(run.info.run_id, f"split/{name}.json",
                                                                  str(tmp_path))).read_text())
    held = [set(record(c, "heldout_prompts")["heldout"]) for c in cycles]
    trained = set().union(*(record(r, "trained_prompts")["trained"]
                            for r in client.search_runs([exp], "tags.`rft.stage` = 'optimize'")))
    assert held[2] and not held[2] & trained and held[0] <= held[2]
    assert held[2] - held[0]                        # some of the new prompts are held out
    assert cycles[2].data.tags["rft.split.heldout_prompts"] == str(len(held[2]))


def test_a_new_split_that_holds_out_trained_prompts_stops_the_cycle(cycled):
    path, _ = cycled
    prompts, gens = (path / "data/prompts.jsonl").read_bytes(), (path / "data/generations.jsonl").read_bytes()
    keep_file = path / "data/incoming/keep_in_train.json"
    kept_before, params_before = keep_file.read_bytes(), (path / "params.yaml").read_bytes()
    champion = _client(path).get_model_version_by_alias("policy", "champion").version
    params = yaml.safe_load(params_before)
    params["prepare"]["salt"] = "another-salt"
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        out = run(["rft", "cycle"], path)
        text = out.stdout + out.stderr
        assert out.returncode == 2, text[-3000:]
        assert "held-out prompt(s) were used for training by an earlier iteration" in text
        assert "Traceback" not in text and "prepare.salt" in text and "rft keep-trained" in text
        # prepare stopped before writing: nothing downstream moved, and the champion stayed.
        assert (path / "data/prompts.jsonl").read_bytes() == prompts
        assert (path / "data/generations.jsonl").read_bytes() == gens
        assert _client(path).get_model_version_by_alias("policy", "champion").version == champion
        # The way on: keep what the lineage trained on in training; the new split then passes the check.
        keep = run(["rft", "keep-trained"], path)
        assert keep.returncode == 0 and "prompt(s) added" in keep.stdout, keep.stdout + keep.stderr[-2000:]
        prep = run(["rft", "stage", "prepare"], path)
        assert prep.returncode == 0, (prep.stdout + prep.stderr)[-3000:]
        kept = int(float(prep.stdout.split("kept_in_train=")[1].split(",")[0]))
        rows = [json.loads(line) for line in (path / "data/prompts.jsonl").read_text().splitlines()]
        digests = set(json.loads(keep_file.read_text())["digests"])
        assert kept > 0 and any(r["split"] == "heldout" for r in rows)
        assert not [r for r in rows if r["split"] == "heldout" and prompt_digest(prompt_key(prompt_of(r))) in digests]
    finally:
        (path / "params.yaml").write_bytes(params_before)
        keep_file.write_bytes(kept_before)
        (path / "data/prompts.jsonl").write_bytes(prompts)


def test_bad_data_stops_cycle_before_generation(cycled):
    path, _ = cycled
    gen = path / "data/generations.jsonl"
    before = gen.read_bytes()
    champion = _client(path).get_model_version_by_alias("policy", "champion").version
    # A user's incoming prompts file with a duplicate id, wired in through params.yaml.
    rows = [json.loads(line) for line in (path / "data/corpus/prompts.jsonl").read_text().splitlines()]
    rows[3]["id"] = rows[0]["id"]
    (path / "data/incoming/prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["prepare"]["input"] = "data/incoming/prompts.jsonl"
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["rft", "cycle"], path)
    text = out.stdout + out.stderr
    assert out.returncode == 2, text[-2000:]
    # prepare stops it in the user's own file, naming the row that repeats an id.
    assert "rule 'unique ids, ignoring case" in text and "data/incoming/prompts.jsonl" in text and "row 4" in text
    assert "Traceback" not in text
    assert gen.read_bytes() == before                   # generate never ran
    assert _client(path).get_model_version_by_alias("policy", "champion").version == champion   # unchanged


def test_fresh_clone_repro_runs_every_stage_then_none(tmp_path):
    path = make_project(tmp_path / "clone")
    first = run(["dvc", "repro"], path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for stage in STAGES:
        assert f"Running stage '{stage}'" in first.stdout
    second = run(["dvc", "repro"], path)
    assert "Running stage" not in second.stdout
    # What `dvc repro` records, as the README says: stage runs and challengers, no iteration, no promotion.
    history = run(["rft", "history"], path)
    assert "no iterations yet" in history.stdout and "`rft cycle` records one" in history.stdout
    client = _client(path)
    assert "champion" not in client.get_registered_model("reward-model").aliases
    snippet = run_snippet(docs_snippet("architecture.md", "models:/policy@champion"), path)
    assert snippet.returncode == 0, snippet.stderr[-3000:]
    # Then `rft cycle` runs no stage again: it records the iteration and the gate decides on that candidate.
    cycle = run(["rft", "cycle"], path)
    assert cycle.returncode == 0, cycle.stdout[-3000:] + cycle.stderr[-3000:]
    rows = [json.loads(line) for line in run(["rft", "history", "--json"], path).stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["iteration"] == 1 and rows[0]["status"] == "ok", rows
    assert rows[0]["promoted"] in ("yes", "no") and rows[0]["reason"], rows           # the gate decided
    assert "stage generate: running" not in cycle.stdout + cycle.stderr                # and no stage ran again


def test_the_docs_model_snippet_runs_after_a_cycle(cycled):
    path, _ = cycled
    snippet = run_snippet(docs_snippet("architecture.md", "models:/policy@champion"), path)
    assert snippet.returncode == 0, snippet.stderr[-3000:]


def test_a_project_moved_after_a_cycle_keeps_its_models_and_artifacts(cycled, tmp_path):
    """Cloned to a new disk, renamed or restored: the copy's MLflow store names the copy's own folder, and the
    original can be gone (tasks/relocate.py)."""
    import shutil

    import mlflow

    path, _ = cycled
    moved = tmp_path / "moved project"
    shutil.copytree(path, moved, symlinks=True)
    away = path.with_name(path.name + ".away")
    path.rename(away)                                   # the original folder is gone while the copy is used
    try:
        out = run(["rft", "relocate"], moved)
        assert out.returncode == 0 and f"moved from {path} to {moved}" in out.stderr, out.stderr[-2000:]
        client = _client(moved)
        pipe = mlflow.transformers.load_model("models:/policy@champion")
        assert pipe("Q: How was the soup?\nA:", max_new_tokens=4)[0]["generated_text"].startswith("Q: How was")
        opt = client.search_runs([client.get_experiment_by_name("rft-cycle").experiment_id],
                                 "tags.`rft.stage` = 'optimize'")[0]
        assert opt.info.artifact_uri.startswith(moved.as_uri())
        png = client.download_artifacts(opt.info.run_id, "curve.png", str(tmp_path))
        assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        assert run(["rft", "history"], moved).returncode == 0
    finally:
        away.rename(path)
