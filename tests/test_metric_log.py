"""The training loops' metric logger: a step's figures in one MLflow write, the same figures as one by one."""

from __future__ import annotations

from unittest import mock

from tasks.tracking import MetricLog, log_many


def test_log_many_writes_a_step_once_and_keeps_every_figure(tmp_path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlruns.db")
    mlflow.set_experiment("metric-log")
    log = MetricLog()
    with mlflow.start_run() as run, mock.patch.object(mlflow.MlflowClient, "log_batch",
                                                      wraps=mlflow.MlflowClient().log_batch) as batch:
        log_many(log, {"train/loss": 0.5, "train/kl": 0.25}, 3)
        log_many(log, {}, 4)                      # nothing to write: no call
        log("probe_reward", 1.5, 3)               # one figure still logs alone
    assert batch.call_count == 1
    client = mlflow.MlflowClient()
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/loss")] == [(3, 0.5)]
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/kl")] == [(3, 0.25)]
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "probe_reward")] == [(3, 1.5)]


def test_log_many_falls_back_to_a_plain_function():
    seen = []
    log_many(lambda k, v, s: seen.append((k, v, s)), {"a": 1.0, "b": 2.0}, 7)
    assert seen == [("a", 1.0, 7), ("b", 2.0, 7)]
