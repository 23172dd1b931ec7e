"""What a person reads about a cycle: the summary table, the promotion decision as markdown, the links to the
MLflow runs (on a server, or the command that serves the local store), and the Prefect flow run's artifacts."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

from tasks.manifest import KEY_METRIC
from tasks.redact import redact_url


def summary_rows(rows: list[dict], winrate_source: str = "") -> list[dict]:
    """The summary's rows: stage, status, seconds, the stage's key metric and its output."""
    out = []
    for r in rows:
        key, out_path = KEY_METRIC.get(r["stage"], ("", ""))
        if key.endswith("*"):       # the family's member the gate reads (winrate_* -> winrate_truth), else the first
            gated = f"{key[:-1]}{winrate_source}"
            key = gated if gated in r["metrics"] else next(
                (k for k in r["metrics"] if k.startswith(key[:-1]) and "_ci_" not in k), key)
        value = r["metrics"].get(key)
        if r["stage"] == "promote":
            key, value, out_path = "policy_version", r["metrics"].get("policy_version"), "models/champion"
        shown = f"{key}={value:.4g}" if isinstance(value, float) else (f"{key}={value}" if value is not None else "")
        out.append({"stage": r["stage"], "status": r["status"], "time (s)": f"{r['seconds']:.1f}",
                    "key metric": shown, "output": out_path})
    return out


def summary_table(rows: list[dict], winrate_source: str = "") -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="cycle summary")
    shown = summary_rows(rows, winrate_source)
    for col in ("stage", "status", "time (s)", "key metric", "output"):
        table.add_column(col)
    for r in shown:
        table.add_row(*r.values())
    buf = io.StringIO()
    Console(file=buf, width=120).print(table)
    return buf.getvalue()


def prefect_links() -> dict:
    """Tags of the MLflow parent run that lead to the Prefect flow run: its id, and its page where the server
    serves a UI."""
    from prefect.runtime import flow_run

    links = {"prefect.flow_run_id": str(flow_run.id), "prefect.flow_run_name": str(flow_run.name)}
    if flow_run.ui_url:
        links["prefect.flow_run_url"] = flow_run.ui_url
    return links


# The MLflow 3.17 UI shows an experiment in its GenAI or its model-training view by a switch it keeps per browser
# (localStorage "mlflow.workflowType", GenAI when unset) and reads first from the page's ?workflowType=; the
# experiment's mlflow.experimentKind tag alone does not turn it (tests/test_mlflow_ui.py opens both pages).
TRAINING_VIEW = "workflowType=machine_learning"


def run_page(base: str, exp_id: str, run_id: str) -> str:
    """The page of MLflow run ``run_id`` of experiment ``exp_id`` on the MLflow UI at ``base``, in the UI's
    model-training view."""
    return f"{base.rstrip('/')}/#/experiments/{exp_id}/runs/{run_id}?{TRAINING_VIEW}"


def ui_command(uri: str, port: str) -> str:
    """The command that serves the MLflow UI on a local store, runnable from the shell the user is in: the
    ``mlflow`` of this interpreter's environment, by a path relative to the working directory where it is
    inside it."""

    exe = Path(sys.executable).parent / "mlflow"
    try:
        exe = exe.relative_to(Path.cwd())
    except ValueError:
        pass
    return f"{exe} ui --backend-store-uri {uri} --host 127.0.0.1 --port {port}"


def mlflow_ui_hint(uri: str, exp_id: str, run_id: str) -> str:
    """What to run, and where to look, to see the cycle's run: its page on a tracking server, or the command
    that serves the local store (port ``MLFLOW_PORT``, default 5000, as ``make mlflow-ui``) and the page."""
    uri = redact_url(uri)
    if uri.startswith(("http://", "https://")):
        return f"MLflow run: {run_page(uri, exp_id, run_id)}"
    port = os.environ.get("MLFLOW_PORT", "5000")       # the Makefile's setting for `make mlflow-ui`, said alike
    return (f"MLflow UI: {ui_command(uri, port)}  (or: make mlflow-ui), then open "
            f"{run_page(f'http://127.0.0.1:{port}', exp_id, run_id)}")


def mlflow_link(params, exp_id: str, run_id: str) -> str:
    """Where the MLflow run is: a link to its page on a tracking server, else the command that serves the local
    store."""
    uri = params.tracking.uri
    if uri.startswith(("http://", "https://")):
        return f"[MLflow run {run_id}]({run_page(uri, exp_id, run_id)})"
    port = os.environ.get("MLFLOW_PORT", "5000")       # the Makefile's setting for `make mlflow-ui`, said alike
    return (f"MLflow run `{run_id}` (`{ui_command(uri, port)}`, then "
            f"{run_page(f'http://127.0.0.1:{port}', exp_id, run_id)})")


def decision_markdown(iteration: int, rows: list[dict], params, exp_id: str, run_id: str, error: str | None) -> str:
    """The promotion decision as the flow run's markdown artifact: what was decided, why, on which figures."""
    promote = next((r for r in rows if r["stage"] == "promote"), None)
    evaluation = next((r["metrics"] for r in rows if r["stage"] == "evaluate" and r["metrics"]), {})
    if error:
        head, why = "stopped", error
    elif promote is None:
        head, why = "no decision", "the promote step did not run in this flow"
    else:
        m = promote["metrics"]
        head = f"promoted policy v{m.get('policy_version')}" if m["promoted"] else \
            "kept the champion" if m["decided"] else "nothing to decide"
        why = m["reason"]
    lines = [f"# Cycle {iteration}: {head}", "", why, ""]
    source = f"winrate_{params.promote.winrate_source}"
    if source in evaluation:
        low, high = (evaluation.get(f"{source}_ci_{end}", float("nan")) for end in ("low", "high"))
        lines += ["| figure | value |", "| --- | --- |",
                  f"| {source} | {evaluation[source]:.3f} (95% CI {low:.3f}–{high:.3f}) |"]
        lines += [f"| {k} | {evaluation[k]:.3f} |" for k in ("kl", "reward_mean", "distinct_2") if k in evaluation]
        lines.append("")
    lines.append(f"Recorded in {mlflow_link(params, exp_id, run_id)}.")
    return "\n".join(lines)


def publish_artifacts(iteration: int, rows: list[dict], params, exp_id: str, run_id: str, error: str | None) -> None:
    """The summary table and the promotion decision as artifacts of the Prefect flow run."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_table_artifact(summary_rows(rows, params.promote.winrate_source), key="cycle-summary",
                          description=f"Cycle {iteration}: each stage, ran or skipped, its time and key figure.")
    create_markdown_artifact(decision_markdown(iteration, rows, params, exp_id, run_id, error),
                             key="promotion-decision",
                             description=f"Cycle {iteration}: the gate's decision.")
