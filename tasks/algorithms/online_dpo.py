"""``online_dpo``: iterative DPO within one cycle, on fresh samples labelled by a judge.

For each of ``rounds`` rounds:

1. take the next ``prompts_per_round`` training prompts and sample two
   responses each from the *current* policy;
2. have ``judge`` (any judge of the judges section, pairwise or scoring)
   compare them; ties are dropped;
3. run ``epochs_per_round`` of DPO on those pairs against the frozen champion.

Each round logs its pair count, tie share and DPO loss (``round/*``) and a
probe. Sampling on-policy is what separates it from offline DPO: the pairs are
always drawn from the distribution the policy now produces (Guo et al., 2024).
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.algorithms import base
from tasks.algorithms.dist import sharded
from tasks.algorithms.dpo import check_label_smoothing, dpo_args
from tasks.options import opt
from tasks.prompting import completion_text, format_prompt
from tasks.rollout import context_length, fit_rows, sample


@dataclass(frozen=True)
class Config:
    rounds: int = opt(3, "Sample-label-train rounds.", ge=1)
    prompts_per_round: int = opt(64, "Training prompts per round (two responses each).", ge=1)
    judge: str = opt("reward", "The judge (a name in the judges section) that labels each round's pairs.")
    temperature: float = opt(1.0, "Sampling temperature.", gt=0)
    max_new_tokens: int = opt(48, "Longest sampled response in tokens.", ge=1)
    lr: float = opt(2e-4, "Peak learning rate of each round (linear decay).", gt=0)
    beta: float = opt(0.1, "DPO beta against the frozen champion.", gt=0)
    epochs_per_round: float = opt(1.0, "DPO passes over each round's pairs.", gt=0)
    batch_size: int = opt(16, "Pairs per optimizer step.", ge=1)
    loss_type: str = opt("sigmoid", "TRL DPO loss variant.", choices=("sigmoid", "ipo", "robust", "hinge"))
    label_smoothing: float = opt(0.0, "cDPO (sigmoid) / robust label noise; ipo and hinge refuse it.", ge=0, lt=0.5)

    def __post_init__(self):
        check_label_smoothing(self.loss_type, self.label_smoothing)

    judge_keys = ("judge",)                   # the keys that name judges (Algorithm.judges)


def round_pairs(prompts: list, a: list[str], b: list[str], a_wins: list) -> list[tuple]:
    """(prompt, chosen, rejected) for each comparison the judge decided; ties (None) are dropped."""
    return [(p, x, y) if w else (p, y, x) for p, x, y, w in zip(prompts, a, b, a_wins) if w is not None]


def train(run):
    from dataclasses import replace

    from datasets import Dataset
    from trl import DPOTrainer

    cfg = run.cfg
    judge = run.judge(cfg.judge)
    policy, info = run.policy, {"pairs": 0, "ties": 0}
    steps = 0
    run.probe(policy, 0)
    for rnd in range(cfg.rounds):
        batch = [run.data[(rnd * cfg.prompts_per_round + i) % len(run.data)] for i in range(cfg.prompts_per_round)]
        policy.eval()

        def sample_and_judge(part: list, rnd=rnd, policy=policy) -> list:
            """(prompt, response a, response b, a wins: True, False or None for a tie) for this share of
            (index, prompt)."""
            if not part:
                return []
            prompts = [p for _, p in part]
            r = sample(policy, run.tok, prompts, 2, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                       seed=run.common.seed * 100_003 + rnd, device=policy.device.type)
            a, b = r.texts[0::2], r.texts[1::2]
            rows = run.rows_of(prompts) if run.rows_of is not None and judge.fields else None
            verdicts = judge.compare(prompts, a, b, keys=[f"online-{rnd}-{i}" for i, _ in part], rows=rows)
            return list(zip(prompts, a, b, verdicts.a_wins))

        # Under `accelerate launch` each process samples and judges its share of the round's prompts.
        judged = sharded(sample_and_judge, list(enumerate(batch)))
        pairs = round_pairs(*map(list, zip(*judged)))
        ties = len(batch) - len(pairs)
        run.log("round/pairs", float(len(pairs)), rnd)
        run.log("round/tie_share", ties / len(batch), rnd)
        info["pairs"] += len(pairs)
        info["ties"] += ties
        if not pairs:
            continue
        rows = [{"prompt": (fp := format_prompt(p, run.tok)), "chosen": completion_text(fp, c),
                 "rejected": completion_text(fp, x)} for p, c, x in pairs]
        sub = replace(run, checkpoint_dir=run.checkpoint_dir / f"round-{rnd}")
        policy.train()
        trainer = DPOTrainer(model=policy, ref_model=run.reference,
                             args=dpo_args(sub, cfg, num_train_epochs=cfg.epochs_per_round),
                             train_dataset=Dataset.from_list(fit_rows(run.tok, rows, context_length(policy))),
                             processing_class=run.tok)
        out = base.fit(trainer, sub, f"round {rnd + 1}")
        policy = trainer.model
        steps += out["steps"]
        run.log("round/dpo_loss", out["train_loss"], rnd)
        run.probe(policy, steps)             # at the optimizer steps so far: the curve's axis for every algorithm
    return policy, {**info, "rounds": cfg.rounds, "steps": steps}
