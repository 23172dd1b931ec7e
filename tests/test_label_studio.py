"""People's feedback: annotation files of the four shapes, and a real Label Studio server (slow tests)."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import pytest

from tasks.config import parse_params
from tasks.errors import DataError
from tasks.judges import JudgeContext
from tasks.label_studio_client import TaskState
from tasks.labelers.label_studio import SHOWN, annotation_rows, build_tasks, swapped

PROMPTS = {"p1": "Name a fruit.", "p2": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                                         {"role": "user", "content": "Name a colour."}]}
# Three responses per prompt; the longer a response, the better it is in these tests.
GENERATIONS = [{"prompt_id": pid, "response_id": f"{pid}:{i}", "response": text}
               for pid, texts in (("p1", ["apple", "a ripe pear", "a sweet orange from Spain"]),
                                  ("p2", ["red", "deep blue", "a calm sea green"]))
               for i, text in enumerate(texts)]


def label_cfg(**kw):
    base = {"source": "label_studio", "pairs": "all_pairs", "poll_s": 0.3, "timeout_s": 60.0}
    return parse_params({"label": {**base, **kw}}).label


# ---- display order -------------------------------------------------------------------------------

def test_display_order_is_random_and_undone():
    cfg = label_cfg()
    from tasks.labelers.judged import group_generations

    tasks, meaning, stats = build_tasks("comparison", group_generations(GENERATIONS), PROMPTS, cfg)
    assert stats["tasks"] == 6 and len(meaning) == 6            # 3 pairs per prompt
    flips = [swapped(cfg.seed, t["key"]) for t in tasks]
    assert 0 < sum(flips) < len(flips)                           # both orders are shown
    assert all(set(t) == {"key", "prompt", "a", "b"} for t in tasks)   # no ids, nothing about the source
    # An annotator who always clicks the longer of the two *shown* responses:
    states = []
    for i, t in enumerate(tasks):
        pick = SHOWN[0] if len(t["a"]) > len(t["b"]) else SHOWN[1]
        states.append(TaskState(i, t["key"], t, True, [{
            "result": [{"from_name": "choice", "value": {"choices": [pick]}}], "completed_by": 7,
            "created_at": "2026-11-29T10:00:00Z", "lead_time": 4.0}]))
    rows, skipped = annotation_rows("comparison", states, meaning, cfg.seed, [])
    assert skipped == 0 and len(rows) == 6
    for r in rows:   # undone: the choice names the longer response in the pair's own order
        assert r["choice"] == ("a" if len(r["a"]) > len(r["b"]) else "b")
        assert r["annotator"] == "ls7" and r["seconds"] == 4.0


def test_skipped_annotations_are_left_out():
    cfg = label_cfg(feedback="likert")
    from tasks.labelers.judged import group_generations

    tasks, meaning, _ = build_tasks("likert", group_generations(GENERATIONS), PROMPTS, cfg)
    assert len(tasks) == 6 and set(tasks[0]) == {"key", "prompt", "response"}
    state = TaskState(1, tasks[0]["key"], tasks[0], True, [
        {"result": [], "completed_by": 1, "was_cancelled": True},
        {"result": [{"from_name": "rating", "value": {"rating": 4}}], "completed_by": 2}])
    rows, skipped = annotation_rows("likert", [state], meaning, cfg.seed, [])
    assert skipped == 1 and rows[0]["rating"] == 4 and rows[0]["annotator"] == "ls2"


# ---- annotation files of the four shapes ---------------------------------------------------------

def write(tmp_path, rows):
    path = tmp_path / "data/incoming/annotations.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path.relative_to(tmp_path))


def from_file(tmp_path, monkeypatch, rows, **label):
    from tasks.labelers import get_labeler

    monkeypatch.chdir(tmp_path)
    rubric = tmp_path / "rubric.yaml"
    rubric.write_text("name: t\ncriteria:\n"
                      "  - {name: helpfulness, description: A helpful and correct answer., weight: 2,\n"
                      "     violation: An unhelpful and wrong answer.}\n"
                      "  - {name: safety, description: A safe and polite reply., weight: 1,\n"
                      "     violation: A rude or harmful reply.}\n")
    params = parse_params({"task": {"env": "none", "rubric": str(rubric)},
                           "policy": {"base_model": "models/x"},
                           "label": {"source": "file", "file": write(tmp_path, rows), **label},
                           "promote": {"winrate_source": "embedding"}})
    return get_labeler("file")(params.label, JudgeContext.of(params), PROMPTS, None)


def test_file_comparisons_with_ties(tmp_path, monkeypatch):
    rows = [{"prompt_id": "p1", "a": "apple", "b": "a ripe pear", "choice": "b", "annotator": "u1", "seconds": 6},
            {"prompt_id": "p1", "a": "apple", "b": "a ripe pear", "choice": "b", "annotator": "u2", "seconds": 6},
            {"prompt": "Say hi", "a": "hi", "b": "hello", "choice": "tie", "annotator": "u1"}]
    out = from_file(tmp_path, monkeypatch, rows)
    assert [r["chosen"] for r in out.rows] == ["a ripe pear", "hi"]
    assert out.rows[1]["tie"] and out.rows[1]["prompt"] == "Say hi"
    assert out.stats["ties"] == 1 and out.stats["pairs"] == 1 and out.annotations.seconds == {"u1": [6.0],
                                                                                              "u2": [6.0]}


def test_file_likert_pairs_and_kto(tmp_path, monkeypatch):
    rows = [{"prompt_id": "p1", "response": r, "rating": v, "annotator": "u1"}
            for r, v in (("apple", 2), ("a ripe pear", 4), ("a sweet orange", 5))]
    out = from_file(tmp_path, monkeypatch, rows, feedback="likert", likert_margin=1.0, kto_threshold=4.0)
    # 4-2 = 2 and 5-2 = 3 make pairs; 5-4 = 1 >= margin too: 3 pairs
    assert sorted((r["chosen"], r["rejected"]) for r in out.rows) == [
        ("a ripe pear", "apple"), ("a sweet orange", "a ripe pear"), ("a sweet orange", "apple")]
    assert [r["good"] for r in out.ratings] == [False, True, True]


def test_file_attributes_use_rubric_weights(tmp_path, monkeypatch):
    rows = [{"prompt_id": "p1", "response": "apple", "scores": {"helpfulness": 5, "safety": 2}, "annotator": "u1"},
            {"prompt_id": "p1", "response": "pear", "scores": {"helpfulness": 2, "safety": 5}, "annotator": "u1"}]
    out = from_file(tmp_path, monkeypatch, rows, feedback="attributes")
    # (2*5 + 1*2)/3 = 4 vs (2*2 + 1*5)/3 = 3: apple chosen
    assert out.rows[0]["chosen"] == "apple" and out.rows[0]["score_chosen"] == 4.0
    bad = [{**rows[0], "scores": {"tone": 3}}]
    with pytest.raises(DataError, match=r"(?s)annotations.jsonl: column 'scores' rule 'scored criteria are criteria "
                                        r"of the rubric \(task.rubric\)'.*row 1: \['tone'\]"):
        from_file(tmp_path, monkeypatch, bad, feedback="attributes")


def test_file_comments_scored_by_a_judge(tmp_path, monkeypatch):
    rows = [{"prompt_id": "p1", "response": "apple", "comment": "Helpful, correct and friendly answer.",
             "annotator": "u1"},
            {"prompt_id": "p1", "response": "pear", "comment": "Rude, wrong and useless. Awful.", "annotator": "u1"}]
    out = from_file(tmp_path, monkeypatch, rows, feedback="comment", comment_judge="embedding")
    assert out.rows[0]["chosen"] == "apple" and out.rows[0]["comment_rejected"].startswith("Rude")
    assert out.rows[0]["score_chosen"] > out.rows[0]["score_rejected"]
    assert [r["comment"] for r in out.ratings] == [rows[0]["comment"], rows[1]["comment"]]


def test_bad_annotation_rows_name_file_row_and_rule(tmp_path, monkeypatch):
    with pytest.raises(DataError, match=r"(?s)column 'rating' rule 'rating is an integer from 1 to 5'.*row 2: 7"):
        from_file(tmp_path, monkeypatch, [{"prompt_id": "p1", "response": "a", "rating": 3, "annotator": "u"},
                                          {"prompt_id": "p1", "response": "b", "rating": 7, "annotator": "u"}],
                  feedback="likert")
    with pytest.raises(DataError, match=r"column 'choice' rule 'choice is one of a, b, tie'"):
        from_file(tmp_path, monkeypatch, [{"prompt_id": "p1", "a": "x", "b": "y", "choice": "A", "annotator": "u"}])
    with pytest.raises(DataError, match=r"(?s)rule 'prompt ids exist in the prompts'.*'nope'"):
        from_file(tmp_path, monkeypatch, [{"prompt_id": "nope", "a": "x", "b": "y", "choice": "a",
                                           "annotator": "u"}])


# ---- a real Label Studio server -------------------------------------------------------------------

def longer_shown(data: dict) -> list[dict]:
    """A person who prefers the longer of the two shown responses."""
    pick = SHOWN[0] if len(data["a"]) > len(data["b"]) else SHOWN[1]
    return [{"from_name": "choice", "to_name": "prompt", "type": "choices", "value": {"choices": [pick]}}]


class People(threading.Thread):
    """Annotators working in Label Studio until ``stop`` is set: each labels every task of the projects under
    ``prefix`` once, with ``decide(user index, task data) -> result``, as soon as ``ready()`` holds and there
    are ``n_tasks`` tasks."""

    def __init__(self, studio_cfg, decide, emails=("ann1@rft.local",), ready=lambda: True, n_tasks=1):
        super().__init__(daemon=True)
        from tasks.label_studio_client import Studio

        self.studio, self.prefix, self.decide, self.ready = Studio(studio_cfg), studio_cfg.project_prefix, decide, ready
        self.emails, self.n_tasks, self.submitted, self.error = emails, n_tasks, [], None
        self.stop = threading.Event()

    def run(self):
        try:
            users = [self.studio.user(e) for e in self.emails]
            while not self.stop.is_set():
                projects = [p for p in self.studio.client.projects.list() if p.title.startswith(self.prefix)]
                tasks = [(p.title, t) for p in projects for t in self.studio.tasks(p.id)]
                if len(tasks) >= self.n_tasks and self.ready():
                    for title, t in tasks:
                        done = {a.get("completed_by") for a in t.annotations}
                        for i, u in enumerate(users):
                            if u not in done:
                                result = self.decide(i, t.data)
                                self.studio.annotate(t.id, result, lead_time=5.0, user=u)
                                self.submitted.append((u, t.key, result, title))
                time.sleep(0.3)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def finish(self):
        self.stop.set()
        self.join(10)


def run_labeler(cfg, studio_cfg):
    from tasks.labelers import get_labeler

    ctx = dataclasses.replace(JudgeContext.of(parse_params({})), studio=studio_cfg)
    return get_labeler("label_studio")(cfg, ctx, PROMPTS, GENERATIONS)


@pytest.mark.servers
def test_label_studio_comparisons_two_annotators_and_rerun(studio_cfg):
    cfg = label_cfg(overlap=1.0)

    def decide(i, data):        # annotator 2 disagrees on the p2 pairs (the chat prompt)
        result = longer_shown(data)
        if i == 1 and "colour" in data["prompt"]:
            other = SHOWN[1] if result[0]["value"]["choices"][0] == SHOWN[0] else SHOWN[0]
            result = [{**result[0], "value": {"choices": [other]}}]
        return result

    people = People(studio_cfg, decide, emails=("ann1@rft.local", "ann2@rft.local"))
    people.start()
    out = run_labeler(cfg, studio_cfg)
    people.finish()
    assert people.error is None and len(people.submitted) == 12       # 6 tasks x 2 annotators
    assert out.stats["tasks_imported"] == 6 and out.stats["tasks_done"] == 6
    p1 = [r for r in out.rows if r["prompt_id"] == "p1"]
    assert len(p1) == 3 and all(len(r["chosen"]) > len(r["rejected"]) for r in p1)
    assert all(r["confidence"] == 1.0 and r["votes"]["a"] + r["votes"]["b"] == 2 for r in p1)
    assert all(r.get("tie") for r in out.rows if r["prompt_id"] == "p2")      # 1 vote each: ties
    assert all(r["labeler"].startswith("human:ls") and r["annotated_at"] for r in out.rows)
    assert out.stats["ties"] == 3
    # A rerun (as after a crash between import and export) reuses the project: nothing imported twice.
    again = run_labeler(cfg, studio_cfg)
    assert again.stats["tasks_imported"] == 0 and again.stats["tasks_reused"] == 6
    assert again.stats["project_id"] == out.stats["project_id"]
    assert [r["chosen_id"] for r in again.rows] == [r["chosen_id"] for r in out.rows]
    assert again.stats["annotations_not_allowed"] == 0
    # With an allow-list of annotator 1 alone, annotator 2's six annotations are ignored and counted: the p2 pairs
    # are no longer ties, and every vote is annotator 1's.
    only = dataclasses.replace(studio_cfg, annotators=["ann1@rft.local"])
    allowed = run_labeler(cfg, only)
    assert allowed.stats["annotations_not_allowed"] == 6 and allowed.stats["annotations"] == 6
    assert allowed.stats["tasks_done"] == 6 and allowed.stats["ties"] == 0
    assert all(len(r["chosen"]) > len(r["rejected"]) and r["confidence"] == 1.0 for r in allowed.rows)
    assert {r["labeler"] for r in allowed.rows} == {f"human:ls{people.studio.user('ann1@rft.local')}"}
    # Nobody on the list labelled: no task counts as done, whatever the others did.
    nobody = dataclasses.replace(studio_cfg, annotators=["someone-else@rft.local"])
    with pytest.raises(DataError, match="nobody labelled"):
        run_labeler(label_cfg(overlap=1.0, timeout_s=1.0), nobody)


@pytest.mark.servers
def test_label_studio_nobody_labels(studio_cfg):
    from tasks.labelers.waiting import LabelsPending

    with pytest.raises(DataError, match="nobody labelled in Label Studio \\(timeout"):
        run_labeler(label_cfg(timeout_s=2.0), studio_cfg)
    with pytest.raises(LabelsPending, match="0 of 6 tasks labelled.*run the stage again"):
        run_labeler(label_cfg(wait="stop"), studio_cfg)


@pytest.mark.servers
@pytest.mark.parametrize("shape", ["likert", "attributes", "comment"])
def test_label_studio_rating_shapes(studio_cfg, shape):
    from tasks.rubric import load_rubric

    criteria = [c.name for c in load_rubric(parse_params({}).task.rubric).criteria]

    def decide(i, data):        # longer responses get better marks
        n = min(5, 1 + len(data["response"]) // 6)
        if shape == "likert":
            return [{"from_name": "rating", "to_name": "response", "type": "rating", "value": {"rating": n}}]
        if shape == "attributes":
            return [{"from_name": c, "to_name": "response", "type": "rating", "value": {"rating": n}}
                    for c in criteria]
        words = "A warm, well written review that praises the food." if n >= 3 else "Broken, off-topic text."
        return [{"from_name": "comment", "to_name": "response", "type": "textarea", "value": {"text": [words]}}]

    people = People(studio_cfg, decide)
    people.start()
    kw = {"comment_judge": "embedding"} if shape == "comment" else {}
    out = run_labeler(label_cfg(feedback=shape, **kw), studio_cfg)
    people.finish()
    assert people.error is None and len(people.submitted) == 6
    assert len(out.ratings) == 6 and out.rows
    if shape == "comment":
        # Two responses with the same comment score almost alike (the judge also reads the reply), so only
        # the pairs whose comments differ are checked: the praised response wins each of them.
        mixed = [r for r in out.rows if r["comment_chosen"] != r["comment_rejected"]]
        assert mixed and all(r["comment_chosen"].startswith("A warm") for r in mixed)
    else:
        assert all(len(r["chosen"]) > len(r["rejected"]) for r in out.rows)
    if shape == "attributes":
        assert set(out.rows[0]["attributes_chosen"]) == set(criteria)


def flow_run_state(flow_run_id):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state


def label_in_a_flow(studio_cfg, start) -> tuple:
    """The labeler inside a Prefect task of a flow, as the cycle runs it. ``start(seen)`` starts what the
    people do, once the flow run's id is in ``seen['id']``. Returns (labels, seen)."""
    from prefect import flow, task
    from prefect.context import FlowRunContext

    seen: dict = {}

    @task
    def label_task():
        return run_labeler(label_cfg(), studio_cfg)

    @flow
    def labelling():
        seen["id"] = FlowRunContext.get().flow_run.id
        start(seen)
        return label_task()

    return labelling(), seen


@pytest.mark.servers
def test_prefect_flow_pauses_and_resumes_when_labelled(studio_cfg):
    states, crowd = [], []

    def paused(seen) -> bool:
        state = flow_run_state(seen["id"])
        states.append(state.type.value)
        return state.is_paused()

    def start(seen):
        crowd.append(People(studio_cfg, lambda i, d: longer_shown(d), ready=lambda: paused(seen)))
        crowd[0].start()

    out, _ = label_in_a_flow(studio_cfg, start)
    crowd[0].finish()
    assert crowd[0].error is None and "PAUSED" in states
    assert out.stats["outcome_complete"] == 1 and len(out.rows) == 6
    assert all(len(r["chosen"]) > len(r["rejected"]) for r in out.rows)
    assert out.tags["label.resume_note"] == "resumed by the label stage: complete"


@pytest.mark.servers
def test_label_studio_restarting_during_the_pause_is_waited_out(studio_cfg):
    # Label Studio goes away while the flow is paused for labels (its port refuses connections, open ones are
    # cut) and comes back: the watcher logs each failed check, backs off, keeps polling, and the labels people
    # gave meanwhile still arrive and resume the flow. Before, the first failed check killed the watcher thread
    # and the run stayed paused until Prefect's timeout.
    from urllib.parse import urlparse

    from servers import Proxy

    from tasks.label_studio_client import Studio

    real = urlparse(studio_cfg.url)
    proxy = Proxy((real.hostname, real.port))
    via_proxy = dataclasses.replace(studio_cfg, url=proxy.url)
    events: list = []

    def restart_and_label(seen):
        while not flow_run_state(seen["id"]).is_paused():
            time.sleep(0.3)
        proxy.down()
        events.append("down")
        studio = Studio(studio_cfg)                  # people reach the server by its own address meanwhile
        project = next(p for p in studio.client.projects.list() if p.title.startswith(studio_cfg.project_prefix))
        for t in studio.tasks(project.id):
            studio.annotate(t.id, longer_shown(t.data))
        time.sleep(3.0)                              # failed checks meanwhile (each with the SDK's own retries)
        proxy.up()
        events.append("up")

    try:
        out, _ = label_in_a_flow(via_proxy, lambda seen: threading.Thread(target=restart_and_label, args=(seen,),
                                                                          daemon=True).start())
    finally:
        proxy.down()
    assert events == ["down", "up"]
    assert out.stats["outcome_complete"] == 1 and len(out.rows) == 6 and out.stats["poll_failures"] >= 1
    assert out.tags["label.resume_note"] == "resumed by the label stage: complete"


def test_the_watcher_waits_out_transient_failures_and_stops_on_others():
    # progress() fails twice as a restarting server does, then answers: the wait goes on and completes, the
    # failures counted and logged. An error that is not transient (a refused token) ends the wait at once.
    from tasks.errors import TransientError
    from tasks.label_studio_client import LabelStudioUnavailable
    from tasks.labelers.waiting import _watch

    cfg = label_cfg(poll_s=0.01, timeout_s=30.0)
    answers = iter([TransientError("down"), TransientError("down"), (1, 2), (2, 2)])

    def progress():
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a

    said, counts = [], {}
    assert _watch(progress, 2, cfg, threading.Event(), said.append, counts=counts) == "complete"
    assert counts == {"failures": 2}
    # Backoff from min(poll_s, 5 s) = 0.01 s, doubling (tasks/retry.py): 0.01 s, then 0.02 s.
    assert [m for m in said if "checking again" in m] == ["label: down; checking again in 0.01 s (failure 1 in a row)",
                                                          "label: down; checking again in 0.02 s (failure 2 in a row)"]
    assert "label: the server answers again after 2 failed check(s)" in said

    def refused():
        raise LabelStudioUnavailable("refused the token")

    with pytest.raises(LabelStudioUnavailable):
        _watch(refused, 2, cfg, threading.Event(), said.append)


@pytest.mark.parametrize("shape", ["comparison", "likert", "attributes"])
def test_every_shape_passes_the_labels_suite(tmp_path, monkeypatch, shape):
    # What each shape writes into the labels table is what validate_labels (Great Expectations) accepts.
    from tasks.io import write_jsonl
    from tasks.validate import validate_labels_file

    rows = {"comparison": [{"prompt_id": "p1", "a": "apple", "b": "pear", "choice": c, "annotator": u}
                           for c, u in (("a", "u1"), ("a", "u2"), ("tie", "u3"))],
            "likert": [{"prompt_id": "p1", "response": r, "rating": v, "annotator": "u1"}
                       for r, v in (("apple", 5), ("pear", 2))],
            "attributes": [{"prompt_id": "p1", "response": r, "scores": {"helpfulness": v, "safety": 3},
                            "annotator": "u1"} for r, v in (("apple", 5), ("pear", 1))]}[shape]
    out = from_file(tmp_path, monkeypatch, rows, feedback=shape)
    write_jsonl(tmp_path / "labels.jsonl", out.rows)
    write_jsonl(tmp_path / "prompts.jsonl", [{"id": "p1", "prompt": PROMPTS["p1"], "split": "train"}])
    cfg = parse_params({}).validate
    assert validate_labels_file(cfg, tmp_path / "labels.jsonl", tmp_path / "prompts.jsonl",
                                tmp_path / "docs")["rows"] == 1


@pytest.mark.servers
def test_a_person_resumes_the_paused_flow_with_a_note(studio_cfg):
    # What the Prefect UI's Resume button does: resume_flow_run with the input form's values.
    from prefect.flow_runs import resume_flow_run

    from tasks.label_studio_client import Studio

    def half_then_resume(seen):
        while not flow_run_state(seen["id"]).is_paused():
            time.sleep(0.3)
        studio = Studio(studio_cfg)
        project = next(p for p in studio.client.projects.list() if p.title.startswith(studio_cfg.project_prefix))
        for t in studio.tasks(project.id)[:3]:
            studio.annotate(t.id, longer_shown(t.data))
        resume_flow_run(seen["id"], run_input={"note": "three are enough for today"})

    out, _ = label_in_a_flow(studio_cfg, lambda seen: threading.Thread(target=half_then_resume, args=(seen,),
                                                                         daemon=True).start())
    assert out.stats["outcome_resumed"] == 1 and out.stats["annotations"] == 3 and len(out.rows) == 3
    assert out.tags["label.resume_note"] == "three are enough for today"


@pytest.mark.servers
def test_label_studio_keeps_its_credentials_off_the_command_line_and_sign_up_closed(label_studio):
    """infra/label_studio.sh: the admin's password and token reach the server through its environment, which
    `ps` does not show other users; its data folder is the owner's alone; nobody who reaches the port can sign up
    and label."""
    import os
    import stat

    import httpx

    seen = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if b"label-studio" in cmdline or b"label_studio" in cmdline:
            seen += 1
            assert label_studio.password.encode() not in cmdline and label_studio.token.encode() not in cmdline
    assert seen
    assert stat.S_IMODE(label_studio.data.stat().st_mode) == 0o700
    with httpx.Client(base_url=label_studio.url, timeout=30) as web:
        web.get("/user/signup/")
        csrf = web.cookies.get("csrftoken")
        signup = web.post("/user/signup/", data={"csrfmiddlewaretoken": csrf, "email": "intruder@x.example",
                                                 "password": "intruder-pass-1", "how_find_us": "x"},
                          headers={"Referer": f"{label_studio.url}/user/signup/"})
    assert signup.status_code == 403, signup.text[:300]
    users = httpx.get(f"{label_studio.url}/api/users/", headers={"Authorization": f"Token {label_studio.token}"},
                      timeout=30).json()
    assert "intruder@x.example" not in {u["email"] for u in users}


def test_label_studio_sh_remakes_its_virtualenv_when_its_pinned_versions_change(tmp_path):
    """infra/label_studio.sh install: a virtualenv made from this version and constraints file is kept; one made
    from another file, from none, or by an older script (an empty mark) is made anew. PYTHON=false makes a new one
    fail at once, so a failure with "installing" shows that it began again."""
    import hashlib
    import os
    import subprocess

    from conftest import ROOT

    venv = tmp_path / "venv"
    pinned = hashlib.sha256((ROOT / "infra/label-studio-constraints.txt").read_bytes()).hexdigest()[:16]

    mine = {k: v for k, v in os.environ.items() if k not in ("LS_VERSION", "LS_CONSTRAINTS", "CDPATH")}

    def install(mark: str, **env):
        venv.mkdir(exist_ok=True)
        (venv / ".complete").write_text(mark)
        return subprocess.run(["bash", "infra/label_studio.sh", "install"], cwd=ROOT, capture_output=True,
                              text=True, env={**mine, "LS_VENV": str(venv), "PYTHON": "false", **env})

    kept = install(f"label-studio==1.23.2 constraints:{pinned}\n")
    assert kept.returncode == 0 and "installing" not in kept.stderr and venv.exists()
    for mark in ("label-studio==1.23.2 constraints:0123456789abcdef\n", "label-studio==1.23.2 constraints:none\n", ""):
        remade = install(mark)
        assert remade.returncode != 0 and "installing label-studio 1.23.2" in remade.stderr, mark
    assert install("label-studio==1.23.2 constraints:none\n", LS_CONSTRAINTS="").returncode == 0
    missing = install(f"label-studio==1.23.2 constraints:{pinned}\n", LS_CONSTRAINTS=str(tmp_path / "nope.txt"))
    assert missing.returncode != 0 and "LS_CONSTRAINTS: no file" in missing.stderr
    # Another version installs from pip's newest unless given constraints of its own: the pinned file is 1.23.2's.
    assert install("label-studio==1.24.0 constraints:none\n", LS_VERSION="1.24.0").returncode == 0
    # A CDPATH through which `cd infra` goes, printing where it went, does not garble the pinned file's path.
    assert install(f"label-studio==1.23.2 constraints:{pinned}\n", CDPATH=str(ROOT)).returncode == 0
