"""Known-harmless library messages are dropped at their logger (tasks/quiet.py); everything else still shows."""

import logging

from tasks.runtime import setup_process

setup_process()                 # what every entry point does first: it installs the filters


def passes(logger_name: str, msg: str, *args) -> bool:
    """Whether the filters on ``logger_name`` let a record of ``msg % args`` through (nothing is emitted: the
    libraries' own handlers, which other tests may have set up, stay out of it)."""
    record = logging.LogRecord(logger_name, logging.WARNING, __file__, 1, msg, args, None)
    return logging.getLogger(logger_name).filter(record)


def test_a_harmless_message_is_dropped_and_its_neighbours_kept():
    assert not passes("dvc.output", "'%s' is empty.", "data/ratings.jsonl")     # empty by design: nobody rated
    assert passes("dvc.output", "'%s' is empty.", "data/labels.jsonl")          # not harmless: no labels
    gx = "great_expectations.data_context.types.base"
    assert not passes(gx, "Created temporary directory '/tmp/x' for ephemeral docs site")
    assert passes(gx, "Created something else")
    # Another logger saying a filtered message is not touched.
    assert passes("dvc.repo", "'%s' is empty.", "data/ratings.jsonl")


def test_installing_twice_keeps_one_filter():
    from tasks.quiet import DropHarmless, install

    install()
    install()
    assert sum(isinstance(f, DropHarmless) for f in logging.getLogger("dvc.output").filters) == 1
