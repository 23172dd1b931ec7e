"""``ppo``: the project's own PPO for RLHF, one loop over the pure functions of ``ppo_math``.

TRL no longer ships a PPO trainer, so this module is written in the plain style
of CleanRL's ``ppo.py`` and follows "The N Implementation Details of RLHF with
PPO" (Huang et al., 2022). Each update:

1. **Rollout.** ``rollout_batch_size`` training prompts, one sampled response
   each (logits divided by ``temperature``). Dropout stays off throughout.
2. **Score.** The ``optimize.reward`` judges score each response; a response
   that never produced EOS gets ``missing_eos_penalty`` instead.
3. **Reward.** A per-token KL penalty ``-kl_coef * (log pi - log pi_ref)`` on
   every token plus the score on the last token; ``kl_coef`` fixed or adaptive
   (``kl_target``, ``kl_horizon``). Rewards are divided by their standard
   deviation over the rollout, never shifted, so a response's return does not
   grow or shrink with its length (``whiten_rewards``).
4. **Advantages.** GAE with ``gamma`` and ``lam`` over the value head's
   estimates; advantages whitened.
5. **Learn.** ``ppo_epochs`` passes over shuffled minibatches
   (``num_minibatches``, each split into ``grad_accum`` micro-batches):
   clipped ratio loss, clipped value loss times ``vf_coef``, minus
   ``entropy_coef`` times the entropy.

The value head reads the last hidden state: on the policy's own backbone
(``value_model: shared``) or on a separate value model (``separate``), a copy
of the champion, or with ``value_init: reward_model`` a copy of the reward
model (backbone and score head; it must tokenize as the policy does). A zero
head makes the first advantages the whitened returns. Logged every update: ``objective/kl``, ``objective/rlhf_reward``,
``objective/scores``, ``policy/approx_kl``, ``policy/clipfrac``,
``policy/entropy``, ``val/clipfrac``, ``val/explained_variance``,
``response/length``, ``response/eos_rate`` and ``objective/kl_coef``.

Failure signs: ``val/explained_variance`` staying near or below 0 (the value
head learns nothing and advantages are noise), ``policy/approx_kl`` above
about 0.05 or ``policy/clipfrac`` above 0.3 (steps too large: lower ``lr``),
``objective/kl`` climbing while ``objective/scores`` stalls (reward hacking
held back only by the KL term).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tasks.algorithms.base import precision_of
from tasks.algorithms.dist import average_gradients, mean_over, span, world
from tasks.errors import ConfigError, RFTError
from tasks.options import opt
from tasks.policy import load_policy
from tasks.precision import Scaler, autocast
from tasks.reward_model import load_reward_model
from tasks.rollout import sample, token_logprobs


@dataclass(frozen=True)
class Config:
    lr: float = opt(2e-5, "Adam learning rate (constant).", gt=0)
    updates: int = opt(40, "PPO updates: each samples a rollout batch and learns on it.", ge=1)
    rollout_batch_size: int = opt(32, "Prompts per rollout (one response each).", ge=2)
    ppo_epochs: int = opt(2, "Passes over each rollout batch.", ge=1)
    num_minibatches: int = opt(2, "Minibatches per pass (each one optimizer step).", ge=1)
    grad_accum: int = opt(1, "Micro-batches per minibatch, gradients accumulated.", ge=1)
    max_new_tokens: int = opt(48, "Longest response in tokens.", ge=1)
    temperature: float = opt(1.0, "Sampling temperature; logits are divided by it for every log-probability.",
                             gt=0)
    kl_coef: float = opt(0.1, "Coefficient of the per-token KL penalty to the champion (initial value when "
                         "adaptive).", ge=0)
    kl_controller: str = opt("fixed", "fixed, or adaptive (Ziegler et al.): kl_coef moves to keep the KL near "
                             "kl_target.", choices=("fixed", "adaptive"))
    kl_target: float = opt(6.0, "Adaptive controller: target KL in nats per response.", gt=0)
    kl_horizon: float = opt(10000.0, "Adaptive controller: horizon in responses.", gt=0)
    gamma: float = opt(1.0, "GAE discount.", ge=0, le=1)
    lam: float = opt(0.95, "GAE lambda.", ge=0, le=1)
    cliprange: float = opt(0.2, "Clip range of the policy ratio.", gt=0)
    cliprange_value: float = opt(0.2, "Clip range of the value update.", gt=0)
    vf_coef: float = opt(0.1, "Weight of the value loss.", ge=0)
    entropy_coef: float = opt(0.0, "Weight of the entropy bonus (keeps responses diverse).", ge=0)
    whiten_rewards: bool = opt(True, "Divide the per-token rewards of each rollout by their standard deviation "
                               "(scale only: nothing subtracted or added, so no per-token constant that would "
                               "favour short or long responses).")
    missing_eos_penalty: float | None = opt(None, "Score given to a response that never produced EOS instead of "
                                            "its reward; null keeps its reward.")
    value_model: str = opt("shared", "shared (a value head on the policy's backbone) or separate (a value model "
                           "of its own).", choices=("shared", "separate"))
    value_init: str = opt("zero", "zero (a zero head; a separate value model starts from the champion) or "
                          "reward_model (value_model separate: a copy of the first reward_model judge of "
                          "optimize.reward, backbone and score head; it must read the policy's tokens).",
                          choices=("zero", "reward_model"))
    max_grad_norm: float = opt(1.0, "Gradient clipping norm.", gt=0)

    def check(self, params) -> None:
        """Checks against the rest of params.yaml, made on load."""

        if self.value_init == "reward_model" and \
                not any(params.judges[n].kind == "reward_model" for n in params.optimize.reward):
            raise ConfigError("optimize.ppo.value_init: reward_model starts the value model from a reward model, "
                              "but no judge of optimize.reward is of kind reward_model")

    def __post_init__(self):
        if self.value_init == "reward_model" and self.value_model != "separate":
            raise ConfigError("value_init: reward_model starts a separate value model from the reward model; set "
                              "value_model: separate")
        if self.rollout_batch_size % (self.num_minibatches * self.grad_accum):
            raise ConfigError(f"rollout_batch_size: {self.rollout_batch_size} must split evenly into "
                              f"num_minibatches x grad_accum = {self.num_minibatches * self.grad_accum} micro-batches")


def value_head(hidden: int):
    """A scalar head initialised at zero, so every state's first value estimate is 0."""
    import torch

    head = torch.nn.Linear(hidden, 1)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    return head


def value_from_reward_model(path, tok):
    """(backbone, head) of a reward model, to start a separate value model from: it must tokenize as the
    policy does (the value model reads the policy's token ids), and its score head must be one linear
    output."""
    from torch import nn
    from transformers import AutoTokenizer

    key = "optimize.ppo.value_init"
    theirs = AutoTokenizer.from_pretrained(str(path)).get_vocab()
    if theirs != tok.get_vocab():
        raise ConfigError(f"{key}: reward_model needs a reward model on the policy's tokenizer; {path} has a "
                          f"vocabulary of {len(theirs)} tokens, the policy's has {len(tok.get_vocab())} "
                          "(use value_init: zero)")
    rm = load_reward_model(path)
    head = getattr(rm, "score", None) or getattr(rm, "classifier", None)
    if not isinstance(head, nn.Linear) or head.out_features != 1:
        raise ConfigError(f"{key}: {path} has no single linear score head to start the value head from")
    return rm.base_model, head


class Critic:
    """The value function V(s_t) on response positions: a head on the policy's backbone or on its own."""

    def __init__(self, policy, backbone=None, head=None):
        hidden = policy.config.hidden_size if hasattr(policy.config, "hidden_size") else policy.config.n_embd
        self.backbone = backbone            # None: shared with the policy
        self.head = head if head is not None else value_head(hidden)

    def parameters(self):
        return [*self.head.parameters(), *(self.backbone.parameters() if self.backbone is not None else [])]

    def state_dict(self):
        return {"head": self.head.state_dict(),
                "backbone": self.backbone.state_dict() if self.backbone is not None else None}

    def load_state_dict(self, state):
        self.head.load_state_dict(state["head"])
        if self.backbone is not None:
            self.backbone.load_state_dict(state["backbone"])


def forward(policy, critic: Critic, input_ids, attention_mask, prompt_len: int, temperature: float):
    """(logprobs, entropy, values) on the response positions, each (N, T), with gradients.

    Position ``t`` of the response is predicted from the state just before it, so logits and hidden states
    are read at ``prompt_len - 1 .. -2``; logits are divided by the sampling temperature."""
    import torch

    position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)
    out = policy(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                 output_hidden_states=critic.backbone is None)
    logits = out.logits[:, prompt_len - 1:-1].float() / temperature
    logp_all = torch.log_softmax(logits, -1)
    logprobs = logp_all.gather(-1, input_ids[:, prompt_len:].unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    if critic.backbone is None:
        hidden = out.hidden_states[-1]
    else:
        hidden = critic.backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                 output_hidden_states=True).hidden_states[-1]
    values = critic.head(hidden[:, prompt_len - 1:-1].float()).squeeze(-1)
    return logprobs, entropy, values


def _checkpoint(folder: Path) -> Path | None:
    done = sorted(folder.glob("ppo-*.pt"), key=lambda p: int(p.stem.split("-")[1])) if folder.is_dir() else []
    return done[-1] if done else None


def load_checkpoint(path: Path) -> dict:
    """A PPO checkpoint's tensors and numbers, read with ``weights_only=True``: a checkpoint is a pickle, and a full
    unpickle runs whatever code the file names, so anyone who can write the project folder would run code here on
    resume. A file holding anything but tensors, numbers, strings and containers of them is refused."""
    import pickle

    import torch

    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise RFTError(f"{path}: not a PPO checkpoint this project wrote (only tensors and numbers are loaded: "
                       f"{first}). Delete it (or the folder {path.parent}) to train from the start.") from None


def _save(folder: Path, update: int, state: dict) -> None:
    """Write the checkpoint of ``update`` atomically (temp file, then rename) and drop older ones."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".ppo-{update}.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, folder / f"ppo-{update}.pt")
    for old in folder.glob("ppo-*.pt"):
        if int(old.stem.split("-")[1]) < update:
            old.unlink()


def train(run):
    import functools

    import torch

    # lazy: ppo_math imports torch at its top; see LAZY_IMPORTS in tests/test_architecture.py
    from tasks.algorithms import ppo_math as pm

    cfg, policy, ref = run.cfg, run.policy, run.reference
    policy.eval()                      # dropout off, for rollouts and learning alike
    backbone, head = None, None
    if cfg.value_init == "reward_model":
        backbone, head = value_from_reward_model(run.reward_model_path, run.tok)
    elif cfg.value_model == "separate":
        backbone, _ = load_policy(run.champion)
    if backbone is not None:
        backbone.to(policy.device).eval()
    critic = Critic(policy, backbone, head)
    critic.head.to(policy.device)
    params = [p for p in policy.parameters() if p.requires_grad] + critic.parameters()
    optim = torch.optim.Adam(params, lr=cfg.lr, eps=1e-5)     # on fp32 master weights
    # Mixed precision (train.precision): the old and the new log-probs and values come from the same autocast, so
    # the ratio starts at exactly 1; the losses and the whitening stay fp32.
    mixed = functools.partial(autocast, precision_of(run), policy.device.type)
    scaler = Scaler(precision_of(run), policy.device.type)
    controllers = {"fixed": lambda: pm.FixedKL(cfg.kl_coef),
                   "adaptive": lambda: pm.AdaptiveKL(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon)}
    kl_ctl = controllers[cfg.kl_controller]()
    prompts = list(run.data)
    seed = run.common.seed
    order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(seed)).tolist()
    start, resumed = 1, False
    ckpt = _checkpoint(run.checkpoint_dir)
    if ckpt is not None:
        state = load_checkpoint(ckpt)
        policy.load_state_dict(state["policy"])
        critic.load_state_dict(state["critic"])
        optim.load_state_dict(state["optim"])
        kl_ctl.value = state["kl_coef"]
        start, resumed = state["update"] + 1, True
        print(f"optimize: resuming PPO after update {state['update']} ({ckpt})", flush=True)
        run.log("resumed_from_step", float(state["update"]), 0)
    else:
        run.probe(policy, 0)
    # Under `accelerate launch` each process rolls out its share of the batch and the gradients are averaged.
    rank, size = world()
    lo, hi = span(cfg.rollout_batch_size, rank, size)
    n = hi - lo
    if n % (cfg.num_minibatches * cfg.grad_accum):
        raise ConfigError(f"optimize.ppo.rollout_batch_size: {cfg.rollout_batch_size} over {size} processes leaves "
                          f"{n} per process, not a multiple of num_minibatches x grad_accum "
                          f"({cfg.num_minibatches} x {cfg.grad_accum})")
    micro = n // (cfg.num_minibatches * cfg.grad_accum)
    last = {}
    for update in range(start, cfg.updates + 1):
        idx = [order[((update - 1) * cfg.rollout_batch_size + i) % len(order)] for i in range(lo, hi)]
        batch = [prompts[i] for i in idx]
        with torch.no_grad():
            r = sample(policy, run.tok, batch, 1, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                       seed=seed * 100_003 + update, device=policy.device.type)
            mask = r.response_mask.float()
            with mixed():
                logprobs = token_logprobs(policy, r, cfg.temperature).float()
                ref_logprobs = token_logprobs(ref, r, cfg.temperature).float()
                _, _, values = forward(policy, critic, r.input_ids, r.attention_mask, r.prompt_len, cfg.temperature)
            values = values.float() * mask
            raw = torch.tensor(run.reward(batch, r.texts), dtype=torch.float32, device=mask.device)
            ended = torch.tensor(r.ended, device=mask.device)
            scores = pm.score_with_eos_penalty(raw, ended, cfg.missing_eos_penalty)
            rewards, kl = pm.per_token_rewards(scores, logprobs, ref_logprobs, mask, kl_ctl.value)
            if cfg.whiten_rewards:
                rewards = pm.whiten(rewards, mask, shift_mean=False)
            advantages, returns = pm.gae(rewards, values, mask, cfg.gamma, cfg.lam)
            advantages = pm.whiten(advantages, mask)
        stats: dict[str, list] = {"approx_kl": [], "clipfrac": [], "vf_clipfrac": [], "entropy": [], "pg_loss": [],
                                  "vf_loss": []}
        gen = torch.Generator().manual_seed(seed * 7919 + update)
        for _ in range(cfg.ppo_epochs):
            perm = torch.randperm(n, generator=gen)
            for mb in range(cfg.num_minibatches):
                optim.zero_grad()
                for acc in range(cfg.grad_accum):
                    j = perm[(mb * cfg.grad_accum + acc) * micro:(mb * cfg.grad_accum + acc + 1) * micro]
                    with mixed():
                        new_logp, entropy, new_values = forward(policy, critic, r.input_ids[j], r.attention_mask[j],
                                                                r.prompt_len, cfg.temperature)
                    new_logp, entropy, new_values = new_logp.float(), entropy.float(), new_values.float()
                    m = mask[j]
                    pg, pg_stats = pm.policy_loss(new_logp, logprobs[j], advantages[j], m, cfg.cliprange)
                    vf, vf_stats = pm.value_loss(new_values, values[j], returns[j], m, cfg.cliprange_value)
                    ent = pm.masked_mean(entropy, m)
                    loss = pg + cfg.vf_coef * vf - cfg.entropy_coef * ent
                    scaler.backward(loss / cfg.grad_accum)
                    for k, v in (("approx_kl", pg_stats["approx_kl"]), ("clipfrac", pg_stats["clipfrac"]),
                                 ("vf_clipfrac", vf_stats["clipfrac"]), ("entropy", float(ent)),
                                 ("pg_loss", float(pg)), ("vf_loss", float(vf))):
                        stats[k].append(v)
                average_gradients(params)
                scaler.step(optim, params, cfg.max_grad_norm)
        seq_kl = kl.sum(1)
        last = mean_over({"objective/kl": float(seq_kl.mean()), "objective/scores": float(scores.mean()),
                          "objective/rlhf_reward": float((scores - kl_ctl.value * seq_kl).mean()),
                          "objective/kl_coef": kl_ctl.value,
                          "policy/approx_kl": _avg(stats["approx_kl"]), "policy/clipfrac": _avg(stats["clipfrac"]),
                          "policy/entropy": _avg(stats["entropy"]), "val/clipfrac": _avg(stats["vf_clipfrac"]),
                          "val/explained_variance": pm.explained_variance(values, returns, mask),
                          "loss/policy": _avg(stats["pg_loss"]), "loss/value": _avg(stats["vf_loss"]),
                          "response/length": float(mask.sum(1).mean()),
                          "response/eos_rate": float(ended.float().mean())})
        mean_kl = last["objective/kl"]
        for k, v in last.items():
            run.log(k, v, update)
        kl_ctl.update(mean_kl, cfg.rollout_batch_size)
        if update % run.common.log_every == 0 or update == cfg.updates:
            run.probe(policy, update)
        if run.common.checkpoint_every and update % run.common.checkpoint_every == 0 and update < cfg.updates \
                and rank == 0:
            _save(run.checkpoint_dir, update, {"update": update, "policy": policy.state_dict(),
                                               "critic": critic.state_dict(), "optim": optim.state_dict(),
                                               "kl_coef": kl_ctl.value})
    return policy, {"steps": cfg.updates, "resumed": resumed, "prompts": len(prompts),
                          "explained_variance": last.get("val/explained_variance", float("nan"))}


def _avg(xs: list) -> float:
    return sum(xs) / len(xs) if xs else float("nan")
