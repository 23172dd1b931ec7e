"""Known-harmless library messages are dropped at their logger (tasks/quiet.py); everything else still shows."""

import logging

import tasks  # noqa: F401  (importing the package installs the filters)


def test_a_harmless_message_is_dropped_and_its_neighbours_kept(caplog):
    dvc = logging.getLogger("dvc.output")
    gx = logging.getLogger("great_expectations.data_context.types.base")
    with caplog.at_level(logging.INFO):
        dvc.warning("'%s' is empty.", "data/ratings.jsonl")        # empty by design when nobody rated
        dvc.warning("'%s' is empty.", "data/labels.jsonl")         # not harmless: a cycle without labels
        gx.info("Created temporary directory '/tmp/x' for ephemeral docs site")
        gx.info("Created something else")
    assert [r.getMessage() for r in caplog.records] == ["'data/labels.jsonl' is empty.", "Created something else"]


def test_installing_twice_keeps_one_filter():
    from tasks.quiet import DropHarmless, install

    install()
    install()
    assert sum(isinstance(f, DropHarmless) for f in logging.getLogger("dvc.output").filters) == 1
