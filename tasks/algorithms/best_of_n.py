"""``best_of_n``: rejection sampling, the RLAIF loop in its plainest form.

1. Sample ``n`` responses per training prompt from the champion.
2. Score them with the ``optimize.reward`` judges; keep each prompt's best,
   when it reaches ``score_threshold`` (null: always keep the best).
3. Fine-tune the policy on the kept responses with TRL's ``SFTTrainer``
   (loss on the completion tokens only).

It needs no reference at training time: it stays near the champion because it
only imitates the champion's own best samples. Its failure sign is a low
``kept`` share (the threshold rejects most prompts) or a kept set dominated by
one phrasing (distinct-2 of the kept responses, logged as ``kept_distinct_2``).
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks import rollout
from tasks.algorithms import base
from tasks.algorithms.dist import sharded
from tasks.errors import ConfigError
from tasks.evalmath import distinct_n, mean
from tasks.options import opt
from tasks.prompting import completion_text, format_prompt
from tasks.rollout import context_length, fit_rows


@dataclass(frozen=True)
class Config:
    n: int = opt(8, "Responses sampled per prompt.", ge=2)
    score_threshold: float | None = opt(None, "Keep a prompt's best response only when its reward reaches this; "
                                        "null: always keep it.")
    temperature: float = opt(1.0, "Sampling temperature.", gt=0)
    max_new_tokens: int = opt(48, "Longest sampled response in tokens.", ge=1)
    sample_batch_size: int = opt(32, "Prompts per generation batch (each gives n sequences).", ge=1)
    lr: float = opt(1e-4, "Peak learning rate of the fine-tuning (linear decay).", gt=0)
    epochs: float = opt(2.0, "Passes over the kept responses.", gt=0)
    batch_size: int = opt(16, "Responses per optimizer step.", ge=1)


def select_best(prompt_ids: list, scores: list[float], threshold: float | None) -> list[int]:
    """Indices of each prompt's highest-scoring response (the first on a tie), dropping any below
    ``threshold``. Rows are grouped by ``prompt_ids`` in order of first appearance."""
    best: dict = {}
    for i, (pid, s) in enumerate(zip(prompt_ids, scores)):
        if pid not in best or s > scores[best[pid]]:
            best[pid] = i
    return [i for i in best.values() if threshold is None or scores[i] >= threshold]


def train(run):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    cfg = run.cfg
    run.policy.eval()

    def sample_and_score(part: list) -> list[tuple[str, float]]:
        if not part:
            return []
        texts = []
        for r, _ in rollout.sample_batches(run.policy, run.tok, part, cfg.n, batch_size=cfg.sample_batch_size,
                                   seed=run.common.seed, temperature=cfg.temperature,
                                   max_new_tokens=cfg.max_new_tokens, device=run.policy.device.type):
            texts += r.texts
        return list(zip(texts, run.reward([p for p in part for _ in range(cfg.n)], texts)))

    # Under `accelerate launch` each process samples and scores its share of the prompts.
    scored = sharded(sample_and_score, run.data)
    texts, scores = [t for t, _ in scored], [s for _, s in scored]
    prompts = [p for p in run.data for _ in range(cfg.n)]
    keep = select_best([i // cfg.n for i in range(len(prompts))], scores, cfg.score_threshold)
    if not keep:
        raise ConfigError(f"optimize.best_of_n.score_threshold: no response reached {cfg.score_threshold} "
                          f"(best reward {max(scores):.3f}); lower it or set null")
    rows = [{"prompt": (p := format_prompt(prompts[i], run.tok)), "completion": completion_text(p, texts[i])}
            for i in keep]
    run.table([{"prompt": r["prompt"][-200:], "response": r["completion"].strip(), "reward": scores[i]}
               for r, i in zip(rows, keep)], "best_of_n/kept.json")
    run.policy.train()
    args = base.trl_args(SFTConfig, run, num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
                    max_length=context_length(run.policy), completion_only_loss=True, packing=False)
    # Prompts cut from the left so each response and its EOS fit the context whole (tasks/rollout.py fit_rows).
    trainer = SFTTrainer(model=run.policy, args=args,
                         train_dataset=Dataset.from_list(fit_rows(run.tok, rows, args.max_length)),
                         processing_class=run.tok, callbacks=run.callbacks)
    info = base.fit(trainer, run)
    return trainer.model, {**info, "sampled": len(texts), "kept": len(keep), "kept_share": len(keep) / len(run.data),
                           "kept_reward": mean([scores[i] for i in keep]), "sampled_reward": mean(scores),
                           "kept_distinct_2": distinct_n([texts[i] for i in keep], 2)}
