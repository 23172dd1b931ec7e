"""What a person sees of a cycle in Prefect's UI: skipped stages named so, and the summary and the decision as
the flow run's artifacts."""

from __future__ import annotations

import pytest
import yaml
from conftest import ROOT

from tasks.config import parse_params

pytestmark = pytest.mark.slow          # runs a Prefect flow on Prefect's test server


def test_skipped_stages_and_the_flow_runs_artifacts(tmp_path):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.testing.utilities import prefect_test_harness

    from flows.cycle import stage_row, stage_task
    from tasks.report import publish_artifacts

    params = parse_params(yaml.safe_load((ROOT / "params.yaml").read_text()))
    evaluate = {"stage": "evaluate", "status": "ran", "seconds": 6.0,
                "metrics": {"winrate_truth": 0.693, "winrate_truth_ci_low": 0.633, "winrate_truth_ci_high": 0.753,
                            "kl": 1.94}}
    promote = {"stage": "promote", "status": "promoted", "seconds": 0.3,
               "metrics": {"promoted": True, "decided": True, "policy_version": 2,
                           "reason": "promoted: winrate_truth 0.693, 95% CI low 0.633 > 0.5"}}

    @flow
    def cycle_like():
        # a stage known to be up to date never opens the DVC repo: nothing here is one
        state = stage_task.with_options(name="generate")("generate", "params.yaml", False, return_state=True)
        rows = [stage_row("generate", state), evaluate, promote]
        publish_artifacts(7, rows, params, "3", "0123abcd", None)
        return rows

    with prefect_test_harness():
        state = cycle_like(return_state=True)
        rows = state.result()
        assert rows[0] == {"stage": "generate", "status": "skipped", "seconds": 0.0, "metrics": {}}
        runs = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        with get_client(sync_client=True) as client:
            (task_run,) = client.read_task_runs(flow_run_filter=runs)
            artifacts = {a.key: a for a in client.read_artifacts(flow_run_filter=runs)}
    # Skipped is its own state in the UI, of type Completed (a skipped stage is not a failure).
    assert task_run.name.startswith("generate") and task_run.state.name == "Skipped"
    assert task_run.state.is_completed()
    assert set(artifacts) == {"cycle-summary", "promotion-decision"}
    table = artifacts["cycle-summary"]
    assert table.type == "table" and '"status": "skipped"' in table.data and "winrate_truth=0.693" in table.data
    decision = artifacts["promotion-decision"]
    assert decision.type == "markdown"
    assert decision.data.startswith("# Cycle 7: promoted policy v2\n\npromoted: winrate_truth 0.693")
    assert "| winrate_truth | 0.693 (95% CI 0.633–0.753) |" in decision.data and "| kl | 1.940 |" in decision.data
    assert "MLflow run `0123abcd`" in decision.data
    assert "http://127.0.0.1:5000/#/experiments/3/runs/0123abcd" in decision.data
