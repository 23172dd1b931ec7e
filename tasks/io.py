"""Reading and writing artifacts: JSONL tables, JSON files and folders, always atomically.

A stage writes to a temporary sibling and renames it into place, so a crash
never leaves a half-written output that a later stage (or DVC) would pick up.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from tasks.errors import DataError


def read_jsonl(path: str | Path, *, allow_empty: bool = False) -> list[dict]:
    """Read a JSONL file; a missing file, an empty file (unless ``allow_empty``) or a bad line is a DataError
    naming the line."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file exists", detail="no such file")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(path, "valid JSON line", rows=[(lineno, f"{exc.msg}: {line.strip()[:80]!r}")],
                                detail=f"line {lineno} is not valid JSON") from None
            if not isinstance(row, dict):
                raise DataError(path, "one JSON object per line",
                                rows=[(lineno, line.strip()[:80])], detail=f"line {lineno} is not an object")
            rows.append(row)
    if not rows and not allow_empty:
        raise DataError(path, "non-empty file", detail="the file holds no rows")
    return rows


@contextlib.contextmanager
def atomic_path(path: str | Path, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path; on success move it to ``path``, on error remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    target = tmp if is_dir else tmp / path.name
    try:
        yield target
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        os.replace(target, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_json(path: str | Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def file_md5(path: str | Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# The MLflow run that wrote a model folder: recorded beside the weights in a file that .dvcignore lists, so
# the folder's DVC hash stays a function of its content. (Registry versions stay in the hashed metadata:
# a model registered again with the same content gets the same version, so a reproduction against the same
# registry gets the same hash.)
REGISTRY_FILE = "rft_registry.json"
REGISTRY_KEYS = ("run_id",)


def read_registry(folder: str | Path) -> dict:
    path = Path(folder) / REGISTRY_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def write_meta_files(folder: str | Path, meta_name: str, meta: dict) -> None:
    """Write ``meta`` into the folder's ``meta_name`` and its registry keys into ``REGISTRY_FILE``."""
    folder = Path(folder)
    registry = {k: meta[k] for k in REGISTRY_KEYS if k in meta}
    rest = {k: v for k, v in meta.items() if k not in REGISTRY_KEYS}
    (folder / meta_name).write_text(json.dumps(rest, indent=2, sort_keys=True) + "\n")
    if registry:
        (folder / REGISTRY_FILE).write_text(json.dumps(registry, indent=2, sort_keys=True) + "\n")
    else:
        (folder / REGISTRY_FILE).unlink(missing_ok=True)


def dvc_md5(path: str | Path) -> str:
    """The hash DVC 3 records for a file or a folder (``<md5>.dir`` for folders).

    A file's hash is the md5 of its bytes. A folder's is the md5 of the JSON list
    of ``{"md5", "relpath"}`` entries sorted by relpath, with ``.dir`` appended;
    the same rule as ``dvc_data.hashfile.tree.Tree.digest``. ``REGISTRY_FILE`` is skipped, as
    ``.dvcignore`` tells DVC to skip it.
    """
    path = Path(path)
    if path.is_file():
        return file_md5(path)
    entries = sorted(
        ({"md5": file_md5(p), "relpath": p.relative_to(path).as_posix()}
         for p in path.rglob("*") if p.is_file() and p.name != REGISTRY_FILE),
        key=lambda e: e["relpath"],
    )
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"
