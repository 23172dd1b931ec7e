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


MAX_LINE_BYTES = 1 << 20     # a JSONL row longer than 1 MiB is refused, read no further than that

_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def _lines(path: Path, fh):
    """(line number, text) of each line: UTF-8, or the encoding that a byte-order mark declares (UTF-8 with a
    BOM, UTF-16). A line over ``MAX_LINE_BYTES`` or bytes that do not decode stop with a DataError naming
    the line; nothing longer than the limit is ever held."""
    import io

    head = fh.read(4)
    fh.seek(0)
    encoding = next((enc for bom, enc in _BOMS if head.startswith(bom)), None)
    if encoding == "utf-16":
        text = io.TextIOWrapper(fh, encoding="utf-16", newline=None)
        for lineno, line in enumerate(iter(lambda: text.readline(MAX_LINE_BYTES // 2 + 1), ""), start=1):
            if len(line) > MAX_LINE_BYTES // 2 and not line.endswith("\n"):
                raise DataError(path, f"a line at most {MAX_LINE_BYTES >> 20} MiB",
                                rows=[(lineno, f"over {MAX_LINE_BYTES // 2} characters")],
                                detail=f"line {lineno} is longer")
            yield lineno, line
        return
    if encoding:
        fh.read(3)
    for lineno, raw in enumerate(iter(lambda: fh.readline(MAX_LINE_BYTES + 1), b""), start=1):
        if len(raw) > MAX_LINE_BYTES:
            raise DataError(path, f"a line at most {MAX_LINE_BYTES >> 20} MiB",
                            rows=[(lineno, f"over {MAX_LINE_BYTES} bytes")],
                            detail=f"line {lineno} is longer; split the row or shorten its text")
        try:
            yield lineno, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = raw[exc.start:exc.start + 4]
            raise DataError(path, "UTF-8 text (or UTF-16 / UTF-8 with a byte-order mark)",
                            rows=[(lineno, f"byte {exc.start + 1}: {bad!r}")],
                            detail=f"line {lineno} is not UTF-8 (Latin-1 or Windows-1252 bytes?); save the file as "
                                   "UTF-8") from None


def iter_jsonl(path: str | Path):
    """Stream the rows of a JSONL file, one dict at a time. CRLF line ends and blank lines are fine. A
    missing path, a folder, a pretty-printed JSON array, a bad line or a line that is not an object stops
    with a DataError naming the file, the line and the rule, and where in the line the parser stopped: never the
    line's text, which the message carries to the console, MLflow and Prefect's logs (a file dropped by others can
    hold anything)."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file exists", detail="no such file")
    if path.is_dir():
        raise DataError(path, "a JSONL file", detail="a folder where a file is expected")
    with path.open("rb") as fh:
        for lineno, line in _lines(path, fh):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except RecursionError:
                # Python's parser recurses once per level: a line of 10,000 '[' raises RecursionError, which is no
                # ValueError and would escape as a traceback.
                raise DataError(path, "valid JSON line", rows=[(lineno, f"{len(line.strip())} characters")],
                                detail=f"line {lineno} nests arrays or objects deeper than the JSON parser "
                                       "reads") from None
            except json.JSONDecodeError as exc:
                if lineno == 1 and line.strip().startswith("["):
                    raise DataError(path, "one JSON object per line (JSON Lines)",
                                    rows=[(1, f"{exc.msg} at column {exc.colno}")],
                                    detail="the file looks like a JSON array; write one object per line "
                                           "(e.g. jq -c '.[]' file.json > file.jsonl)") from None
                raise DataError(path, "valid JSON line", rows=[(lineno, f"{exc.msg} at column {exc.colno}")],
                                detail=f"line {lineno} is not valid JSON") from None
            if not isinstance(row, dict):
                kinds = {"str": "string", "int": "number", "float": "number", "bool": "boolean", "NoneType": "null"}
                what = "a JSON array (a whole file's rows on one line?)" if isinstance(row, list) else \
                    f"a JSON {kinds[type(row).__name__]}"
                raise DataError(path, "one JSON object per line", rows=[(lineno, what)],
                                detail=f"line {lineno} is {what}, not an object")
            yield row


def read_jsonl(path: str | Path, *, allow_empty: bool = False) -> list[dict]:
    """Read a JSONL file (``iter_jsonl``); an empty file (unless ``allow_empty``) is a DataError too."""
    rows = list(iter_jsonl(path))
    if not rows and not allow_empty:
        raise DataError(path, "non-empty file", detail="the file holds no rows")
    return rows


def aside_of(path: Path) -> Path:
    """Where ``atomic_path`` moves an old folder while the new one is renamed in."""
    return path.parent / f".{path.name}.aside"


def recover(path: str | Path) -> str | None:
    """Finish a folder swap that a crash cut short; returns what was done (None: nothing to do).

    ``atomic_path`` swaps a folder in three steps: the old folder is renamed aside, the new one renamed in,
    the old one deleted. Killed after the first step, ``path`` is missing and its aside copy is restored;
    killed after the second, the aside copy is the old folder and is deleted.
    """
    path = Path(path)
    aside = aside_of(path)
    if not aside.exists():
        return None
    if path.exists():
        shutil.rmtree(aside, ignore_errors=True)
        return f"removed the old {path} left aside by an interrupted swap"
    os.replace(aside, path)
    return f"restored {path} from {aside.name}, left aside by an interrupted swap"


def recover_all(*folders: str | Path, who: str = "rft") -> list[str]:
    """``recover`` every interrupted swap in ``folders`` (e.g. models/, data/); what was done, one line each,
    also printed to stderr after ``who``."""
    import sys

    done = []
    for folder in dict.fromkeys(map(Path, folders)):
        for aside in sorted(folder.glob(".*.aside")) if folder.is_dir() else []:
            note = recover(folder / aside.name[1:-len(".aside")])
            if note:
                print(f"{who}: {note}", file=sys.stderr, flush=True)
                done.append(note)
        # The temporary folders of writers that died (atomic_path names them .<name>.<pid>.<random>).
        for tmp in folder.glob(".*.*.*") if folder.is_dir() else []:
            pid = tmp.name.rsplit(".", 2)[-2]
            if tmp.is_dir() and pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(tmp, ignore_errors=True)
                done.append(f"removed {tmp}, the temporary folder of a writer that died")
                print(f"{who}: {done[-1]}", file=sys.stderr, flush=True)
    return done


def scratch_dir(kind: str) -> Path:
    """A new temporary folder ``rft-<kind>-<pid>-<random>`` for a trainer's scratch files; the caller removes
    it, and ``clean_scratch`` removes those of processes that died before they could."""
    return Path(tempfile.mkdtemp(prefix=f"rft-{kind}-{os.getpid()}-"))


def clean_scratch() -> list[str]:
    """Remove the scratch folders (``scratch_dir``) that processes killed mid-training left behind."""
    done = []
    for tmp in Path(tempfile.gettempdir()).glob("rft-*-*-*"):
        parts = tmp.name.split("-")
        pid = parts[-2] if len(parts) >= 4 else ""
        if tmp.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            done.append(str(tmp))
    return done


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def atomic_path(path: str | Path, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path; on success move it to ``path``, on error remove it.

    A file is replaced in one atomic rename. A folder cannot be, so the old one is renamed aside first and
    deleted last: at every instant either ``path`` or its aside copy is whole (``recover`` finishes the swap
    after a crash).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", dir=path.parent))
    target = tmp if is_dir else tmp / path.name
    try:
        try:
            yield target
        except OSError as exc:
            if exc.filename is None and exc.errno is not None:    # a failed write() names no file: name the output
                raise OSError(exc.errno, exc.strerror, str(path)) from exc
            raise
        # On disk before the rename: a power loss after it must find the new content, not an empty file
        # (the rename survives a killed process without this, not a power loss).
        fsync_tree(target)
        if path.is_dir() and not path.is_symlink():
            aside = aside_of(path)
            os.replace(path, aside)
            os.replace(target, path)
            fsync_dir(path.parent)              # the new folder's name on disk before the old one goes
            shutil.rmtree(aside)
        else:
            if path.is_symlink():
                path.unlink()
            os.replace(target, path)            # atomic: readers see the old file or the new one
            fsync_dir(path.parent)              # the rename itself on disk
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def fsync_file(path: str | Path) -> None:
    """Flush a file's content to the disk (``fsync``)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (the names a rename or a new file changed) to the disk. A file system that cannot
    fsync a folder (some network ones) is left as it is."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(path: str | Path) -> None:
    """``fsync`` a file, or every file and folder under a folder (a model folder before it is swapped in)."""
    path = Path(path)
    if not path.is_dir():
        fsync_file(path)
        return
    for root, _dirs, files in os.walk(path):
        for name in files:
            if not os.path.islink(os.path.join(root, name)):
                fsync_file(os.path.join(root, name))
        fsync_dir(root)


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
