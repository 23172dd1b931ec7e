"""A deliberately worse candidate is never promoted, and a policy that repeats a good word loses."""

import json
import shutil

import pytest

from tasks.config import parse_params
from tasks.envs import load_env
from tasks.envs.reviews.corpus import build_corpus
from tasks.evaluate import judge_outcomes
from tasks.promotion_gate import decide

pytestmark = pytest.mark.filterwarnings("ignore")


def test_repeating_a_good_word_loses_to_fluent_reviews_under_the_truth():
    # The word-counting failure mode: "great great great ..." until max_length. The hidden-truth
    # annotator (with its default 10% noise) must prefer fluent positive reviews nearly always.
    params = parse_params({})
    demos = [d for d in build_corpus(0, 10, 400, 10).demos if d["tone"] == "pos"][:100]
    prompts = [d["prompt"] for d in demos]
    spam = ["great " * 40] * len(demos)
    fluent = [d["response"] for d in demos]
    annotator = load_env("reviews").annotator(params.truth, seed=1)
    out_truth = judge_outcomes(annotator, prompts, [(str(i), i) for i in range(len(demos))], spam, fluent)
    assert sum(out_truth) / len(out_truth) < 0.2


def _spam_policy(src, dst) -> str:
    """A real GPT-2 policy whose every sample is one word repeated: the final layer norm is
    replaced by a constant pointing at the word's (tied) embedding. Returns the word."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src)
    # The first good word that is a single token of this (possibly tiny) vocabulary.
    word = next(w for w in (" great", " lovely", " tasty", " fresh", " good", " was") if len(tok(w)["input_ids"]) == 1)
    (wid,) = tok(word)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(src)
    with torch.no_grad():
        emb = model.transformer.wte.weight
        emb[wid] *= 10
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(100 * emb[wid] / emb[wid].norm())
    shutil.rmtree(dst)
    model.save_pretrained(dst)
    tok.save_pretrained(dst)
    return word.strip()


def _work_copy(built_project, tmp_path, monkeypatch):
    """A copy of the built project to change, as the working directory, and its params."""
    work = tmp_path / "proj"
    shutil.copytree(built_project[0], work)
    monkeypatch.chdir(work)
    return work, parse_params(__import__("yaml").safe_load((work / "params.yaml").read_text()))


@pytest.mark.slow
def test_deliberately_worse_candidate_is_not_promoted(built_project, tmp_path, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    from tasks.policy import read_meta, write_meta
    from tasks.promotion import promote
    from tasks.stages.common import StageContext
    from tasks.stages.evaluate import run as run_evaluate

    work, params = _work_copy(built_project, tmp_path, monkeypatch)
    meta = read_meta(work / "models/candidate")
    word = _spam_policy(work / "models/champion", work / "models/candidate")
    write_meta(work / "models/candidate", meta)
    champion_before = (work / "models/champion/model.safetensors").read_bytes()

    m = run_evaluate(StageContext(params))
    rows = [json.loads(line) for line in (work / "data/eval.jsonl").read_text().splitlines()]
    assert all(set(r["candidate"].split()) == {word} for r in rows)             # it really is the spam policy
    result = promote(params)

    assert not result["promoted"] and not decide(m, params.promote).promote
    assert "length alarm" in result["reason"]                                  # 12 words of spam vs short reviews
    assert (work / "models/champion/model.safetensors").read_bytes() == champion_before
    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlruns.db'}")
    client = MlflowClient()
    assert int(client.get_model_version_by_alias("policy", "champion").version) == 1
    assert client.get_model_version("policy", str(meta["registry_version"])).tags["rejected_reason"] == result["reason"]


@pytest.mark.slow
def test_an_interrupted_promotion_whose_candidate_is_gone_rolls_back(built_project, tmp_path, monkeypatch):
    # A pending record (as a process killed just after writing it leaves) whose candidate folder has changed since
    # the gate passed it, and whose swap never happened: finishing it would install an unjudged policy, so the
    # recovery rolls it back. Inside dvc repro (DVC_STAGE set) a pending record stops the stage instead.
    import mlflow
    from mlflow import MlflowClient

    from tasks.errors import RFTError
    from tasks.policy import read_meta
    from tasks.promotion import pending_file, recover_promotion, write_pending

    work, params = _work_copy(built_project, tmp_path, monkeypatch)
    version = str(read_meta(work / "models/candidate")["registry_version"])
    champion_before = (work / "models/champion/model.safetensors").read_bytes()
    write_pending({"policy_version": version, "reason": "won", "champion_dir": "models/champion",
                   "candidate_md5": "0" * 32 + ".dir", "reward_model_version": None, "run_id": None,
                   "iteration": "3", "meta": {**read_meta(work / "models/candidate"), "promoted_at": "x"}})

    monkeypatch.setenv("DVC_STAGE", "generate")
    with pytest.raises(RFTError, match="was interrupted and is not finished. Run `rft cycle`"):
        recover_promotion(params)
    monkeypatch.delenv("DVC_STAGE")
    said = recover_promotion(params, who="cycle")
    assert said.startswith("cycle: rolled back the interrupted promotion of policy v" + version)
    assert not pending_file().exists()
    assert (work / "models/champion/model.safetensors").read_bytes() == champion_before
    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlruns.db'}")
    client = MlflowClient()
    assert int(client.get_model_version_by_alias("policy", "champion").version) == 1
    assert "no longer the candidate" in client.get_model_version("policy", version).tags["rft.promotion_abandoned"]
    assert recover_promotion(params) is None                      # nothing pending any more
