"""Reward model: left truncation, split by prompt, pairwise stats, and training on HH-RLHF-format data."""

import random

import pytest
from conftest import SHARED_HH

from tasks.config import RewardConfig
from tasks.reward_training import base_path, load_tokenizer, pair_text, pairwise_stats, split_pairs

pytestmark = pytest.mark.filterwarnings("ignore")


def test_left_truncation_keeps_the_final_turn():
    # Chosen and rejected share a long dialogue and differ only in the last words; truncating
    # from the right would make them identical and the pair unlearnable.
    tok = load_tokenizer(base_path(RewardConfig()), 16)
    shared = "\n\nHuman: " + " ".join(["tell me more about the weather today"] * 20) + "\n\nAssistant:"
    a = tok(shared + " sure, here it is", truncation=True, max_length=16)["input_ids"]
    b = tok(shared + " no, go away", truncation=True, max_length=16)["input_ids"]
    assert len(a) == len(b) == 16 and a != b
    assert tok.convert_ids_to_tokens(a)[0] == "[CLS]" and tok.convert_ids_to_tokens(a)[-1] == "[SEP]"
    assert tok.decode(a, skip_special_tokens=True).endswith("sure, here it is")


def test_pairwise_stats_by_hand():
    # margins: 1.0 - 0.5 = 0.5, 0.2 - 0.4 = -0.2, 2.0 - 1.0 = 1.0 -> accuracy 2/3, mean margin 1.3/3
    s = pairwise_stats([1.0, 0.2, 2.0], [0.5, 0.4, 1.0])
    assert s["accuracy"] == pytest.approx(2 / 3) and s["mean_margin"] == pytest.approx(1.3 / 3)


def test_bradley_terry_loss_by_hand():
    import math

    import torch

    from tasks.reward_training import bradley_terry_loss

    # d = ln 3: sigmoid(d) = 3/4, sigmoid(-d) = 1/4.
    # e = 0: -ln(3/4) = 0.2876821 (plain Bradley-Terry, TRL's loss).
    # e = 0.1: 0.9 * 0.2876821 + 0.1 * ln 4 = 0.2589139 + 0.1386294 = 0.3975433.
    c, r = torch.tensor([math.log(3)]), torch.tensor([0.0])
    assert bradley_terry_loss(c, r).item() == pytest.approx(0.2876821, abs=1e-6)
    assert bradley_terry_loss(c, r, 0.1).item() == pytest.approx(0.3975433, abs=1e-6)
    # d = 0: ln 2 whatever e; swapping the pair at e swaps the weights: loss(-d, e) = loss(d, 1 - e).
    assert bradley_terry_loss(r, r, 0.3).item() == pytest.approx(math.log(2), abs=1e-6)
    assert bradley_terry_loss(r, c, 0.1).item() == pytest.approx(bradley_terry_loss(c, r, 0.9).item(), abs=1e-6)
    # dloss/dd = -(1-e) sigmoid(-d) + e sigmoid(d): -0.9/4 + 0.1 * 3/4 = -0.15 at d = ln 3, and 0 where
    # sigmoid(d) = 1 - e, at d = ln((1-e)/e) = ln 9: smoothing bounds the margin that plain BT pushes to infinity.
    d = torch.tensor([math.log(3), math.log(9)], requires_grad=True)
    for i, want in enumerate((-0.15, 0.0)):
        (g,) = torch.autograd.grad(bradley_terry_loss(d[i:i + 1], torch.zeros(1), 0.1), d)
        assert g[i].item() == pytest.approx(want, abs=1e-6)


def test_the_smoothed_trainer_replaces_the_loss_and_keeps_the_centring_term():
    import math
    from types import SimpleNamespace

    import torch

    from tasks.reward_training import smoothed_trainer

    class Base:                          # stands for TRL's RewardTrainer: its loss (99) must not survive
        args = SimpleNamespace(center_rewards_coefficient=0.01)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return torch.tensor(99.0), SimpleNamespace(logits=torch.tensor([[math.log(3)], [0.0]]))

    trainer = smoothed_trainer(Base, 0.1)()
    # rewards chosen ln 3, rejected 0: 0.3975433 (above) + 0.01 * (ln 3 + 0)^2 = 0.3975433 + 0.0120695 = 0.4096128
    assert trainer.compute_loss(None, {}).item() == pytest.approx(0.4096128, abs=1e-6)
    with pytest.raises(ValueError, match="label_smoothing"):
        trainer.compute_loss(None, {"margin": torch.zeros(1)})


def test_split_pairs_by_prompt():
    pairs = list(range(20))
    groups = [i // 2 for i in range(20)]          # 10 prompts, 2 pairs each
    train, val = split_pairs(pairs, groups, 0.2, seed=3)
    assert len(val) == 4 and len(train) == 16     # round(10 * 0.2) = 2 prompts held out
    assert not {groups[p] for p in train} & {groups[p] for p in val}


def test_pair_text_is_the_policy_prompt_format():
    assert pair_text("Review the pie.", "It was great.") == "Q: Review the pie.\nA: It was great."


@pytest.mark.slow
def test_trains_on_hh_rlhf_format(tmp_path):
    if not SHARED_HH.exists():
        pytest.skip(f"{SHARED_HH} not found: the HH-RLHF sample lives in ../shared, outside the repository")
    from tasks.io import read_jsonl
    from tasks.reward_training import RewardModel, train_reward_model

    rows = read_jsonl(SHARED_HH)[:48]
    random.Random(0).shuffle(rows)
    pairs = [(r["chosen"], r["rejected"]) for r in rows]
    cfg = RewardConfig(max_length=64, epochs=1.0, batch_size=8, warmup_steps=0)
    stats = train_reward_model(pairs[:40], pairs[40:], cfg, tmp_path / "rm")
    # Every pair was kept (none dropped for length) and the model scores held-out pairs.
    assert stats["train_pairs"] == 40 and stats["heldout_pairs"] == 8
    # The reported accuracy is the saved model's on the held-out pairs, re-scored from disk.
    rm = RewardModel(tmp_path / "rm", 64)
    again = pairwise_stats(rm.score([c for c, _ in pairs[40:]]), rm.score([r for _, r in pairs[40:]]))
    assert again["accuracy"] == pytest.approx(stats["heldout_accuracy"])


@pytest.mark.slow
def test_lora_switch_trains_adapters_and_saves_a_merged_model(tmp_path):
    import dataclasses

    from transformers import AutoModelForSequenceClassification

    from tasks.reward_training import RewardModel, train_reward_model

    pairs = [(f"Q: Review the pie.\nA: The pie was {g}.", f"Q: Review the pie.\nA: The pie was {b}.")
             for g, b in [("great", "awful"), ("lovely", "bland"), ("perfect", "stale"), ("tasty", "cold")] * 3]
    cfg = dataclasses.replace(RewardConfig(), pooling="cls", lora=True, epochs=1.0, batch_size=4, warmup_steps=0,
                              max_length=32)
    stats = train_reward_model(pairs[:10], pairs[10:], cfg, tmp_path / "rm")
    assert stats["train_pairs"] == 10
    # Saved merged: a plain sequence-classification model (the cls head) with no adapter files.
    assert not (tmp_path / "rm" / "adapter_config.json").exists()
    AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm")
    assert len(RewardModel(tmp_path / "rm", 32).score([pairs[0][0]])) == 1


@pytest.mark.slow
@pytest.mark.parametrize("lora", [False, True])
def test_mean_pooling_trains_saves_and_reloads_the_same_scores(tmp_path, lora):
    import dataclasses

    import torch

    from tasks.reward_model import meta
    from tasks.reward_training import RewardModel, train_reward_model

    pairs = [(f"Q: Review the pie.\nA: The pie was {g}.", f"Q: Review the pie.\nA: The pie was {b}.")
             for g, b in [("great", "awful"), ("lovely", "bland"), ("perfect", "stale"), ("tasty", "cold")] * 3]
    cfg = dataclasses.replace(RewardConfig(), pooling="mean", lora=lora, epochs=1.0, batch_size=4, warmup_steps=0,
                              max_length=32)
    stats = train_reward_model(pairs[:10], pairs[10:], cfg, tmp_path / "rm")
    assert meta(tmp_path / "rm") == {"max_length": 32, "pooling": "mean"}
    rm = RewardModel(tmp_path / "rm", 32)
    assert type(rm.model).__name__ == "MeanPoolReward"
    # Padding does not move a score: the mean runs over the attention mask only.
    short, long = pairs[0][0], pairs[0][0] + " It was served warm with cream and we ate all of it."
    assert rm.score([short])[0] == pytest.approx(rm.score([short, long])[0], abs=1e-5)
    held = pairwise_stats(rm.score([c for c, _ in pairs[10:]]), rm.score([r for _, r in pairs[10:]]))
    assert held["accuracy"] == pytest.approx(stats["heldout_accuracy"])
    assert not torch.equal(rm.model.score.weight, torch.zeros_like(rm.model.score.weight))
