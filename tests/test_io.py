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
