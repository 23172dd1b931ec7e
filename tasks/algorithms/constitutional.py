"""``constitutional``: Constitutional AI (Bai et al., 2022) on the task's rubric.

The constitution is the rubric's ``principles`` (each a critique request and a
revision request), or one principle per criterion when the file has none
(``tasks/rubric.py``).

**Supervised phase.** For each of ``prompts`` training prompts: the policy
answers; then, for ``revisions`` rounds, a principle is drawn (seeded), the
critic writes a critique of the current reply under that principle's critique
request, and a revision under its revision request. The policy is fine-tuned
(TRL ``SFTTrainer``, loss on the reply only) on the final revisions. Every
step's text is logged as the MLflow table ``constitutional/revisions.json``.

**RL phase** (``rl: dpo``). The fine-tuned policy answers each of
``rl_prompts`` prompts twice at ``rl_temperature``; ``rl_judge`` (an LLM or
HTTP judge reads the rubric, principles included, in its question) picks the
better one: AI preferences, on which DPO runs with a frozen copy of the
supervised (SL-CAI) model as its reference, the model the phase starts from, as
in Bai et al. (2022). ``rl: grpo`` instead runs GRPO (``rl_steps``,
``rl_num_generations``, sampling at ``rl_temperature``) against the
``optimize.reward`` judges: the cycle's reward model, a preference model of AI
labels when the label stage's judge reads the rubric; its KL reference is the
supervised model too (``anchored_to_itself``: TRL's ``GRPOTrainer`` builds the
reference from the folder the policy names, or with LoRA by disabling the
adapters, so the supervised model is saved and named, or its adapters merged).
``rl: none`` stops after the supervised phase.

The critic is ``critic``: a judge of kind ``llm`` (a local instruction model)
or ``http`` (a server), or null for the policy itself. On the tiny default
policy the mechanics run end to end; the texts only become meaningful with a
capable instruction model as the critic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tasks import rollout
from tasks.algorithms import base, grpo
from tasks.algorithms.base import continue_steps
from tasks.algorithms.dist import sharded
from tasks.algorithms.dpo import check_label_smoothing, dpo_args
from tasks.algorithms.online_dpo import round_pairs
from tasks.errors import ConfigError
from tasks.options import opt
from tasks.prompting import as_messages, completion_text, format_prompt
from tasks.rollout import context_length, fit_rows


@dataclass(frozen=True)
class Config:
    critic: str | None = opt(None, "The judge (kind llm or http) that writes critiques and revisions; null: the "
                             "policy itself.")
    prompts: int = opt(64, "Training prompts of the supervised phase.", ge=1)
    revisions: int = opt(1, "Critique-revision rounds per prompt, each under a freshly drawn principle.", ge=1)
    max_new_tokens: int = opt(48, "Longest reply, critique or revision in tokens.", ge=1)
    temperature: float = opt(0.7, "Sampling temperature of replies, critiques and revisions (0: greedy).", ge=0)
    lr: float = opt(1e-4, "Peak learning rate of the supervised fine-tuning (linear decay).", gt=0)
    epochs: float = opt(2.0, "Passes over the revisions.", gt=0)
    batch_size: int = opt(16, "Revisions per optimizer step.", ge=1)
    rl: str = opt("dpo", "RL phase: dpo on AI preferences from rl_judge; grpo against the optimize.reward judges "
                  "(the cycle's reward model, trained on the labels an AI judge gave under the rubric); or none.",
                  choices=("dpo", "grpo", "none"))
    rl_steps: int = opt(40, "rl grpo: optimizer steps.", ge=1)
    rl_num_generations: int = opt(8, "rl grpo: completions per prompt (4 prompts per step).", ge=2)
    rl_judge: str = opt("reward", "The judge (a name in the judges section) that compares pairs in the RL phase.")
    rl_prompts: int = opt(256, "Prompts of the RL phase (two replies each).", ge=1)
    rl_temperature: float = opt(0.7, "Sampling temperature of the RL phase: the two replies per prompt (rl dpo) "
                                "or GRPO's completions (rl grpo).", gt=0)
    beta: float = opt(0.1, "KL strength of the RL phase: DPO beta against the supervised model (rl dpo), GRPO's "
                      "KL coefficient against the supervised (SL-CAI) model (rl grpo).", gt=0)
    rl_epochs: float = opt(2.0, "DPO passes over the AI preference pairs.", gt=0)
    loss_type: str = opt("sigmoid", "TRL DPO loss variant of the RL phase.", choices=("sigmoid", "ipo", "robust",
                                                                                       "hinge"))
    label_smoothing: float = opt(0.0, "cDPO (sigmoid) / robust label noise of the RL phase; ipo and hinge refuse "
                                 "it.", ge=0, lt=0.5)

    def __post_init__(self):
        check_label_smoothing(self.loss_type, self.label_smoothing)

    def check(self, params) -> None:
        """Checks against the rest of params.yaml, made on load: the critic must write text."""

        if self.critic is not None and params.judges[self.critic].kind not in ("llm", "http"):
            raise ConfigError(f"optimize.constitutional.critic: {self.critic!r} is a "
                              f"{params.judges[self.critic].kind} judge; the critic writes text: name an llm or "
                              "http judge, or null for the policy itself")

    judge_keys = ("rl_judge", "critic")       # the keys that name judges (Algorithm.judges)


def critique_request(prompt, reply: str, principle) -> list[dict]:
    """The conversation the critic answers with a critique: the user's request, the reply, the principle."""

    return [*as_messages(prompt), {"role": "assistant", "content": reply},
            {"role": "user", "content": f"Critique request: {principle.critique}"}]


def revision_request(prompt, reply: str, critique: str, principle) -> list[dict]:
    """The conversation the critic answers with a revision: the critique exchange, then the revision request."""
    return [*critique_request(prompt, reply, principle), {"role": "assistant", "content": critique},
            {"role": "user", "content": f"Revision request: {principle.revision} Reply with the revised "
                                        "response only."}]


def draw_principles(n_prompts: int, rounds: int, n_principles: int, seed: int) -> list[list[int]]:
    """For each prompt, the principle index of each round: uniform draws from a seeded generator."""
    import random

    rng = random.Random(seed)
    return [[rng.randrange(n_principles) for _ in range(rounds)] for _ in range(n_prompts)]


def frozen_copy(model):
    """A frozen copy of ``model``, LoRA adapters merged into it: the reference of the RL phase."""
    import copy

    ref = copy.deepcopy(model)
    if hasattr(ref, "merge_and_unload"):       # a PEFT model: the reference is a plain model with its weights
        ref = ref.merge_and_unload()
    return ref.eval().requires_grad_(False)


class _PolicyCritic:
    """The policy itself as the critic (the tiny default): its completions, context-truncated from the left."""

    def __init__(self, model, tok):
        self.model, self.tok = model, tok

    def generate(self, prompts, *, max_new_tokens, temperature, seed=0):
        return rollout.complete(self.model, self.tok, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                        seed=seed)


def train(run):
    from dataclasses import replace

    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    cfg, policy, tok = run.cfg, run.policy, run.tok
    constitution = run.rubric.constitution()
    critic = run.judge(cfg.critic) if cfg.critic else _PolicyCritic(policy, tok)
    prompts = [run.data[i % len(run.data)] for i in range(cfg.prompts)]
    seed = run.common.seed
    policy.eval()
    draws = draw_principles(len(prompts), cfg.revisions, len(constitution), seed)

    def revise(part: list) -> list[tuple[str, str, dict]]:
        """(first reply, last revision, table row) for this share of (prompt, principle draws)."""
        if not part:
            return []
        ps = [p for p, _ in part]
        replies = rollout.complete(policy, tok, ps, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                           seed=seed)
        table = [{"prompt": format_prompt(p, tok)[-300:], "initial": r} for p, r in zip(ps, replies)]
        current = list(replies)
        for rnd in range(cfg.revisions):
            chosen = [constitution[d[rnd]] for _, d in part]
            critiques = critic.generate([critique_request(p, r, c) for p, r, c in zip(ps, current, chosen)],
                                        max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                        seed=seed + 1 + 2 * rnd)
            revised = critic.generate([revision_request(p, r, k, c) for p, r, k, c in
                                       zip(ps, current, critiques, chosen)],
                                      max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                      seed=seed + 2 + 2 * rnd)
            # An empty revision keeps the reply it would have replaced.
            current = [v or r for v, r in zip(revised, current)]
            for row, c, k, v in zip(table, chosen, critiques, current):
                row.update({f"principle_{rnd}": c.name, f"critique_{rnd}": k, f"revision_{rnd}": v})
        return list(zip(replies, current, table))

    # Under `accelerate launch` each process revises its share of the prompts.
    revised = sharded(revise, list(zip(prompts, draws)))
    replies, current, table = [r for r, _, _ in revised], [v for _, v, _ in revised], [t for _, _, t in revised]
    run.table(table, "constitutional/revisions.json")
    rows = [{"prompt": (fp := format_prompt(p, tok)), "completion": completion_text(fp, v)}
            for p, v in zip(prompts, current)]
    policy.train()
    sft = replace(run, checkpoint_dir=run.checkpoint_dir / "sft")
    args = base.trl_args(SFTConfig, sft, num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
                    max_length=context_length(policy), completion_only_loss=True, packing=False)
    # Prompts cut from the left so each revision and its EOS fit the context whole (tasks/rollout.py fit_rows).
    trainer = SFTTrainer(model=policy, args=args,
                         train_dataset=Dataset.from_list(fit_rows(tok, rows, args.max_length)),
                         processing_class=tok, callbacks=run.callbacks)
    sft_info = base.fit(trainer, sft, "sft")
    policy = trainer.model
    info = {"revised": len(rows), "changed_by_revision": sum(a != b for a, b in zip(replies, current)),
            "sft_loss": sft_info["train_loss"], "steps": sft_info["steps"]}
    rl_prompts = [run.data[(cfg.prompts + i) % len(run.data)] for i in range(cfg.rl_prompts)]
    continue_steps(run, info["steps"])              # the RL phase's steps follow the SFT phase's
    phases = {"none": lambda: (policy, info), "dpo": lambda: _rl_dpo(run, policy, rl_prompts, info),
              "grpo": lambda: _rl_grpo(run, policy, rl_prompts, info)}
    return phases[cfg.rl]()


def _rl_grpo(run, policy, rl_prompts: list, info: dict):
    """The RL phase as GRPO against the run's reward (the optimize.reward judges)."""
    from dataclasses import replace

    cfg = run.cfg
    section = grpo.Config(lr=cfg.lr, max_steps=cfg.rl_steps, batch_size=4 * cfg.rl_num_generations,
                          num_generations=cfg.rl_num_generations, max_completion_length=cfg.max_new_tokens,
                          temperature=cfg.rl_temperature, beta=cfg.beta)
    name = policy.config._name_or_path
    policy = anchored_to_itself(policy, run.checkpoint_dir / "sft-reference")
    policy.train()
    trained, out = grpo.train(replace(run, cfg=section, policy=policy, data=rl_prompts,
                                      checkpoint_dir=run.checkpoint_dir / "grpo"))
    trained.config._name_or_path = name
    return trained, {**info, "rl_loss": out["train_loss"], "steps": info["steps"] + out["steps"]}


def anchored_to_itself(policy, folder: Path):
    """``policy`` (the supervised model) made the KL reference that TRL's GRPOTrainer builds: TRL loads a full
    policy's reference from ``config._name_or_path`` (the champion's folder, as loaded), so the supervised model is
    saved to ``folder`` and named there; a LoRA policy's reference is the policy with its adapters disabled, so
    the supervised adapters are merged into the weights and a fresh adapter of the same shape trains on top."""
    if hasattr(policy, "merge_and_unload"):
        import copy

        from peft import get_peft_model

        lora = copy.deepcopy(policy.peft_config["default"])
        return get_peft_model(policy.merge_and_unload(), lora)
    policy.save_pretrained(folder)
    policy.config._name_or_path = str(folder)
    return policy


def _rl_dpo(run, policy, rl_prompts: list, info: dict):
    """The RL phase as DPO on AI preferences: rl_judge picks the better of two fresh replies per prompt."""
    from dataclasses import replace

    from datasets import Dataset
    from trl import DPOTrainer

    cfg, tok, seed = run.cfg, run.tok, run.common.seed
    judge = run.judge(cfg.rl_judge)
    policy.eval()

    def sample_and_judge(part: list) -> list:
        """(prompt, reply a, reply b, a wins: True, False or None) for this share of (index, prompt)."""
        if not part:
            return []
        ps = [p for _, p in part]
        answers = rollout.complete(policy, tok, [p for p in ps for _ in range(2)], max_new_tokens=cfg.max_new_tokens,
                           temperature=cfg.rl_temperature, seed=seed + 10_000)
        a, b = answers[0::2], answers[1::2]
        rows = run.rows_of(ps) if run.rows_of is not None and judge.fields else None
        return list(zip(ps, a, b, judge.compare(ps, a, b, keys=[f"cai-{i}" for i, _ in part], rows=rows).a_wins))

    # Under `accelerate launch` each process samples and judges its share of the prompts.
    pairs = round_pairs(*map(list, zip(*sharded(sample_and_judge, list(enumerate(rl_prompts))))))
    run.table([{"prompt": format_prompt(p, tok)[-300:], "chosen": c, "rejected": x} for p, c, x in pairs],
              "constitutional/ai_preferences.json")
    info["ai_pairs"] = len(pairs)
    if not pairs:
        return policy, info
    dpo = replace(run, checkpoint_dir=run.checkpoint_dir / "dpo")
    policy.train()
    rl_cfg = _RL(cfg.beta, cfg.loss_type, cfg.label_smoothing, cfg.batch_size)
    rows = [{"prompt": (fp := format_prompt(p, tok)), "chosen": completion_text(fp, c),
             "rejected": completion_text(fp, x)} for p, c, x in pairs]
    # The KL anchor is the supervised (SL-CAI) model this phase starts from, not the champion (Bai et al., 2022).
    trainer = DPOTrainer(model=policy, ref_model=frozen_copy(policy),
                         args=dpo_args(dpo, rl_cfg, num_train_epochs=cfg.rl_epochs),
                         train_dataset=Dataset.from_list(fit_rows(tok, rows, context_length(policy))),
                         processing_class=tok, callbacks=run.callbacks)
    rl_info = base.fit(trainer, dpo, "dpo")
    return trainer.model, {**info, "rl_loss": rl_info["train_loss"], "steps": info["steps"] + rl_info["steps"]}


@dataclass(frozen=True)
class _RL:
    """The DPO settings of the RL phase, in the names ``dpo_args`` reads."""
    beta: float
    loss_type: str
    label_smoothing: float
    batch_size: int
