"""Policy optimizers, chosen by ``optimize.algorithm`` in ``params.yaml``.

Each algorithm is one module here with its own typed config section
(``optimize.<name>``), the kind of data it consumes and one ``train(run)``
entry point (``tasks/algorithms/base.py``). ``REGISTRY`` maps the name to it;
an unknown name is a ConfigError on load, never a fall-through to a default.
``ppo_math`` holds the pure functions of the project's own PPO.
"""

from __future__ import annotations

from tasks.algorithms import best_of_n, constitutional, dpo, grpo, kto, online_dpo, ppo, rloo
from tasks.algorithms.base import BINARY, PAIRS, PROMPTS, Algorithm

REGISTRY: dict[str, Algorithm] = {a.name: a for a in (
    Algorithm("grpo", grpo.Config, PROMPTS, grpo,
              "GRPO (TRL): online, group-relative advantages, KL penalty to the champion."),
    Algorithm("rloo", rloo.Config, PROMPTS, rloo,
              "RLOO (TRL): online, leave-one-out baseline, KL in the reward."),
    Algorithm("ppo", ppo.Config, PROMPTS, ppo,
              "PPO (the project's own): value head, GAE, clipped losses, per-token KL to the champion.",
              own_optimizer=True),
    Algorithm("dpo", dpo.Config, PAIRS, dpo,
              "DPO (TRL): offline on the labelled pairs; sigmoid, cDPO, IPO, robust, hinge."),
    Algorithm("kto", kto.Config, BINARY, kto,
              "KTO (TRL): offline on responses marked good or bad."),
    Algorithm("best_of_n", best_of_n.Config, PROMPTS, best_of_n,
              "Best-of-n rejection sampling, then SFT on the kept responses (TRL SFTTrainer)."),
    Algorithm("online_dpo", online_dpo.Config, PROMPTS, online_dpo,
              "Iterative DPO: rounds of sampling, judge labels and a DPO step against the champion."),
    Algorithm("constitutional", constitutional.Config, PROMPTS, constitutional,
              "Constitutional AI: critique and revise under the rubric's principles, SFT, then DPO on AI "
              "preferences."),
)}
NAMES = tuple(REGISTRY)
