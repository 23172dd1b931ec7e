"""A project that moved: MLflow's local store keeps absolute paths, rewritten here to the project's new place.

MLflow resolves a local artifact location to an absolute ``file://`` URI when it creates the experiment, and
every run, logged model and registry version after it inherits that prefix (``runs.artifact_uri``,
``logged_models.artifact_location``, ``model_versions.storage_location``, dataset sources, the ``artifact_path``
of each ``MLmodel`` file). A project cloned to a new disk, renamed, copied or restored from a backup would load
its models and open its artifacts from the old folder, and lose them once that folder is gone.

The project's own default (an SQLite ``tracking.uri`` and a relative ``tracking.artifact_location``) names
places inside the project, so the old place is known: the experiment's stored location minus the relative
``artifact_location``. When it differs from where the project is now, every text value in the store that
names a path under the old root is rewritten to the new root, in one SQLite transaction, and then the
``artifact_path`` line of the ``MLmodel`` files. Only a store inside the project is moved: one elsewhere may be
shared by other clones. ``tracking.setup`` does this before MLflow opens the store, so every ``rft`` command
that opens it does it; ``rft relocate`` does only that, for a project read with MLflow alone.

A tracking server, a URI artifact store or an absolute ``artifact_location`` is the user's own: left alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlparse

from tasks.errors import StoreError

SQLITE = "sqlite:///"


def old_root(stored: str, artifact_location: str, here: Path) -> Path | None:
    """The project root that ``stored`` (the experiment's artifact location as the store keeps it) was made in,
    when it is the project's relative ``artifact_location`` resolved in another folder than ``here``; else
    None (the project has not moved, or the location is not the project's own)."""
    rel = Path(artifact_location)
    if "://" in artifact_location or rel.is_absolute() or not stored:
        return None
    path = Path(unquote(urlparse(stored).path)) if stored.startswith("file:") else Path(stored)
    if not path.is_absolute() or path.parts[-len(rel.parts):] != rel.parts:
        return None
    root = Path(*path.parts[:-len(rel.parts)])
    return None if root == here else root


def rewrite(text: str, old: Path, new: Path) -> str:
    """``text`` with each path under ``old`` moved under ``new``: percent-encoded in a ``file://`` URI, plain
    elsewhere. A path starts the text or follows a quote, a space or one of ``[(,=:``, and ``old`` must end at a
    ``/``, a quote or the end of the text: ``/x/old/...``, ``/old2/...`` or ``/old x/...`` are other paths."""
    end = r"(?=/|$|[\"'])"
    enc_old, enc_new = old.as_uri()[len("file://"):], new.as_uri()[len("file://"):]
    text = re.sub("file://" + re.escape(enc_old) + end, lambda _m: "file://" + enc_new, text)
    return re.sub(r"(?<![^\"'\s\[(,=:])" + re.escape(str(old)) + end, lambda _m: str(new), text)


def relocate(uri: str, experiment: str, artifact_location: str, here: Path | None = None) -> dict | None:
    """Rewrite the SQLite store at ``uri`` (and the ``MLmodel`` files under the artifact root) when the project
    moved; return ``{"from", "to", "values", "files"}``, or None when there was nothing to do."""
    if not uri.startswith(SQLITE):
        return None
    db_path = Path(uri[len(SQLITE):])
    if not db_path.is_file() or db_path.stat().st_size == 0:
        return None
    here = (here or Path.cwd()).resolve()
    if not db_path.resolve().is_relative_to(here):
        return None          # a store outside the project (shared by several clones, say) is not the project's own
    try:
        return _relocate(db_path, experiment, artifact_location, here)
    except sqlite3.Error as exc:
        raise StoreError(f"{db_path}: the project moved, but its MLflow store could not be pointed at "
                         f"{here} ({exc}); nothing was changed. Stop what holds the store (mlflow ui, another "
                         "rft command) and run `rft relocate`") from None


def _relocate(db_path: Path, experiment: str, artifact_location: str, here: Path) -> dict | None:
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        tables = {t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "experiments" not in tables:
            return None
        row = db.execute("SELECT artifact_location FROM experiments WHERE name = ?", (experiment,)).fetchone()
        old = old_root(row[0], artifact_location, here) if row else None
        if old is None:
            return None
        values = 0
        like = f"%{str(old)}%"
        encoded = f"%{old.as_uri()[len('file://'):]}%"
        with db:                                   # one transaction: the whole store moves, or none of it
            for table in sorted(tables):
                columns = [c[1] for c in db.execute(f'PRAGMA table_info("{table}")')
                           if not c[2] or any(t in c[2].upper() for t in ("CHAR", "TEXT", "CLOB"))]
                for col in columns:
                    rows = db.execute(f'SELECT rowid, "{col}" FROM "{table}" WHERE "{col}" LIKE ? OR "{col}" LIKE ?',
                                      (like, encoded)).fetchall()
                    for rowid, value in rows:
                        moved = rewrite(value, old, here)
                        if moved != value:
                            db.execute(f'UPDATE "{table}" SET "{col}" = ? WHERE rowid = ?', (moved, rowid))
                            values += 1
    # The store has moved (a second call finds nothing to do); then the MLmodel files, whose artifact_path is
    # a record only (MLflow loads by the store's paths): each replaced whole, so none is left half written.
    files = 0
    artifacts = here / artifact_location
    for mlmodel in (artifacts.rglob("MLmodel") if artifacts.is_dir() else []):
        text = mlmodel.read_text(encoding="utf-8")
        moved = rewrite(text, old, here)
        if moved != text:
            tmp = mlmodel.with_name(mlmodel.name + ".relocating")
            tmp.write_text(moved, encoding="utf-8")
            os.replace(tmp, mlmodel)
            files += 1
    return {"from": str(old), "to": str(here), "values": values, "files": files}


def say(report: dict | None) -> str:
    if not report:
        return ("MLflow store: nothing to rewrite (the project has not moved, or its store is not a local SQLite "
                "file inside the project with a relative tracking.artifact_location)")
    return (f"MLflow store: the project moved from {report['from']} to {report['to']}; {report['values']} stored "
            f"path(s) and {report['files']} MLmodel file(s) now point here")
