"""The pure math of PPO for RLHF, one small function per detail (no models, no I/O).

Shapes: one response per row, one token per column, ``mask`` 1.0 on response
tokens and 0.0 on padding. Follows "The N Implementation Details of RLHF with
PPO" (Huang et al., 2022) and CleanRL's ``ppo.py``:

- the reward model's score lands on the response's last token; a response that
  never produced EOS gets ``missing_eos_penalty`` instead (:func:`score_with_eos_penalty`);
- a per-token KL penalty to the frozen reference is part of the reward
  (:func:`per_token_rewards`), with a fixed or adaptive coefficient
  (:class:`FixedKL`, :class:`AdaptiveKL`);
- rewards are scaled by their standard deviation (no shift, so no length bias), advantages whitened
  (:func:`whiten`);
- GAE with gamma and lambda (:func:`gae`);
- a clipped policy ratio (:func:`policy_loss`) and a clipped value loss (:func:`value_loss`);
- explained variance of the value head (:func:`explained_variance`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance over the masked entries (Bessel's correction, as in TRL's ``masked_var``)."""
    n = mask.sum()
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return var * n / (n - 1).clamp(min=1.0)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """``(x - mean) / std`` over the masked entries; ``shift_mean=False`` scales only: ``x / std`` (rewards).

    Rewards are scaled, never shifted: ``(x - mean) / std + mean`` (TRL's form) equals
    ``x / std + mean * (1 - 1 / std)``, a constant added to every response token, so with gamma 1 each
    response's return would gain that constant times its length."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean if shift_mean else x) * torch.rsqrt(var + eps)
    return out * mask


def score_with_eos_penalty(scores: torch.Tensor, ended: torch.Tensor, penalty: float | None) -> torch.Tensor:
    """The reward model's scores, with ``penalty`` in place of the score of a response that has no EOS
    (``penalty`` None leaves scores as they are)."""
    if penalty is None:
        return scores
    return torch.where(ended, scores, torch.full_like(scores, penalty))


def per_token_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                      mask: torch.Tensor, kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(rewards, kl): ``-kl_coef * (logp - ref_logp)`` on every response token, plus the score on the last.

    ``kl`` is the per-token estimate ``logp - ref_logp`` (masked); its row sum is the sequence KL.
    """
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = (mask.cumsum(1) == mask.sum(1, keepdim=True)) & (mask > 0)      # the last response token per row
    rewards = rewards + last.float() * scores.unsqueeze(1)
    return rewards * mask, kl


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation: (advantages, returns), zero past each response's end.

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` (V after the last token is 0);
    ``A_t = delta_t + gamma * lam * A_{t+1}``; returns are ``A + V``.
    """
    rewards, values = rewards * mask, values * mask
    adv = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        next_v = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_v - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        adv[:, t] = last
    return adv, (adv + values) * mask


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, clip: float = 0.2) -> tuple[torch.Tensor, dict]:
    """Clipped surrogate ``mean(max(-A r, -A clip(r, 1-e, 1+e)))`` with ``r = exp(logp - old_logp)``;
    also ``clipfrac`` (share of tokens where the clipped term won) and ``approx_kl`` (``mean((r-1) - log r)``)."""
    log_ratio = (logprobs - old_logprobs) * mask
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    stats = {"clipfrac": float(masked_mean((clipped > unclipped).float(), mask)),
             "approx_kl": float(masked_mean((ratio - 1) - log_ratio, mask))}
    return loss, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float = 0.2) -> tuple[torch.Tensor, dict]:
    """``0.5 * mean(max((V - R)^2, (clip(V, V_old - e, V_old + e) - R)^2))`` and the clipped share."""
    v_clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    a, b = (values - returns) ** 2, (v_clipped - returns) ** 2
    return 0.5 * masked_mean(torch.maximum(a, b), mask), {"clipfrac": float(masked_mean((b > a).float(), mask))}


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """``1 - Var(R - V) / Var(R)``: 1 is a perfect value head, 0 no better than the mean, NaN when Var(R) = 0."""
    var_r = float(masked_var(returns, mask))
    return float("nan") if var_r == 0 else 1 - float(masked_var(returns - values, mask)) / var_r


@dataclass
class FixedKL:
    value: float

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value


@dataclass
class AdaptiveKL:
    """Ziegler et al. (2019): ``e = clip(KL / target - 1, -0.2, 0.2)``; ``coef *= 1 + e * n_steps / horizon``."""
    value: float
    target: float
    horizon: float

    def update(self, current_kl: float, n_steps: int) -> float:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        if not math.isfinite(self.value):
            raise ValueError("adaptive KL coefficient is not finite")
        return self.value
