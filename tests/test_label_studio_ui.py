"""Once through Label Studio's real web page, as a person does it: log in, open a task, click, submit.

Headless Debian Chromium driven by Playwright (``executablePath`` set: no browser
download). The labeler waits in a thread meanwhile, and the labels it exports
must be the clicks. ``RFT_SCREENSHOT_DIR=docs/img`` keeps the screenshot that
``docs/labeling.md`` shows.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from test_label_studio import GENERATIONS, SHOWN, label_cfg, run_labeler

pytestmark = [pytest.mark.slow, pytest.mark.servers]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def test_a_person_labels_in_the_browser(label_studio, studio_cfg, tmp_path):
    from playwright.sync_api import sync_playwright

    from tasks.label_studio_client import Studio

    assert Path(CHROMIUM).exists(), "Debian's chromium is needed (apt-get install chromium)"
    out: dict = {}
    labeler = threading.Thread(target=lambda: out.update(labels=run_labeler(label_cfg(max_tasks=2), studio_cfg)),
                               daemon=True)
    labeler.start()
    studio = Studio(studio_cfg)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        projects = [p for p in studio.client.projects.list() if p.title.startswith(studio_cfg.project_prefix)]
        if projects and len(studio.tasks(projects[0].id)) == 2:
            break
        time.sleep(0.3)
    project = projects[0].id
    clicks = {}
    shots = Path(os.environ.get("RFT_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 760})
        page.goto(f"{label_studio.url}/user/login/")
        page.fill("input[name=email]", label_studio.username)
        page.fill("input[name=password]", label_studio.password)
        page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")
        for n, task in enumerate(studio.tasks(project)):
            page.goto(f"{label_studio.url}/projects/{project}/data?task={task.id}")
            submit = page.get_by_role("button", name="Submit")
            submit.wait_for(timeout=60000)
            page.locator(".lsf-richtext__line", has_text=task.data["a"]).first.wait_for(timeout=30000)  # its text
            pick = SHOWN[0] if len(task.data["a"]) > len(task.data["b"]) else SHOWN[1]
            page.locator("label").filter(has_text=pick).first.click()
            if n == 0:
                page.screenshot(path=str(shots / "label-studio-comparison.png"))
            submit.click()
            page.wait_for_timeout(1500)
            clicks[task.key] = pick
        browser.close()
    labeler.join(60)
    assert not labeler.is_alive() and "labels" in out
    rows = out["labels"].rows
    assert len(rows) == 2 and (shots / "label-studio-comparison.png").stat().st_size > 10_000
    # the clicks were on the longer shown response; after the display order is undone, chosen is the longer one
    assert all(len(r["chosen"]) > len(r["rejected"]) for r in rows)
    assert {r["chosen"] for r in rows} <= {g["response"] for g in GENERATIONS}
    assert all(r["labeler"] == "human:ls1" for r in rows)     # the admin who logged in, user 1
