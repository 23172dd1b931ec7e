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
