"""Bad input through the command line: one clear message, exit status 2, no traceback, no output written."""

import json
import subprocess

import pytest

pytestmark = pytest.mark.filterwarnings("ignore")


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
    # ...but the user can read why: the message points at a Data Docs page that shows the failure.
    page = project / out.stderr.split("Data Docs: ")[1].strip()
    assert "validations" in page.parts and "Failed" in page.read_text()


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
