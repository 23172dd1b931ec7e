"""Held-out prompts that stay held out: the split by a salted hash of each prompt's text, its records, the check
that no prompt a lineage trained on is held out, and label rows of held-out prompts kept out of training."""

import json

import pytest

from tasks.errors import ConfigError
from tasks.heldout import is_heldout, leaked, prompt_digest, split_point
from tasks.prepare import split_prompts
from tasks.prompting import prompt_key


def _rows(n, start=0):
    return [{"id": f"p{i}", "prompt": f"How was the soup at table {i}?"} for i in range(start, start + n)]


def _heldout(out):
    return {r["id"] for r in out if r["split"] == "heldout"}


def test_adding_a_prompt_moves_no_other_prompt_between_train_and_heldout():
    # The seeded shuffle this replaced moved 13 of the 20 held-out prompts when one prompt was added.
    before = split_prompts(_rows(100), 0.2, "rft-split-1")
    after = split_prompts(_rows(101), 0.2, "rft-split-1")
    assert {r["id"]: r["split"] for r in after[:100]} == {r["id"]: r["split"] for r in before}
    # Removing prompts does not move the others either.
    fewer = split_prompts(_rows(60, start=40), 0.2, "rft-split-1")
    assert _heldout(fewer) == {i for i in _heldout(before) if int(i[1:]) >= 40}


def test_a_10_percent_batch_of_new_prompts_puts_no_old_training_prompt_in_heldout():
    old = split_prompts(_rows(480), 0.2, "rft-split-1")
    new = split_prompts(_rows(528), 0.2, "rft-split-1")
    trained = {r["id"] for r in old if r["split"] == "train"}
    assert not _heldout(new) & trained
    assert _heldout(old) <= _heldout(new)          # and every old held-out prompt is still held out


def test_the_heldout_share_is_the_fraction_within_sampling_noise():
    # Each prompt is held out with probability 0.2, independently: over 5,000 the share has standard deviation
    # sqrt(0.2 * 0.8 / 5000) = 0.0057, so 0.2 +- 0.023 is 4 standard deviations.
    out = split_prompts(_rows(5000), 0.2, "s")
    assert abs(len(_heldout(out)) / 5000 - 0.2) < 0.023


def test_the_split_is_a_function_of_the_canonical_text_and_the_salt():
    assert split_point("how was the soup?", "a") == split_point("how was the soup?", "a")
    assert 0.0 <= split_point("x", "a") < 1.0
    assert split_point("x", "a") != split_point("x", "b")
    # The NUL between salt and text: ("ab", "c") and ("a", "bc") are different inputs.
    assert split_point("c", "ab") != split_point("bc", "a")
    # Case and whitespace are folded before hashing: one prompt, one side.
    rows = [{"id": "a", "prompt": "How was  the Soup?"}, {"id": "b", "prompt": "how was the soup?"}]
    rows += _rows(50)
    out = split_prompts(rows, 0.5, "s")
    assert out[0]["split"] == out[1]["split"]


def test_lowering_the_fraction_only_moves_heldout_prompts_to_training():
    wide, narrow = split_prompts(_rows(300), 0.3, "s"), split_prompts(_rows(300), 0.2, "s")
    assert _heldout(narrow) < _heldout(wide)
    # A new salt is a new split: most held-out prompts change.
    assert len(_heldout(split_prompts(_rows(300), 0.3, "t")) & _heldout(wide)) < 0.6 * len(_heldout(wide))


def test_demonstration_prompts_never_go_to_heldout():
    rows = _rows(200)
    keys = {prompt_key(r["prompt"]) for r in rows}
    held = {prompt_key(r["prompt"]) for r in split_prompts(rows, 0.5, "s") if r["split"] == "heldout"}
    out = split_prompts(rows, 0.5, "s", train_only=held)
    assert not _heldout(out) and len(keys) == 200


def test_the_retired_seed_key_names_its_replacement():
    from tasks.config import parse_params

    with pytest.raises(ConfigError, match=r"prepare\.seed: replaced by prepare\.salt"):
        parse_params({"prepare": {"seed": 0}})
    assert parse_params({"prepare": {"salt": "mine"}}).prepare.salt == "mine"


def test_leaked_names_the_heldout_prompts_that_were_trained_on():
    held = {prompt_digest("a"): "a", prompt_digest("b"): "b", prompt_digest("c"): "c"}
    assert leaked(held, {prompt_digest("c"), prompt_digest("a"), prompt_digest("z")}) == ["a", "c"]
    assert leaked(held, set()) == []
    assert is_heldout("a", "s", 1.0) and not is_heldout("a", "s", 0.0)


def test_label_and_rating_rows_of_heldout_prompts_are_dropped_and_counted():
    from tasks.provenance import without_heldout

    prompts = {"1": "How was the soup?", "2": "How was the bread?"}
    held = {prompt_key("How was the soup?")}
    rows = [{"prompt_id": "1", "chosen": "a", "rejected": "b"},                 # by id: held out
            {"prompt_id": "2", "chosen": "a", "rejected": "b"},
            {"prompt": "how was THE soup?", "chosen": "a", "rejected": "b"},   # its own text, folded: held out
            {"messages": [{"role": "user", "content": "How was the soup?"}], "chosen": "a", "rejected": "b"},
            {"prompt": "Something else entirely", "chosen": "a", "rejected": "b"}]
    counter = {}
    kept = list(without_heldout(rows, prompts, held, counter, "dropped_heldout_pairs"))
    assert kept == [rows[1], rows[3], rows[4]] and counter == {"dropped_heldout_pairs": 2}
    # A chat prompt is its own key: the conversation form of a text prompt is a different prompt.
    assert prompt_key(rows[3]["messages"]) != prompt_key("How was the soup?")


def test_the_reward_models_own_split_groups_by_text_not_id():
    from tasks.config import parse_params
    from tasks.reward_training import labelled_pairs

    params = parse_params({"reward": {"heldout_fraction": 0.5}})
    # The same text under many ids: one group, so all its pairs land on one side.
    of = ["How was the soup?"] * 10 + [f"How was dish {i}?" for i in range(30)]
    rows = [{"prompt_id": f"id{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(40)]
    train, val = labelled_pairs(params, (of, rows))
    soup = [p for p in train + val if p[0].startswith("Q: How was the soup?")]
    assert len(soup) == 10
    assert set(soup) <= set(train) or set(soup) <= set(val)


def test_trained_digests_cover_the_training_split_and_every_label_prompt():
    from tasks.provenance import split_record, trained_digests

    prompts = [{"id": "1", "prompt": "How was the soup?", "split": "train"},
               {"id": "2", "prompt": "How was the bread?", "split": "heldout"}]
    labels = [{"prompt": "A prompt from a file", "chosen": "a", "rejected": "b"}]
    ratings = [{"prompt_id": "1", "response": "x", "score": 3}]
    got = trained_digests(prompts, labels, ratings)
    assert got == sorted(prompt_digest(prompt_key(t)) for t in ("How was the soup?", "A prompt from a file"))
    record = split_record(prompts, "s", 0.2)
    assert record["heldout"] == [prompt_digest(prompt_key("How was the bread?"))]
    assert record["heldout_prompts"] == 1 and len(record["sha"]) == 16


@pytest.fixture
def store(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("leak", artifact_location=(tmp_path / "art").as_uri())
    yield mlflow.MlflowClient(uri), exp
    mlflow.set_tracking_uri(None)


def test_a_heldout_prompt_an_earlier_iteration_trained_on_stops_the_check(store):
    import mlflow

    from tasks.provenance import HeldoutLeak, check, log_trained, trained_digests

    client, exp = store
    first = [{"id": str(i), "prompt": f"How was dish {i}?", "split": "train"} for i in range(5)]
    # The earlier iteration trained in another experiment of the same store: the registry's champion is shared.
    other = mlflow.create_experiment("other", artifact_location=str(client.get_experiment(exp).artifact_location))
    with mlflow.start_run(experiment_id=other, tags={"rft.stage": "optimize"}):
        log_trained(trained_digests(first))
    # A new split (say, another salt) holds out dish 3, which the earlier optimize run trained on.
    now = [{**r, "split": "heldout" if r["id"] in ("3", "9") else "train"} for r in first]
    now.append({"id": "9", "prompt": "A brand new prompt", "split": "heldout"})
    with pytest.raises(HeldoutLeak) as exc:
        check(now, "data/incoming/prompts.jsonl", client)
    msg = str(exc.value)
    assert "1 held-out prompt(s)" in msg and "'how was dish 3?'" in msg and "new prompt" not in msg
    assert "data/incoming/prompts.jsonl" in msg and "prepare.salt" in msg
    # Runs of other stages, `dvc exp run` runs (never champions), and a split whose held-out prompts were never
    # trained on, pass.
    for tags in ({"rft.stage": "generate"}, {"rft.stage": "optimize", "dvc.exp": "exp-1"}):
        with mlflow.start_run(experiment_id=exp, tags=tags):
            mlflow.log_dict({"trained": [prompt_digest("a brand new prompt")]}, "split/trained_prompts.json")
    check([r for r in now if r["id"] != "3"], "x", client)


def test_a_run_without_a_record_is_read_from_the_dvc_cache_or_stops_the_check(store, tmp_path, monkeypatch):
    import subprocess

    import mlflow

    from tasks.io import dvc_md5
    from tasks.provenance import HeldoutLeak, check

    client, exp = store
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["dvc", "init", "-q", "--no-scm"], cwd=project, check=True)
    monkeypatch.chdir(project)
    old = [{"id": "1", "prompt": "How was the soup?", "split": "train"},
           {"id": "2", "prompt": "How was the bread?", "split": "heldout"}]
    (project / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    md5 = dvc_md5(project / "prompts.jsonl")
    # An optimize run from before the record existed: only its input hashes.
    with mlflow.start_run(experiment_id=exp, tags={"rft.stage": "optimize", "dvc.md5.data/prompts.jsonl": md5}):
        pass
    now = [{"id": "1", "prompt": "How was the soup?", "split": "heldout"}]
    with pytest.raises(HeldoutLeak, match=r"1 earlier optimize run\(s\) have no record"):
        check(now, "x", client)                              # its prompts are not in the cache: blind, so stop
    cached = project / ".dvc/cache/files/md5" / md5[:2] / md5[2:]
    cached.parent.mkdir(parents=True)
    cached.write_bytes((project / "prompts.jsonl").read_bytes())
    with pytest.raises(HeldoutLeak, match=r"'how was the soup\?'"):
        check(now, "x", client)                              # read from the cache: it trained on the soup
    check([{"id": "2", "prompt": "How was the bread?", "split": "heldout"}], "x", client)


def test_keep_trained_lets_a_new_split_go_on_without_holding_out_what_was_trained_on(store, tmp_path):
    # An upgraded project, or a new salt: the new split would hold out prompts an earlier iteration trained on.
    import mlflow

    from tasks.provenance import HeldoutLeak, check, keep_trained, log_trained, read_keep, trained_digests

    client, exp = store
    rows = _rows(60)
    old = split_prompts(rows, 0.2, "old-salt")
    with mlflow.start_run(experiment_id=exp, tags={"rft.stage": "optimize"}):
        log_trained(trained_digests(old))
    new = split_prompts(rows, 0.2, "new-salt")
    moved = {r["id"] for r in new if r["split"] == "heldout"} & {r["id"] for r in old if r["split"] == "train"}
    assert moved                                       # 60 prompts at 0.2: some trained prompts fall to heldout
    with pytest.raises(HeldoutLeak, match="rft keep-trained"):
        check(new, "x", client)
    keep_file = tmp_path / "keep.json"
    trained = sum(r["split"] == "train" for r in old)
    assert keep_trained(keep_file, client) == (trained, trained)
    assert keep_trained(keep_file, client)[1] == 0     # a second run adds nothing
    keep = read_keep(keep_file)
    kept = split_prompts(rows, 0.2, "new-salt", keep=keep)
    # Held out now: exactly the new salt's held-out prompts that no iteration trained on, which passes the check.
    assert _heldout(kept) == _heldout(new) - moved and _heldout(kept)
    check(kept, "x", client)
    # Prompts added later are split by their hash as always: the file names prompts, not a share.
    more = split_prompts(rows + _rows(40, start=60), 0.2, "new-salt", keep=keep)
    assert _heldout(more) - _heldout(kept) == _heldout(split_prompts(_rows(40, start=60), 0.2, "new-salt"))


@pytest.mark.parametrize("text, rule", [
    ("{not json", "valid JSON"),
    ('{"digests": ' + "[" * 100_000 + "]" * 100_000 + "}", "valid JSON"),       # a RecursionError, not a traceback
    ('["abc"]', "a JSON object with a list 'digests'"),
    ('{"digests": ["0123456789abcdef", "XYZ"]}', "16 lowercase hex digits"),
])
def test_a_bad_keep_in_train_file_is_refused_naming_the_file_and_entry(tmp_path, text, rule):
    from tasks.errors import DataError
    from tasks.provenance import read_keep

    f = tmp_path / "keep.json"
    if text is not None:
        f.write_text(text)
    with pytest.raises(DataError, match=rule) as exc:
        read_keep(f)
    assert str(f) in str(exc.value)
    if "XYZ" in (text or ""):
        assert "row 2: 'XYZ'" in str(exc.value)


def test_the_split_record_names_its_salt_fraction_and_prompts():
    from tasks.provenance import split_record, split_tags

    rows = split_prompts(_rows(100), 0.2, "s")
    record = split_record(rows, "s", 0.2)
    tags = split_tags(record)
    assert tags["rft.split.salt"] == "s" and tags["rft.split.heldout_fraction"] == "0.2"
    assert int(tags["rft.split.heldout_prompts"]) == len(_heldout(rows)) == len(record["heldout"])
    assert json.loads(json.dumps(record)) == record


def test_a_split_with_an_empty_side_is_refused_naming_the_file(tmp_path, monkeypatch):
    # Each prompt is drawn on its own, so two prompts at 0.2 are both trained on with probability 0.8^2 = 0.64:
    # then there is nothing to evaluate on, and prepare says so instead of writing a split with no held-out side.
    from tasks.config import parse_params
    from tasks.errors import DataError
    from tasks.stages.common import StageContext
    from tasks.stages.prepare import run as run_prepare

    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(2)))
    salt = next(s for s in (f"s{i}" for i in range(100))
                if not any(r["split"] == "heldout" for r in split_prompts(_rows(2), 0.2, s)))
    params = parse_params({"prepare": {"input": "in.jsonl", "salt": salt},
                           "tracking": {"uri": f"sqlite:///{tmp_path}/m.db"}})
    with pytest.raises(DataError, match=r"prompts on both sides of the split") as exc:
        run_prepare(StageContext(params))
    assert "in.jsonl" in str(exc.value) and "2 train and 0 held out" in str(exc.value)
    assert not (tmp_path / "data/prompts.jsonl").exists()


def test_the_gate_says_when_the_split_is_new_since_the_champions_iteration(store):
    import mlflow

    from tasks.provenance import split_change, split_tags

    client, exp = store
    assert split_change(client, "s", 0.2) is None                 # no champion yet: nothing to compare
    with mlflow.start_run(experiment_id=exp, tags=split_tags({"salt": "s", "heldout_fraction": 0.2,
                                                              "heldout_prompts": 3, "sha": "0" * 16})) as run:
        pass
    client.create_registered_model("policy")
    version = client.create_model_version("policy", source=str(client.get_experiment(exp).artifact_location),
                                          run_id=run.info.run_id, tags={"rft.cycle_run_id": run.info.run_id})
    client.set_registered_model_alias("policy", "champion", version.version)
    assert split_change(client, "s", 0.2) is None                 # the same split
    said = split_change(client, "t", 0.1)
    assert "prepare.salt 's' -> 't'" in said and "prepare.heldout_fraction 0.2 -> 0.1" in said
    assert "its held-out figures came from other prompts" in said
