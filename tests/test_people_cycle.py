"""A whole cycle with people labelling in a real Label Studio server: the flow pauses, people label, the flow
resumes and the gate decides; and a cycle where nobody labels stops at the timeout with nothing downstream."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import make_project
from test_label_studio import SHOWN, People

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.servers, pytest.mark.filterwarnings("ignore")]


def studio_params(server, prefix: str, **label) -> dict:
    """People label, and people are the gate's judge (blind, in a second project)."""
    return {"label": {"source": "label_studio", "pairs": "random_pairs", "random_pairs_per_prompt": 1,
                      "max_tasks": 12, "overlap": 0.5, "poll_s": 0.5, "timeout_s": 240.0,
                      "quality_judges": ["embedding"], **label},
            "label_studio": {"url": server.url, "project_prefix": prefix},
            "judges": {"people": {"kind": "label_studio", "poll_s": 0.5, "timeout_s": 240.0}},
            "evaluate": {"judges": ["embedding", "people"]},
            "promote": {"winrate_source": "people", "alarm_judge": "embedding"}}


def rft_cycle(path, server):
    env = {**os.environ, "LABEL_STUDIO_API_KEY": server.token}
    return subprocess.run(["rft", "cycle"], cwd=path, capture_output=True, text=True, env=env, timeout=1500)


def test_cycle_pauses_for_people_then_promotes_or_refuses(tmp_path, label_studio, monkeypatch):
    from label_studio_sdk import LabelStudio  # noqa: F401 - the SDK is installed with the labelstudio extra

    from tasks.config import parse_params

    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    path = make_project(tmp_path / "proj", studio_params(label_studio, "cyc"))
    studio_cfg = parse_params({"label_studio": {"url": label_studio.url, "project_prefix": "cyc"}}).label_studio

    def decide(i, data):
        # Person 1 prefers the longer response; person 2 agrees, except when the first shown response has an
        # odd number of characters.
        longer = SHOWN[0] if len(data["a"]) >= len(data["b"]) else SHOWN[1]
        pick = SHOWN[1 - SHOWN.index(longer)] if i == 1 and len(data["a"]) % 2 else longer
        return [{"from_name": "choice", "to_name": "prompt", "type": "choices", "value": {"choices": [pick]}}]

    people = People(studio_cfg, decide, emails=("ann1@rft.local", "ann2@rft.local"), n_tasks=12)
    people.start()
    out = rft_cycle(path, label_studio)
    people.finish()
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    labelled = [s for s in people.submitted if " label " in s[3]]
    judged = [s for s in people.submitted if " evaluate " in s[3]]
    assert people.error is None and len(labelled) == 24 and judged
    assert text.count("pausing the flow run while people label") == 2      # label, then evaluate
    assert text.count("Resuming flow run execution") == 2

    by_task: dict = {}
    for user, key, result, _ in labelled:
        by_task.setdefault(key, {})[user] = result[0]["value"]["choices"][0]
    disagreed = sum(len(set(v.values())) == 2 for v in by_task.values())
    assert 0 < disagreed < 12
    rows = [json.loads(line) for line in (path / "data/labels.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and sum(bool(r.get("tie")) for r in rows) == disagreed
    assert all(len(r["chosen"]) >= len(r["rejected"]) for r in rows if not r.get("tie"))
    users = sorted({f"ls{u}" for u, _, _, _ in labelled})
    assert all(r["labeler"] == "human:" + "+".join(users) for r in rows)

    quality = json.loads((path / "reports/label/quality.json").read_text())
    agreement = (12 - disagreed) / 12          # two people: each one's majority of the others is the other one
    assert quality["overlap_items"] == 12
    assert [quality["annotators"][u]["agreement"] for u in users] == [pytest.approx(agreement)] * 2
    assert quality["flagged"] == (users if agreement < 0.6 else [])
    assert quality["annotators"][users[0]]["labels_per_hour"] == pytest.approx(3600 / 5.0)   # 5 s per label
    assert 0 <= quality["judges"]["embedding"]["agreement"] <= 1 and quality["judges"]["embedding"]["pairs"] == \
        12 - disagreed

    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{path / 'mlruns.db'}")
    client = MlflowClient()
    exp = client.get_experiment_by_name("rft-cycle")
    label = next(r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("rft.stage") == "label")
    assert label.data.metrics["quality.overlap_items"] == 12
    assert label.data.metrics["quality.tie_rate"] == pytest.approx(disagreed / 12)
    assert "quality.iaa_cohen_kappa" in label.data.metrics and "quality.judge.embedding.agreement" in \
        label.data.metrics
    assert label.data.tags["label.outcome"] == "complete"
    artifacts = {a.path for a in client.list_artifacts(label.info.run_id)}
    assert {"annotations.jsonl", "label_quality.json"} <= artifacts
    assert token_nowhere_in(label, label_studio.token)

    # The gate read the people's blind win-rate.
    m = json.loads((path / "reports/eval/metrics.json").read_text())
    assert m["judge_people.annotations"] == len(judged) and m["judge_people.unanswered"] == 0
    assert m["winrate_people_ci_low"] <= m["winrate_people"] <= m["winrate_people_ci_high"]
    evaluate = next(r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("rft.stage") == "evaluate")
    assert token_nowhere_in(evaluate, label_studio.token)
    assert f"winrate_people {m['winrate_people']:.3f}, 95% CI low" in text     # the gate's reason names it


def token_nowhere_in(run, token: str) -> bool:
    """The token appears in no param, tag or metric name of the run."""
    values = [*run.data.params.values(), *run.data.tags.values(), *run.data.params, *run.data.metrics]
    return not any(token in str(v) for v in values)


def test_nobody_labels_cycle_stops_at_the_timeout(tmp_path, label_studio):
    path = make_project(tmp_path / "proj", studio_params(label_studio, "idle", timeout_s=3.0))
    out = rft_cycle(path, label_studio)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "nobody labelled in Label Studio (timeout" in text and "Traceback" not in text
    assert not (path / "data/labels.jsonl").exists() and not (path / "models/reward").exists()
    assert not (path / "models/candidate").exists()
