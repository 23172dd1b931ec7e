"""Bad input through the command line: one clear message, exit status 2, no traceback, no output written."""

import json
import subprocess

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]   # each builds a git + DVC project


def rft(*args):
    return subprocess.run(["rft", *args], capture_output=True, text=True)


def test_invalid_json_line_stops_prepare(project):
    raw = project / "data/corpus/prompts.jsonl"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps({"id": "a", "prompt": "Review the soup at Old Mill."}) + "\n{not json\n")
    out = rft("stage", "prepare")
    assert out.returncode == 2
    assert "data/corpus/prompts.jsonl" in out.stderr and "valid JSON line" in out.stderr and "row 2" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert not (project / "data/prompts.jsonl").exists()


def test_missing_column_stops_prepare(project):
    raw = project / "data/corpus/prompts.jsonl"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps({"id": "a", "text": "Review the soup at Old Mill."}) + "\n")
    out = rft("stage", "prepare")
    assert out.returncode == 2 and "column 'prompt'" in out.stderr and "required column" in out.stderr
    assert not (project / "data/prompts.jsonl").exists()


def test_leaky_prompts_stop_validation_before_generation(project):
    rows = [{"id": "1", "prompt": "Review the soup at Old Mill.", "split": "train", "source": "t"},
            {"id": "2", "prompt": "review the SOUP at old mill.", "split": "heldout", "source": "t"}]
    (project / "data").mkdir(exist_ok=True)
    (project / "data/prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = rft("stage", "validate_prompts")
    assert out.returncode == 2
    assert "no held-out prompt inside training data" in out.stderr and "row 2" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (project / "reports/validation/prompts.json").exists()   # generate depends on it
    # ...but the user can read why: the message points at a page that shows the failure, needing nothing else.
    page = project / out.stderr.split("Report: ")[1].split(" (")[0]
    html = page.read_text()
    assert page.name == "summary.html" and "FAILED" in html and "no held-out prompt inside training data" in html
    assert "http" not in html.replace('href="latest.html"', "")          # no script or stylesheet from the web
    # GX's own page of the failed validation is beside it.
    latest = (page.parent / "validations").rglob("*.html")
    assert any("Failed" in p.read_text() for p in latest)


@pytest.mark.slow
@pytest.mark.parametrize("harm, named", [
    ("config", "models/champion/config.json"),            # config.json gone
    ("weights", "models/champion/model.safetensors"),     # a zero-byte weights file
])
def test_a_damaged_champion_stops_the_champion_stage_and_generate(built_project, tmp_path, monkeypatch, harm, named):
    import hashlib
    import shutil

    built, _, _ = built_project
    path = tmp_path / "proj"
    shutil.copytree(built, path)
    monkeypatch.chdir(path)
    champion = path / "models/champion"
    if harm == "config":
        (champion / "config.json").unlink()
    else:
        (champion / "model.safetensors").write_bytes(b"")

    def digest():
        files = sorted(p for p in [*champion.rglob("*"), path / "data/generations.jsonl", path / "dvc.lock"]
                       if p.is_file())
        return {str(p): hashlib.md5(p.read_bytes()).hexdigest() for p in files}

    before = digest()
    for stage in ("champion", "generate"):
        out = rft("stage", stage)
        assert out.returncode == 2, out.stderr[-2000:]
        assert named in out.stderr and "a readable model folder" in out.stderr
        assert "Traceback" not in out.stderr + out.stdout
    assert digest() == before                  # nothing written: not the champion, not the generations


def test_a_prompts_file_outside_the_project_is_read_and_its_hash_logged(project, tmp_path):
    from mlflow import MlflowClient

    from tasks.io import dvc_md5

    outside = tmp_path / "elsewhere" / "prompts.jsonl"
    outside.parent.mkdir()
    outside.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"Review the soup number {i}."}) + "\n"
                               for i in range(10)))
    params = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(params.replace("input: data/corpus/prompts.jsonl", f"input: {outside}"))
    out = rft("stage", "prepare")
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"prepare: reading {outside}, outside the project (md5 " in out.stderr
    client = MlflowClient(f"sqlite:///{project / 'mlruns.db'}")
    (run,) = client.search_runs(["1"], "tags.`rft.stage` = 'prepare'")
    assert run.data.tags[f"dvc.md5.{outside}"] == dvc_md5(outside)


def test_a_user_file_linked_from_outside_the_project_is_refused(project, tmp_path):
    target = tmp_path / "elsewhere.jsonl"
    target.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    link = project / "data/incoming/pairs.jsonl"
    link.symlink_to(target)
    import yaml

    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw.setdefault("label", {}).update(source="file", file="data/incoming/pairs.jsonl")
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    out = rft("check-params")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"label.file: data/incoming/pairs.jsonl is a link to {target}, outside the project" in out.stderr


def _mount_tmpfs(path, options):
    path.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({out.stderr.strip()[:120]}): needs root and CAP_SYS_ADMIN")
    return path


@pytest.mark.parametrize("options, says", [
    ("size=16k", "no space left on the device"),      # a full disk: 16 kB hold the inputs, not the ~40 kB output
    ("ro,size=16k", "a read-only file system"),        # data/ mounted read-only
])
def test_a_full_or_read_only_data_folder_stops_prepare_naming_the_path(project, tmp_path, options, says):
    import shutil

    raw = tmp_path / "prompts.jsonl"          # outside the project (allowed), so data/ holds only what prepare writes
    raw.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"Review the soup number {i} at the Old Mill, "
                                       "and say what you thought of it."}) + "\n" for i in range(400)))
    params = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(params.replace("input: data/corpus/prompts.jsonl", f"input: {raw}"))
    keep = tmp_path / "incoming"
    shutil.copytree(project / "data", keep)
    shutil.rmtree(project / "data")
    data = _mount_tmpfs(project / "data", "size=16k")
    try:
        shutil.copytree(keep, data, dirs_exist_ok=True)
        if options.startswith("ro"):
            subprocess.run(["mount", "-o", "remount,ro", str(data)], check=True)
        out = rft("stage", "prepare")
        assert out.returncode == 2, out.stderr[-2000:]
        assert "Traceback" not in out.stderr and says in out.stderr
        assert "data" in out.stderr.split("error: ")[1].split(":")[0]       # the message starts with the path
        assert sorted(p.name for p in data.iterdir()) == sorted(p.name for p in keep.iterdir())   # nothing left
    finally:
        subprocess.run(["umount", str(data)], check=False)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_mlflow_store_is_named(project, damage):
    raw = project / "data/corpus/prompts.jsonl"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"Review the soup number {i}."}) + "\n"
                           for i in range(10)))
    assert rft("stage", "prepare").returncode == 0          # creates mlruns.db
    db = project / "mlruns.db"
    if damage == "garbage":
        db.write_bytes(b"this is not an sqlite database" * 100)
    else:
        db.write_bytes(db.read_bytes()[:4096])             # the header page survives, the tables do not
    before = (project / "data/prompts.jsonl").read_bytes()
    out = rft("stage", "prepare")
    assert out.returncode == 2, out.stderr[-2000:]
    assert f"{db}: the MLflow tracking store is damaged" in out.stderr and "Traceback" not in out.stderr
    assert (project / "data/prompts.jsonl").read_bytes() == before
