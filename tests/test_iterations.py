"""The iteration record's params: the hash the cycle loaded, and what it says when the file changed mid-cycle."""

import hashlib

from tasks.iterations import params_drift, params_md5


def test_params_drift_names_a_file_edited_during_the_cycle_and_the_stages_that_read_it(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("a: 1\n")
    loaded = params_md5(path)
    assert loaded == hashlib.md5(b"a: 1\n").hexdigest()
    rows = [{"stage": "generate", "params_md5": loaded}, {"stage": "evaluate", "status": "skipped"}]
    assert params_drift(path, loaded, rows) is None                     # unchanged, and every stage read it

    path.write_text("a: 2\n")                                           # edited while evaluate ran
    now = hashlib.md5(b"a: 2\n").hexdigest()
    said = params_drift(path, loaded, [*rows, {"stage": "evaluate", "params_md5": now}])
    assert said.startswith(f"{path} changed during the cycle (md5 {loaded} when it started, {now} now); "
                           "the stages evaluate read a changed file")
    # Changed back before the end: the stage that read the other version is still named.
    path.write_text("a: 1\n")
    assert "the stages evaluate read a changed file" in params_drift(path, loaded, [{"stage": "evaluate",
                                                                                     "params_md5": now}])
    path.unlink()
    assert "None now" in params_drift(path, loaded, rows)


def test_a_comment_is_not_a_change_of_values_but_an_edited_value_or_a_broken_file_is(tmp_path):
    # The cycle stops before it records or promotes when the values changed (the gate would judge by other params
    # than the stages trained under); an added comment only gets the warning.
    import shutil
    from pathlib import Path

    from tasks.iterations import params_values_changed
    from tasks.manifest import load_params

    path = tmp_path / "params.yaml"
    shutil.copy(Path(__file__).parents[1] / "params.yaml", path)
    started = load_params(path)
    with open(path, "a") as fh:
        fh.write("# a note\n")
    assert not params_values_changed(path, started)
    path.write_text(path.read_text().replace("keep_last: 3", "keep_last: 4"))
    assert params_values_changed(path, started)
    path.write_text("promote: [\n")
    assert params_values_changed(path, started)
