"""The MLflow UI as a person sees it, in headless Debian Chromium (Playwright, no browser download): the links
the cycle prints open the experiment in its model-training view, and a registry version shows its schema.
``RFT_SCREENSHOT_DIR=<folder>`` keeps the screenshots."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from servers import free_port, start, stop

from tasks.report import TRAINING_VIEW

pytestmark = [pytest.mark.slow, pytest.mark.servers]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def ui(built_project, tmp_path_factory):
    """``mlflow ui`` on the tiny project's store, and a fresh headless browser (empty localStorage)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is needed (apt-get install chromium)"
    path = built_project[0]
    port = free_port()
    log = tmp_path_factory.mktemp("mlflow-ui") / "ui.log"
    proc = start([str(Path(sys.executable).parent / "mlflow"), "ui", "--backend-store-uri",
                  f"sqlite:///{path / 'mlruns.db'}", "--host", "127.0.0.1", "--port", str(port)], {},
                 f"http://127.0.0.1:{port}/health", log, cwd=path)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            yield f"http://127.0.0.1:{port}", browser
            browser.close()
    finally:
        stop(proc)


def visit(ui, page_path: str, shot: str | None = None, wait_for: str | None = None):
    base, browser = ui
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    page.goto(f"{base}/{page_path}")
    if wait_for:
        page.get_by_text(wait_for).first.wait_for(timeout=60000)
    page.wait_for_timeout(1500)
    if shot and os.environ.get("RFT_SCREENSHOT_DIR"):
        page.screenshot(path=str(Path(os.environ["RFT_SCREENSHOT_DIR"]) / f"{shot}.png"))
    return page


def test_the_printed_link_opens_the_model_training_view(ui, built_project):
    # Every stage of the tiny project ran as a run of experiment 1.
    page = visit(ui, f"#/experiments/1?{TRAINING_VIEW}", "mlflow-runs", wait_for="train_reward")
    text = page.inner_text("body")
    assert "/experiments/1/runs" in page.url and "Model registry" in text
    assert all(stage in text for stage in ("bootstrap", "generate", "optimize"))
    # Without the parameter a browser that never chose a view lands in the GenAI overview, tag or no tag:
    # the reason the links carry it.
    page = visit(ui, "#/experiments/1", wait_for="Overview")
    page.wait_for_url("**/overview/**", timeout=30000)
    assert "workflowType=genai" in page.url


def test_a_registry_version_shows_its_schema(ui):
    page = visit(ui, f"#/models/reward-model/versions/1?{TRAINING_VIEW}", wait_for="Schema")
    page.get_by_text("Inputs (2)").click()
    page.get_by_text("Outputs (1)").click()
    page.wait_for_timeout(500)
    if os.environ.get("RFT_SCREENSHOT_DIR"):
        page.screenshot(path=str(Path(os.environ["RFT_SCREENSHOT_DIR"]) / "registry-version.png"))
    schema = page.inner_text("body").split("Schema", 1)[1]
    assert all(column in schema for column in ("prompt", "response", "reward"))


def _lines(page) -> list[str]:
    return [line.strip() for line in page.inner_text("body").splitlines() if line.strip()]


def test_the_models_tab_names_each_logged_model_and_its_version(ui):
    page = visit(ui, f"#/experiments/1/models?{TRAINING_VIEW}", "mlflow-models-tab", wait_for="reward-model")
    lines = _lines(page)
    # Named for what they are (not three rows called "model"), each beside the registry version made from it.
    assert "model" not in lines
    text = "\n".join(lines)
    assert "policy\nv1" in text and "policy\nv2" in text and "reward-model\nv1" in text


def test_a_logged_models_page_shows_its_version_and_final_figures(ui, built_project):
    import mlflow
    from mlflow import MlflowClient

    from tasks.tracking import logged_model_id

    mlflow.set_tracking_uri(f"sqlite:///{built_project[0] / 'mlruns.db'}")
    model_id = logged_model_id(MlflowClient().get_model_version("policy", "2"))
    page = visit(ui, f"#/experiments/1/models/{model_id}?{TRAINING_VIEW}", "mlflow-logged-model",
                 wait_for="Model versions")
    text = "\n".join(_lines(page))
    assert "Not registered" not in text and "policy\nv2" in text.split("Model versions", 1)[1]
    assert "final_probe_reward" in text                  # the stage's final figures, not step 0's


def test_a_stage_runs_charts_lead_with_the_probe(ui, built_project):
    from tasks.policy import read_meta

    run_id = read_meta(built_project[0] / "models/candidate")["run_id"]
    page = visit(ui, f"#/experiments/1/runs/{run_id}/model-metrics?{TRAINING_VIEW}", "mlflow-run-charts",
                 wait_for="probe_reward")
    lines = _lines(page)
    sections = [lines[i - 1] for i, line in enumerate(lines) if re.fullmatch(r"\(\d+\)", line)]
    assert sections[0] == "health" and "train" in sections, sections    # reward and KL first, TRL's after
    assert lines.index("probe_reward") < lines.index("train")
    assert not [line for line in lines if "clip_ratio" in line]           # 0 by construction on-policy: not logged
