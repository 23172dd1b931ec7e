"""Screenshots of what a person sees after cycles of a project, in headless Debian Chromium (Playwright): the
MLflow compare view of the last two cycles, the registry page of the champion's version with its schema, the
experiment's Models tab, the champion's logged-model page, the last optimize run's charts, the last Prefect
flow run's Artifacts tab, and the `dvc plots show` page as it renders offline.

    python docs/screenshots.py PROJECT OUTDIR      # PROJECT: a folder where `rft cycle` ran at least twice

It serves the project's MLflow store and Prefect's database ($PREFECT_HOME, else ~/.prefect) on free ports
for the time it takes. The images in docs/img/ were taken with it.
"""
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from playwright.sync_api import sync_playwright  # noqa: E402
from servers import free_port, start, stop  # noqa: E402

proj, outdir = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
outdir.mkdir(parents=True, exist_ok=True)
scratch = Path(tempfile.mkdtemp(prefix="screenshots."))       # the servers' logs and the plots page
BIN = Path(sys.executable).parent
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
import mlflow  # noqa: E402

mlflow.set_tracking_uri(f"sqlite:///{proj}/mlruns.db")
c = mlflow.MlflowClient()
exp = c.get_experiment_by_name(yaml.safe_load((proj / "params.yaml").read_text())["tracking"]["experiment"])
cycles = c.search_runs([exp.experiment_id], "tags.`rft.kind` = 'cycle'", order_by=["attributes.start_time ASC"])
ids = [r.info.run_id for r in cycles][-2:]
print("cycles", [r.info.run_name for r in cycles])
champ_mv = c.get_model_version_by_alias("policy", "champion")
champ = champ_mv.version
optimize = c.search_runs([exp.experiment_id], "tags.`rft.stage` = 'optimize'",
                         order_by=["attributes.start_time DESC"])[0].info.run_id
mport, pport = free_port(), free_port()
ml = start([str(BIN / "mlflow"), "ui", "--backend-store-uri", f"sqlite:///{proj}/mlruns.db", "--host", "127.0.0.1",
            "--port", str(mport)], {}, f"http://127.0.0.1:{mport}/health", scratch / "mlflow.log", cwd=proj)
env = {"PREFECT_HOME": os.environ.get("PREFECT_HOME", str(Path.home() / ".prefect")),
       "PREFECT_UI_API_URL": f"http://127.0.0.1:{pport}/api", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
pf = start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(pport)], env,
           f"http://127.0.0.1:{pport}/api/health", scratch / "prefect.log")
try:
    req = urllib.request.Request(f"http://127.0.0.1:{pport}/api/flow_runs/filter", method="POST",
                                 data=json.dumps({"sort": "START_TIME_DESC", "limit": 1}).encode(),
                                 headers={"Content-Type": "application/json"})
    flow_run = json.loads(urllib.request.urlopen(req).read())[0]
    print("flow run", flow_run["name"], flow_run["id"])
    subprocess.run([str(BIN / "dvc"), "plots", "show", "-o", str(scratch / "plots")], cwd=proj, check=True,
                   capture_output=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=FLAGS)

        def shot(name, url, wait=None, full=False, click=(), height=1000, width=1500):
            page = b.new_context(viewport={"width": width, "height": height}).new_page()
            page.goto(url)
            if wait:
                page.get_by_text(wait).first.wait_for(timeout=60000)
            page.wait_for_timeout(6000)
            for text in click:
                text, nth = text if isinstance(text, tuple) else (text, 0)
                try:
                    page.get_by_text(text).nth(nth).click(timeout=5000)
                except Exception as e:
                    print("no", text, e)
            page.wait_for_timeout(2500)
            page.screenshot(path=str(outdir / f"{name}.png"), full_page=full)
            print(name, page.url)
            return page

        runs = json.dumps(ids)
        shot("mlflow-compare-cycles", f"http://127.0.0.1:{mport}/#/compare-runs?runs={runs}&experiments="
             f"{json.dumps([exp.experiment_id])}&workflowType=machine_learning", wait="Parameters", height=1700, click=(("Show diff only", 0), ("Show diff only", 1)))
        shot("mlflow-registry-version", f"http://127.0.0.1:{mport}/#/models/policy/versions/{champ}"
             "?workflowType=machine_learning", wait="Schema", click=("Inputs (1)", "Outputs (1)"), height=1500)
        ui = f"http://127.0.0.1:{mport}/#/experiments/{exp.experiment_id}"
        shot("mlflow-models-tab", f"{ui}/models?workflowType=machine_learning", wait="reward-model", height=700,
             width=2100)    # wide enough for the registered-version column beside MLflow's assistant panel
        shot("mlflow-logged-model", f"{ui}/models/{champ_mv.source.split('/')[-1]}?workflowType=machine_learning",
             wait="Model versions", height=1300)
        shot("mlflow-run-charts", f"{ui}/runs/{optimize}/model-metrics?workflowType=machine_learning",
             wait="probe_reward", height=1100)
        shot("prefect-artifacts", f"http://127.0.0.1:{pport}/runs/flow-run/{flow_run['id']}?tab=Artifacts",
             height=1400, click=("Artifacts",))
        shot("dvc-plots-offline", (scratch / "plots" / "index.html").as_uri(), full=True)
        b.close()
finally:
    stop(ml)
    stop(pf)
