"""Labeler ``label_studio``: people label this cycle's generations in a Label Studio project.

1. **Project.** One project per stage and content: its title is
   ``<label_studio.project_prefix> label <hash of shape and tasks>``, so a rerun
   on the same generations reuses it. Its labeling config is the feedback
   shape's (:func:`labeling_config`) and its instructions are rendered from the
   task's rubric. ``label.overlap`` sets the share of tasks that two annotators
   see (Label Studio's overlap cohort).
2. **Tasks.** ``comparison``: one task per pair (``label.pairs``), showing
   *Response 1* and *Response 2* in an order drawn per task from ``label.seed``
   and the task's key; nothing in the task says which is which, and the order is
   undone on export by drawing it again. The other shapes: one task per
   response. Tasks already in the project (by key) are never imported again.
3. **Wait** (``tasks/labelers/waiting.py``): the Prefect flow pauses; ``dvc
   repro`` polls or stops, as ``label.wait`` says.
4. **Export.** Every submitted annotation (skipped ones are left out) becomes an
   annotation row with its annotator (``ls<user id>``), time, seconds spent and,
   for comparisons, the display order it saw (``shown_first``, ``shown_choice``);
   ``tasks/labelers/feedback.py`` converts them into the labels table, and the
   rows go to the stage's MLflow run as ``annotations.jsonl``.
"""

from __future__ import annotations

import hashlib
import html
import json

from tasks.errors import DataError
from tasks.label_studio_client import Studio
from tasks.labelers.feedback import human_labels
from tasks.labelers.judged import group_generations
from tasks.labelers.waiting import wait_for_people
from tasks.pairs import build_pairs
from tasks.prompting import as_messages
from tasks.rubric import load_rubric
from tasks.text import normalize

SHOWN = ("Response 1", "Response 2")


def labeling_config(shape: str, criteria: list[str]) -> str:
    """The Label Studio labeling config (XML) of a feedback shape."""
    head = '<View>\n  <Header value="Conversation"/>\n  <Text name="prompt" value="$prompt"/>\n'
    if shape == "comparison":
        return (head + f'  <Header value="{SHOWN[0]}"/>\n  <Text name="a" value="$a"/>\n'
                f'  <Header value="{SHOWN[1]}"/>\n  <Text name="b" value="$b"/>\n'
                '  <Header value="Which response is better?"/>\n'
                '  <Choices name="choice" toName="prompt" choice="single" required="true" showInline="true">\n'
                f'    <Choice value="{SHOWN[0]}"/>\n    <Choice value="{SHOWN[1]}"/>\n    <Choice value="Tie"/>\n'
                '  </Choices>\n</View>')
    body = head + '  <Header value="Response"/>\n  <Text name="response" value="$response"/>\n'
    if shape == "likert":
        return body + ('  <Header value="How good is the response? (1 = very bad, 5 = very good)"/>\n'
                       '  <Rating name="rating" toName="response" maxRating="5" required="true"/>\n</View>')
    if shape == "attributes":
        rows = "".join(f'  <Header value="{html.escape(c, quote=True)} (1-5)"/>\n'
                       f'  <Rating name="{html.escape(c, quote=True)}" toName="response" maxRating="5" '
                       'required="true"/>\n' for c in criteria)
        return body + rows + "</View>"
    return body + ('  <Header value="What do you think of the response?"/>\n'
                   '  <TextArea name="comment" toName="response" required="true" maxSubmissions="1" '
                   'rows="4"/>\n</View>')


def instructions(rubric, shape: str) -> str:
    """HTML instructions from the rubric: what 'better' means for this task."""
    ask = {"comparison": "Pick the better response, or Tie when neither is better.",
           "likert": "Rate the response from 1 (very bad) to 5 (very good).",
           "attributes": "Rate the response from 1 to 5 on each criterion.",
           "comment": "Say in a few words what is good or bad about the response."}[shape]
    items = "".join(f"<li><b>{html.escape(c.name)}</b> (weight {c.weight:g}): {html.escape(c.description)}</li>"
                    for c in rubric.criteria)
    intro = f"<p>{html.escape(rubric.instructions)}</p>" if rubric.instructions.strip() else ""
    return f"<h3>{html.escape(rubric.name)}</h3>{intro}<p>{ask}</p><ul>{items}</ul>"


def render_prompt(prompt) -> str:
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in as_messages(prompt))


def swapped(seed: int, key: str) -> bool:
    """Whether a comparison task shows its pair's B first: a fair coin drawn from the seed and the key."""
    return hashlib.sha256(f"{seed}:{key}".encode()).digest()[0] & 1 == 1


def _key(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:16]


def build_tasks(shape: str, groups, prompts: dict, cfg) -> tuple[list[dict], dict, dict]:
    """(Label Studio task data, key -> what the task stands for, counters) from grouped generations."""
    import random

    rng = random.Random(cfg.seed)
    tasks, meaning, empty, identical = [], {}, 0, 0
    for pid, group in groups.items():
        shown = render_prompt(prompts[pid])
        if shape == "comparison":
            for i, j in build_pairs(cfg.pairs, [0.0] * len(group), n_random=cfg.random_pairs_per_prompt, rng=rng):
                a, b = group[i], group[j]
                if not a["response"].strip() or not b["response"].strip():
                    empty += 1
                    continue
                if normalize(a["response"]) == normalize(b["response"]):
                    identical += 1
                    continue
                key = _key(pid, a["response_id"], b["response_id"])
                first, second = (b, a) if swapped(cfg.seed, key) else (a, b)
                tasks.append({"key": key, "prompt": shown, "a": first["response"], "b": second["response"]})
                meaning[key] = {"prompt_id": pid, "a_id": a["response_id"], "b_id": b["response_id"],
                                "a": a["response"], "b": b["response"]}
        else:
            for g in group:
                if not g["response"].strip():
                    empty += 1
                    continue
                key = _key(pid, g["response_id"])
                tasks.append({"key": key, "prompt": shown, "response": g["response"]})
                meaning[key] = {"prompt_id": pid, "response_id": g["response_id"], "response": g["response"]}
    if cfg.max_tasks is not None and len(tasks) > cfg.max_tasks:
        tasks = random.Random(cfg.seed).sample(tasks, cfg.max_tasks)
        meaning = {t["key"]: meaning[t["key"]] for t in tasks}
    return tasks, meaning, {"tasks": len(tasks), "skipped_empty": empty, "skipped_identical": identical}


def allowed_annotations(annotations: list, allowed: set | None) -> list:
    """The annotations by the allowed accounts (their Label Studio user ids); all of them when ``allowed`` is
    None (no ``label_studio.annotators`` list)."""
    return list(annotations) if allowed is None else [a for a in annotations if a.get("completed_by") in allowed]


def annotation_rows(shape: str, states, meaning: dict, seed: int, criteria: list[str],
                    allowed: set | None = None) -> tuple[list[dict], int]:
    """Annotation rows (the file format of ``tasks/labelers/feedback.py``) from exported tasks; display order
    undone; only the ``allowed`` accounts' annotations (None: everyone's). Returns (rows, skipped annotations)."""
    rows, skipped = [], 0
    for t in states:
        m = meaning.get(t.key)
        if m is None:
            continue
        for ann in allowed_annotations(t.annotations, allowed):
            if ann.get("was_cancelled"):
                skipped += 1
                continue
            by_name = {r.get("from_name"): r.get("value", {}) for r in ann.get("result") or []}
            row = {"prompt_id": m["prompt_id"], "annotator": f"ls{ann.get('completed_by')}",
                   "at": str(ann.get("created_at") or ""), "seconds": ann.get("lead_time")}
            if shape == "comparison":
                picked = (by_name.get("choice", {}).get("choices") or [None])[0]
                if picked not in (*SHOWN, "Tie"):
                    skipped += 1
                    continue
                flip = swapped(seed, t.key)
                choice = "tie" if picked == "Tie" else ("a" if (picked == SHOWN[0]) != flip else "b")
                row.update(a=m["a"], b=m["b"], a_id=m["a_id"], b_id=m["b_id"], choice=choice,
                           shown_first="b" if flip else "a", shown_choice=picked)
            else:
                row.update(response=m["response"], response_id=m["response_id"])
                if shape == "likert":
                    row["rating"] = by_name.get("rating", {}).get("rating")
                elif shape == "attributes":
                    row["scores"] = {c: by_name[c]["rating"] for c in criteria if "rating" in by_name.get(c, {})}
                else:
                    row["comment"] = " ".join(by_name.get("comment", {}).get("text") or [])
            rows.append(row)
    return rows, skipped


def run_project(stage: str, shape: str, tasks: list[dict], meaning: dict, cfg, studio_cfg, rubric,
                log=print) -> tuple[list[dict], dict]:
    """Make or reuse the project, import what is missing, wait for people, export: (annotation rows, stats)."""

    studio = Studio(studio_cfg)
    studio.check()
    criteria = [c.name for c in rubric.criteria]
    digest = _key(shape, json.dumps(sorted(tasks, key=lambda t: t["key"]), sort_keys=True))[:10]
    title = f"{studio_cfg.project_prefix} {stage} {shape} {digest}"
    if cfg.min_annotations_per_task >= 2:
        maximum, overlap = cfg.min_annotations_per_task, 100
    else:
        maximum, overlap = (2, round(cfg.overlap * 100)) if cfg.overlap > 0 else (1, 100)
    project = studio.project(title, labeling_config(shape, criteria), instructions(rubric, shape), maximum, overlap)
    imported, existing = studio.sync(project, tasks)
    where = studio.url_of(project)
    log(f"{stage}: Label Studio project {title!r} ({where}): {imported} tasks imported, {existing} already there")

    names = studio_cfg.annotators
    if names is not None:
        known = studio.user_ids(names)
        missing = [n for n in names if n.lower() not in {e.lower() for e in known.values()}]
        if missing:
            log(f"{stage}: label_studio.annotators: no Label Studio account has the e-mail {', '.join(missing)} "
                "(yet): their annotations count once the admin creates it")

    def allowed() -> set | None:
        # Listed each time: an account the admin creates during the wait counts from then on.
        return None if names is None else set(studio.user_ids(names))

    def progress():
        states = [s for s in studio.tasks(project) if s.key in meaning]
        ids = allowed()
        # With an allow-list, a task is done when Label Studio says so and an allowed account labelled it.
        return sum(s.is_labeled and bool(allowed_annotations(s.annotations, ids)) for s in states), len(states)

    waited = wait_for_people(progress, cfg, where, log)
    states = [s for s in studio.tasks(project) if s.key in meaning]
    ids = allowed()
    rows, skipped = annotation_rows(shape, states, meaning, cfg.seed, criteria, ids)
    ignored = sum(len(s.annotations) - len(allowed_annotations(s.annotations, ids)) for s in states)
    if ignored:
        log(f"{stage}: ignored {ignored} annotation(s) by accounts not in label_studio.annotators")
    done, total = progress()
    stats = {"project_id": project, "tasks": total, "tasks_imported": imported, "tasks_reused": existing,
             "tasks_done": done, "annotations": len(rows), "annotations_skipped": skipped,
             "annotations_not_allowed": ignored, "poll_failures": waited.get("failures", 0),
             "waited_s": waited["waited_s"], f"outcome_{waited['outcome']}": 1}
    if not rows:
        raise DataError(where, "at least one submitted annotation",
                        detail=f"nobody labelled in Label Studio ({waited['outcome']} after "
                               f"{waited['waited_s']:.0f} s); nothing downstream runs on zero labels")
    return rows, {**stats, "outcome": waited["outcome"], "note": waited["note"], "title": title}


def label_in_studio(cfg, ctx, prompts: dict, generations: list[dict], rows: dict | None = None):
    """The labeler: people's feedback from a Label Studio project, converted into the labels table."""

    rubric = load_rubric(ctx.task.rubric)
    tasks, meaning, built = build_tasks(cfg.feedback, group_generations(generations), prompts, cfg)
    if not tasks:
        raise DataError("data/generations.jsonl", "at least one response to label",
                        detail=f"no task could be built ({built})")
    rows, stats = run_project("label", cfg.feedback, tasks, meaning, cfg, ctx.studio, rubric)
    note, outcome, title = stats.pop("note"), stats.pop("outcome"), stats.pop("title")
    labels = human_labels(rows, f"Label Studio project {title!r}", cfg, ctx, prompts, {**built, **stats})
    return labels._replace(tags={"label.outcome": outcome, "label.project": title, "label.resume_note": note})
