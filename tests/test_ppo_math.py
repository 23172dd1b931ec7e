"""PPO's pure functions on 3-element tensors, each expected value worked out by hand in the comments."""

import math

import pytest
import torch

from tasks.algorithms.ppo_math import (AdaptiveKL, FixedKL, explained_variance, gae, per_token_rewards,
                                       policy_loss, score_with_eos_penalty, value_loss, whiten)

ONES = torch.ones(1, 3)


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_whiten_with_and_without_the_mean():
    # x = 2, 4, 6: mean 4, unbiased variance (4 + 0 + 4) / 2 = 4, std 2 -> -1, 0, 1
    assert torch.allclose(whiten(t([2, 4, 6]), ONES), t([-1, 0, 1]), atol=1e-6)
    # rewards are scaled only, nothing subtracted or added back: x / 2 -> 1, 2, 3
    assert torch.allclose(whiten(t([2, 4, 6]), ONES, shift_mean=False), t([1, 2, 3]), atol=1e-6)
    # masked entries neither count nor survive: 2, 4 and a padded 100 -> mean 3, var 2, std 1.414
    out = whiten(t([2, 4, 100]), t([1, 1, 0]))
    assert torch.allclose(out, t([-1 / math.sqrt(2), 1 / math.sqrt(2), 0]), atol=1e-6)


def test_reward_whitening_adds_no_length_bias():
    # Two responses scored 1.0 each, 1 and 3 tokens long, no KL (logp = ref): per-token rewards
    # A = (1 | pad, pad), B = (0, 0, 1). The 4 response tokens 1, 0, 0, 1: mean 0.5, unbiased variance
    # 4 * 0.25 / 3 = 1/3, std 1/sqrt(3). Scaled only: A = (sqrt 3), B = (0, 0, sqrt 3): both responses
    # return sqrt 3 (gamma 1, lambda 1, V 0: the return at the first token is the row sum).
    # The old form (x - 0.5) * sqrt 3 + 0.5 gave every token 0.5 * (1 - sqrt 3) = -0.366 extra:
    # A 1.366 but B 1.366 - 2 * 0.366 = 0.634, the longer response worse for the same score.
    mask = t([1, 0, 0], [1, 1, 1])
    logp = t([-1, -1, -1], [-1, -1, -1])
    rewards, _ = per_token_rewards(torch.tensor([1.0, 1.0]), logp, logp, mask, 0.1)
    white = whiten(rewards, mask, shift_mean=False)
    r3 = math.sqrt(3)
    assert torch.allclose(white, t([r3, 0, 0], [0, 0, r3]), atol=1e-5)
    _, returns = gae(white, torch.zeros_like(white), mask, gamma=1.0, lam=1.0)
    assert torch.allclose(returns[:, 0], torch.tensor([r3, r3]), atol=1e-5)


def test_missing_eos_penalty():
    # the second response never ended: its score 5.0 becomes the penalty -3
    out = score_with_eos_penalty(torch.tensor([0.5, 5.0, 2.0]), torch.tensor([True, False, True]), -3.0)
    assert out.tolist() == [0.5, -3.0, 2.0]
    assert score_with_eos_penalty(torch.tensor([5.0]), torch.tensor([False]), None).tolist() == [5.0]


def test_per_token_rewards_kl_and_score_on_the_last_token():
    # logp - ref = (-1 + 1.5, -2 + 2, masked) = (0.5, 0, 0); kl_coef 0.1 -> -0.05, 0, 0;
    # the last response token is index 1 (index 2 is padding): it also gets the score 1.0
    rewards, kl = per_token_rewards(torch.tensor([1.0]), t([-1, -2, -3]), t([-1.5, -2, -2]), t([1, 1, 0]), 0.1)
    assert torch.allclose(rewards, t([-0.05, 1.0, 0.0]))
    assert torch.allclose(kl, t([0.5, 0.0, 0.0]))


def test_gae_by_hand():
    # gamma 1, lambda 0.5, V = 0.5 everywhere, reward 1 on the last token:
    # t=2: delta = 1 + 0 - 0.5 = 0.5, A = 0.5
    # t=1: delta = 0 + 0.5 - 0.5 = 0, A = 0 + 0.5 * 0.5 = 0.25
    # t=0: delta = 0, A = 0.5 * 0.25 = 0.125; returns = A + V = 0.625, 0.75, 1.0
    adv, ret = gae(t([0, 0, 1]), t([0.5, 0.5, 0.5]), ONES, gamma=1.0, lam=0.5)
    assert torch.allclose(adv, t([0.125, 0.25, 0.5])) and torch.allclose(ret, t([0.625, 0.75, 1.0]))
    # padding after token 1: its reward 9 and value are ignored and V after the end is 0:
    # t=1: delta = 1 + 0 - 0.5 = 0.5; t=0: delta = 0 + 0.5 - 0.5 = 0, A = 0.5 * 0.5 = 0.25
    adv, ret = gae(t([0, 1, 9]), t([0.5, 0.5, 0.5]), t([1, 1, 0]), gamma=1.0, lam=0.5)
    assert torch.allclose(adv, t([0.25, 0.5, 0.0])) and torch.allclose(ret, t([0.75, 1.0, 0.0]))
    # gamma discounts the next value: gamma 0.5, lambda 1, rewards 0, 0, 1, V = 0:
    # A2 = 1; A1 = 0 + 0.5 * 1 = 0.5; A0 = 0.25
    adv, _ = gae(t([0, 0, 1]), t([0, 0, 0]), ONES, gamma=0.5, lam=1.0)
    assert torch.allclose(adv, t([0.25, 0.5, 1.0]))


def test_clipped_policy_loss_by_hand():
    # ratios 1.0, 1.5, 0.5 with advantages 1, 1, -1 and clip 0.2:
    # token 0: -1*1 = -1 both ways                       -> -1
    # token 1: unclipped -1.5, clipped -1*1.2 = -1.2     -> max -1.2 (clipped)
    # token 2: unclipped 0.5, clipped 1*0.8 = 0.8        -> max 0.8 (clipped)
    # loss = (-1 - 1.2 + 0.8) / 3 = -0.46667; clipfrac 2/3
    # approx_kl = mean((r - 1) - log r) = (0 + (0.5 - ln 1.5) + (-0.5 + ln 2)) / 3 = 0.095894
    logp = torch.log(t([1.0, 1.5, 0.5]))
    loss, stats = policy_loss(logp, torch.zeros(1, 3), t([1, 1, -1]), ONES, clip=0.2)
    assert float(loss) == pytest.approx(-1.4 / 3, abs=1e-6)
    assert stats["clipfrac"] == pytest.approx(2 / 3) and stats["approx_kl"] == pytest.approx(0.095894, abs=1e-6)
    # no change from the old policy: ratio 1 everywhere, loss = -mean(A), nothing clipped
    loss, stats = policy_loss(torch.zeros(1, 3), torch.zeros(1, 3), t([1, 2, 3]), ONES)
    assert float(loss) == pytest.approx(-2.0) and stats == {"clipfrac": 0.0, "approx_kl": 0.0}


def test_clipped_value_loss_by_hand():
    # V = 1.0, 2.0, 0.0; V_old = 1; returns 1.5, 3.0, 1.5; clip 0.2 -> V_clipped = 1.0, 1.2, 0.8
    # unclipped (V - R)^2 = 0.25, 1.0, 2.25; clipped (Vc - R)^2 = 0.25, 3.24, 0.49
    # max = 0.25, 3.24, 2.25 -> 0.5 * 5.74 / 3 = 0.956667; the clipped term won on token 1: 1/3
    loss, stats = value_loss(t([1.0, 2.0, 0.0]), t([1.0, 1.0, 1.0]), t([1.5, 3.0, 1.5]), ONES, clip=0.2)
    assert float(loss) == pytest.approx(0.956667, abs=1e-6) and stats["clipfrac"] == pytest.approx(1 / 3)


def test_explained_variance():
    assert explained_variance(t([1, 2, 3]), t([1, 2, 3]), ONES) == pytest.approx(1.0)
    # V = 2 everywhere: residual -1, 0, 1 has the returns' own variance (1) -> 1 - 1/1 = 0
    assert explained_variance(t([2, 2, 2]), t([1, 2, 3]), ONES) == pytest.approx(0.0)
    assert math.isnan(explained_variance(t([1, 2, 3]), t([2, 2, 2]), ONES))


def test_kl_controllers():
    assert FixedKL(0.05).update(100.0, 10) == 0.05
    c = AdaptiveKL(0.1, target=6.0, horizon=10000)
    # KL 9 over target 6: error 0.5, clipped to 0.2 -> 0.1 * (1 + 0.2 * 100 / 10000) = 0.1002
    assert c.update(9.0, 100) == pytest.approx(0.1002)
    # KL 3: error -0.5 -> -0.2 -> 0.1002 * (1 - 0.002) = 0.0999996
    assert c.update(3.0, 100) == pytest.approx(0.0999996)
    # on target: no change
    assert c.update(6.0, 100) == pytest.approx(0.0999996)
