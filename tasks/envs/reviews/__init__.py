"""Environment ``reviews``: the bundled demo task, restaurant reviews with a hidden truth.

- ``corpus.py``: the seeded grammar that writes the pretraining texts, the
  demonstrations and the cycle's prompts (``corpus`` section of params.yaml);
- ``truth.py``: the hidden truth and the simulated annotator on it (``truth``
  section), which stands in for human raters and measures a cycle's real
  improvement;
- ``rubric.yaml``: what this task's AI judges look for;
- ``regression/texts.jsonl`` (written with the corpus): reviews pretraining never read, for the perplexity
  regression suite that keeps a cycle from trading the policy's language for its reward.

Only the environment registry (``tasks/envs/__init__.py``) imports this package.
"""

from __future__ import annotations

from pathlib import Path

from tasks.envs.reviews import truth
from tasks.envs.reviews.corpus import build_corpus, dish_of, heldout_texts
from tasks.io import write_jsonl
from tasks.judging import ScoringJudge, Verdicts
from tasks.prompting import last_user_turn, prompt_key

SIMULATED = "human:simulated-annotator"
HELDOUT_TEXTS = 300          # texts of the perplexity regression suite (data/corpus/regression/texts.jsonl)


class SimulatedAnnotator(ScoringJudge):
    """The hidden-truth annotator as a judge: scores are truth scores; a comparison is a noisy
    Bradley-Terry draw, fixed by (seed, prompt, a, b, key) so the same pair always gets the same label."""

    name = SIMULATED

    def __init__(self, truth_cfg, seed: int):
        super().__init__()
        self.cfg, self.seed = truth_cfg, seed
        # Its comparisons are sigmoid((s_a - s_b) / T) before the label noise: slope 1/T, so a mean ensemble
        # (tasks/judgemath.py::combine_scores) reads its score in logits as s / T.
        self.scale = 1.0 / truth_cfg.temperature

    def score(self, prompts, responses, rows=None) -> list[float]:
        return [truth.truth_score(dish_of(last_user_turn(p)), r).total for p, r in zip(prompts, responses)]

    def compare_scored(self, prompts, a, b, sa, sb, keys=None) -> Verdicts:
        keys = keys or [()] * len(a)
        p_a, wins = [], []
        for p, x, y, s, t, key in zip(prompts, a, b, sa, sb, keys):
            prob = truth.preference_probability(s, t, self.cfg.temperature, self.cfg.noise)
            text = p if isinstance(p, str) else prompt_key(p)
            p_a.append(prob)
            wins.append(truth.stable_uniform(self.seed, text, x, y, *key) < prob)
        return Verdicts(p_a, wins)


class Reviews:
    name = "reviews"
    has_truth = True

    def write_corpus(self, cfg, out_dir: Path) -> dict:
        built = build_corpus(cfg.seed, cfg.n_texts, cfg.n_demos, cfg.n_prompts, tuple(cfg.demo_sentiment))
        write_jsonl(out_dir / "texts.jsonl", built.texts)
        write_jsonl(out_dir / "demos.jsonl", built.demos)
        write_jsonl(out_dir / "prompts.jsonl", built.prompts)
        (out_dir / "regression").mkdir(parents=True, exist_ok=True)
        write_jsonl(out_dir / "regression" / "texts.jsonl", heldout_texts(cfg.seed, HELDOUT_TEXTS))
        return {"texts": len(built.texts), "demos": len(built.demos), "prompts": len(built.prompts)}

    def annotator(self, truth_cfg, seed: int) -> SimulatedAnnotator:
        return SimulatedAnnotator(truth_cfg, seed)


ENVIRONMENT = Reviews()
