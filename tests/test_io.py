"""Artifacts are written atomically; DVC-compatible hashes."""

import hashlib
import json

import pytest

from tasks.io import atomic_path, dvc_md5, read_jsonl, write_jsonl


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.jsonl"
    write_jsonl(target, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(target, rows())
    # The old file is intact and no temporary file is left beside it.
    assert read_jsonl(target) == [{"a": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_atomic_dir_replaces_whole(tmp_path):
    d = tmp_path / "model"
    with atomic_path(d, is_dir=True) as tmp:
        (tmp / "a.bin").write_bytes(b"1")
    with atomic_path(d, is_dir=True) as tmp:
        (tmp / "b.bin").write_bytes(b"2")
    assert sorted(p.name for p in d.iterdir()) == ["b.bin"]


def test_dvc_md5_file_and_dir(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "x.txt").write_bytes(b"hello\n")
    (tmp_path / "d" / "sub" / "y.txt").write_bytes(b"world\n")
    # A file's DVC 3 hash is the md5 of its bytes.
    assert dvc_md5(tmp_path / "d" / "x.txt") == hashlib.md5(b"hello\n").hexdigest()
    # A folder's: md5 of the sorted [{"md5", "relpath"}] JSON list, plus ".dir".
    entries = [{"md5": hashlib.md5(b"world\n").hexdigest(), "relpath": "sub/y.txt"},
               {"md5": hashlib.md5(b"hello\n").hexdigest(), "relpath": "x.txt"}]
    assert dvc_md5(tmp_path / "d") == hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def test_dvc_md5_matches_dvc_itself(tmp_path):
    # The lineage tags must be the hashes DVC records, so compare against dvc's own hashing.
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs import LocalFileSystem

    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.json").write_text('{"x": 1}\n')
    (tmp_path / "d" / "sub" / "b.bin").write_bytes(bytes(range(256)))
    fs = LocalFileSystem()
    odb = HashFileDB(fs, str(tmp_path / "cache"))
    _, _, obj = build(odb, str(tmp_path / "d"), fs, "md5")
    assert dvc_md5(tmp_path / "d") == obj.hash_info.value


_SWAP = """
import os, signal, sys
from pathlib import Path
from tasks import io

real, calls = os.replace, []


def replace(a, b):
    real(a, b)
    calls.append((a, b))
    if len(calls) == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)      # the process dies right after this rename


io.os.replace = replace
with io.atomic_path(sys.argv[1], is_dir=True) as tmp:
    tmp.joinpath("weights").write_text("new")
"""


@pytest.mark.parametrize("killed_after, kept", [
    (1, "old"),     # the old folder renamed aside, the new one not yet in: the aside copy is restored
    (2, "new"),     # the new one renamed in, the old one not yet deleted: the aside copy is deleted
])
def test_a_folder_swap_killed_between_its_renames_recovers_whole(tmp_path, killed_after, kept):
    import signal
    import subprocess
    import sys

    from tasks.io import aside_of, atomic_path, recover_all

    champion = tmp_path / "models" / "champion"
    champion.mkdir(parents=True)
    (champion / "weights").write_text("old")
    out = subprocess.run([sys.executable, "-c", _SWAP, str(champion), str(killed_after)], capture_output=True)
    assert out.returncode == -signal.SIGKILL
    aside = aside_of(champion)
    assert aside.is_dir() and (aside / "weights").read_text() == "old"          # left mid-swap
    assert champion.exists() == (killed_after == 2)
    notes = recover_all(tmp_path / "models")
    # The swap finished one way or the other, and the dead writer's temporary folder is gone (after the second
    # rename it had become the new folder).
    assert ("restored" if kept == "old" else "removed the old") in notes[0]
    assert len(notes) == (2 if kept == "old" else 1)
    assert all("the temporary folder of a writer that died" in n for n in notes[1:])
    assert (champion / "weights").read_text() == kept and not aside.exists()
    assert recover_all(tmp_path / "models") == []                                # nothing left to do
    # A swap that finishes leaves neither an aside copy nor a temporary folder.
    with atomic_path(champion, is_dir=True) as tmp:
        (tmp / "weights").write_text("newer")
    assert [p.name for p in champion.parent.iterdir()] == ["champion"]
    assert (champion / "weights").read_text() == "newer"


ROW = {"id": "a", "prompt": "Un café à Zürich, s'il vous plaît."}


@pytest.mark.parametrize("name, data", [
    ("utf-8", (json.dumps(ROW, ensure_ascii=False) + "\n").encode("utf-8")),
    # Windows tools write a byte-order mark first: it declares UTF-8.
    ("utf-8 with a BOM", b"\xef\xbb\xbf" + (json.dumps(ROW, ensure_ascii=False) + "\n").encode("utf-8")),
    # PowerShell's default: UTF-16 LE with its BOM (Python's "utf-16" codec writes the BOM).
    ("utf-16", (json.dumps(ROW, ensure_ascii=False) + "\r\n").encode("utf-16")),
    ("utf-16 big-endian", b"\xfe\xff" + (json.dumps(ROW, ensure_ascii=False) + "\n").encode("utf-16-be")),
    # CRLF line ends and blank lines, also between rows and at the end.
    ("crlf and blank lines", ("\r\n" + json.dumps(ROW, ensure_ascii=False) + "\r\n\r\n   \r\n").encode("utf-8")),
])
def test_odd_but_legal_encodings_and_framing_are_read(tmp_path, name, data):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(data)
    assert read_jsonl(path) == [ROW]


@pytest.mark.parametrize("data, rule, row, detail", [
    # Latin-1 bytes: é is the single byte 0xE9, which is no UTF-8; nothing declares another encoding.
    ((json.dumps(ROW, ensure_ascii=False) + "\n").encode("latin-1"), "UTF-8 text", 1, "line 1 is not UTF-8"),
    # A pretty-printed JSON array, the usual export of a notebook.
    (json.dumps([ROW, ROW], indent=2).encode(), "one JSON object per line (JSON Lines)", 1, "looks like a JSON array"),
    # A line that is valid JSON but not an object.
    ((json.dumps(ROW) + '\n"just a string"\n').encode(), "one JSON object per line", 2, "line 2 is a JSON string"),
    ((json.dumps(ROW) + "\n42\n").encode(), "one JSON object per line", 2, "line 2 is a JSON number"),
    # The whole file's rows on one line.
    (json.dumps([ROW, ROW]).encode(), "one JSON object per line", 1, "a JSON array (a whole file's rows"),
    # Nested deeper than the parser recurses: a RecursionError, no ValueError, that escaped as a traceback.
    ((json.dumps(ROW) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n").encode(), "valid JSON line", 2,
     "nests arrays or objects deeper than the JSON parser reads"),
])
def test_undecodable_or_misframed_files_are_named(tmp_path, data, rule, row, detail):
    from tasks.errors import DataError

    path = tmp_path / "rows.jsonl"
    path.write_bytes(data)
    with pytest.raises(DataError) as exc:
        read_jsonl(path)
    assert exc.value.rule.startswith(rule) and exc.value.rows[0][0] == row and detail in exc.value.detail
    assert str(path) in str(exc.value)


def test_a_10_mb_line_is_refused_after_reading_at_most_1_mib(tmp_path, monkeypatch):
    from tasks import io
    from tasks.errors import DataError

    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(ROW) + "\n" + json.dumps({"id": "b", "prompt": "x" * 10_000_000}) + "\n")
    sizes = []
    real = io._lines

    def spy(p, fh):
        read = fh.readline
        fh.readline = lambda limit=-1: sizes.append(limit) or read(limit)
        return real(p, fh)

    monkeypatch.setattr(io, "_lines", spy)
    with pytest.raises(DataError) as exc:
        read_jsonl(path)
    assert exc.value.rows[0][0] == 2 and "at most 1 MiB" in exc.value.rule
    assert sizes and max(sizes) == io.MAX_LINE_BYTES + 1        # every read bounded, never the whole line


def test_a_folder_or_a_missing_file_is_named(tmp_path):
    from tasks.errors import DataError

    with pytest.raises(DataError, match="a folder where a file is expected"):
        read_jsonl(tmp_path)
    with pytest.raises(DataError, match="no such file"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_scratch_folders_of_dead_processes_are_removed(tmp_path, monkeypatch):
    import subprocess
    import sys
    import tempfile

    from tasks.io import clean_scratch, scratch_dir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    mine = scratch_dir("reward")                       # this process is alive: kept
    # A process that made a scratch folder and died without removing it (as a SIGKILL leaves it).
    code = "import os, tempfile; tempfile.tempdir = %r; from tasks.io import scratch_dir; print(scratch_dir('reward'))"
    dead = subprocess.run([sys.executable, "-c", code % str(tmp_path)], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert dead and tmp_path.joinpath(dead).is_dir()
    assert clean_scratch() == [dead]
    assert mine.is_dir() and not tmp_path.joinpath(dead).exists()


@pytest.mark.parametrize("is_dir", [False, True])
def test_atomic_writes_reach_the_disk_before_and_after_their_rename(tmp_path, monkeypatch, is_dir):
    """A rename survives a killed process but not a power loss: the new content is fsynced before it is renamed
    in, and the folder that holds the name after."""
    import os
    from pathlib import Path

    from tasks.io import atomic_path

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                 real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", str(b))), real_replace(a, b))[1])
    out = tmp_path / ("model" if is_dir else "rows.jsonl")
    if is_dir:
        out.mkdir()
    with atomic_path(out, is_dir=is_dir) as tmp:
        if is_dir:
            tmp.mkdir(exist_ok=True)
            (tmp / "sub").mkdir()
            (tmp / "sub" / "weights.bin").write_bytes(b"w")
            (tmp / "config.json").write_text("{}")
        else:
            tmp.write_text("{}\n")
    renamed_in = events.index(("replace", str(out)))
    synced_before = {Path(p).name for kind, p in events[:renamed_in] if kind == "fsync"}
    assert synced_before >= ({"weights.bin", "config.json", "sub"} if is_dir else {"rows.jsonl"}), events
    assert ("fsync", str(tmp_path)) in events[renamed_in:], events


@pytest.mark.parametrize("line", [
    b'{"id": 1, "prompt": "my card is 4111 1111 1111 1111", ',          # cut short: not valid JSON
    b'"my card is 4111 1111 1111 1111"',                                # valid JSON, not an object
    b'[{"prompt": "my card is 4111 1111 1111 1111"}]',                  # an array on line 1
])
def test_a_bad_line_is_named_by_its_position_never_by_its_text(tmp_path, line):
    """The message goes to the console, MLflow's rft.error tag and Prefect's logs: it says where the line broke,
    and never carries what the line holds."""
    from tasks.errors import DataError

    path = tmp_path / "drop.jsonl"
    path.write_bytes(line + b"\n")
    with pytest.raises(DataError) as exc:
        read_jsonl(path)
    assert "4111" not in str(exc.value) and exc.value.rows[0][0] == 1, str(exc.value)


@pytest.mark.parametrize("breakage, says", [
    ("gitdir", "git refuses the repository here"),       # .git names a folder that is gone (a moved worktree)
    ("index.lock", "git add dvc.lock failed"),           # another git process, or one that died, holds the index
])
def test_an_iteration_commit_that_git_refuses_stops_loudly(tmp_path, monkeypatch, breakage, says):
    """The iteration commit is how an iteration reproduces: a repository git will not commit in is an error that
    names git's reason, not a silent None (nor a CalledProcessError traceback)."""
    import subprocess

    from tasks.errors import RFTError
    from tasks.iterations import git_commit

    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    if breakage == "gitdir":
        (tmp_path / ".git").write_text("gitdir: /nonexistent/worktree\n")
    else:
        subprocess.run(["git", "init", "-q"], check=True)
        (tmp_path / ".git" / "index.lock").write_text("")
    with pytest.raises(RFTError, match=f"promote.git_commit: {says}") as err:
        git_commit("rft iteration 1", paths=["dvc.lock"])
    assert "fatal" in str(err.value)
