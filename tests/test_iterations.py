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
