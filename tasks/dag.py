"""Views of the stage manifest (``tasks/manifest.py``): ``dvc.yaml`` itself (``rft dvc-yaml``), ``rft dag`` for
people, and what ``rft clean`` removes.

``dvc dag`` draws the same graph, but with every code dependency as a node it is about 260 columns wide. Here
each stage is one entry, in the order a cycle runs them: the data it reads (code and params left out: those
are in ``dvc.yaml``) and what it writes, wrapped to a terminal's width.
"""

from __future__ import annotations

import textwrap

import yaml

from tasks.manifest import MANIFEST, PLOTS, Stage, dvc_stage
from tasks.paths import CHECKPOINTS, DVC_LOCK, REPORTS

# What the pipeline writes besides the stages' declared outputs: its stores and scratch folders.
STORES = ("mlruns.db", "mlartifacts", str(CHECKPOINTS.parent), str(REPORTS), str(DVC_LOCK))
CODE = ("tasks/", "metrics")         # the project's code, and the evaluate library's metric modules


def data_inputs(stage: Stage) -> list[str]:
    """The data a stage reads: its dependencies less the project's code."""
    return [d for d in stage.deps if not d.startswith(CODE)]


def outputs(stage: Stage) -> list[str]:
    return [*stage.outs, *stage.reports, *stage.metrics, *stage.docs, *stage.plots]


def lines(width: int = 100) -> list[str]:
    """``rft dag``: one entry per stage, ``N name  reads -> writes``, no line wider than ``width``."""
    name_w = max(len(s.name) for s in MANIFEST) + 5
    out = [f"{'stage':<{name_w}}reads -> writes   (code and params dependencies: dvc.yaml)"]
    for i, stage in enumerate(MANIFEST, 1):
        text = f"{', '.join(data_inputs(stage)) or '(nothing)'} -> {', '.join(outputs(stage)) or '(nothing)'}"
        wrapped = textwrap.wrap(text, width - name_w, break_on_hyphens=False) or [""]
        out.append(f"{i:>2} {stage.name:<{name_w - 3}}{wrapped[0]}")
        out.extend(" " * name_w + more for more in wrapped[1:])
    return out


def stores(tracking) -> set[str]:
    """The local MLflow store that ``tracking`` (params' section) names inside the project: its SQLite file (and
    SQLite's journal files) and a relative artifact folder. A server or an absolute path is not the project's."""
    found = set()
    uri, prefix = tracking.uri, "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        db = uri[len(prefix):]
        found |= {db, f"{db}-journal", f"{db}-wal", f"{db}-shm"}
    if "://" not in tracking.artifact_location and not tracking.artifact_location.startswith("/"):
        found.add(tracking.artifact_location)
    return found


def written(tracking=None) -> list[str]:
    """Every path the pipeline writes (the stages' outputs, its stores and scratch folders, the MLflow store
    ``tracking`` names): what ``rft clean`` removes. The user's own files (``data/incoming``, ``params.yaml``, the
    code) are none of them."""
    paths = {p for s in MANIFEST for p in outputs(s)} | set(STORES) | (stores(tracking) if tracking else set())
    # A file under a folder that is removed whole is not listed twice.
    return sorted(p for p in paths if not any(p.startswith(q.rstrip("/") + "/") for q in paths if q != p))


DVC_YAML = "dvc.yaml"
HEADER = """\
# Written by `rft dvc-yaml > dvc.yaml` from the stage manifest (tasks/manifest.py); do not edit by hand.
# `rft dvc-yaml --check` (run by the test suite) fails when the two differ. Each cmd runs the same stage
# function (tasks/stages/<stage>.py) that the Prefect flow (flows/cycle.py) runs; deps, params and outs
# name exactly what the function reads and writes.
"""


def _dump(value) -> str:
    return yaml.safe_dump(value, sort_keys=False, default_flow_style=False, width=120)


def dvc_yaml() -> str:
    """The ``dvc.yaml`` the manifest implies: the plots, then one entry per stage in the order a cycle runs them."""
    out = [HEADER, _dump({"plots": list(PLOTS)}), "\nstages:\n"]
    blocks = [textwrap.indent(_dump({stage.name: dvc_stage(stage)}), "  ") for stage in MANIFEST]
    out.append("\n".join(blocks))
    return "".join(out)


def check_dvc_yaml(path: str = DVC_YAML) -> str | None:
    """None when ``path`` is what the manifest implies; else what differs, first line first."""
    try:
        have = open(path, encoding="utf-8").read()
    except FileNotFoundError:
        return f"{path}: not found (write it with `rft dvc-yaml > {path}`)"
    want = dvc_yaml()
    if have == want:
        return None
    for i, (a, b) in enumerate(zip(have.splitlines(), want.splitlines()), 1):
        if a != b:
            return f"{path}: line {i} is {a!r}, the manifest implies {b!r} (rewrite it with `rft dvc-yaml > {path}`)"
    return (f"{path}: {len(have.splitlines())} lines, the manifest implies {len(want.splitlines())} (rewrite it "
            f"with `rft dvc-yaml > {path}`)")

