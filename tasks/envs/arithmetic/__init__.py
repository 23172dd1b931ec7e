"""Environment ``arithmetic``: a verifiable task. Single-digit arithmetic whose answers a program checks, so a
cycle's gain is a held-out pass rate with a CI, with no hidden truth and no reward model in the measurement.

The seeded generator (``corpus`` section: seed, n_texts, n_demos, n_prompts) writes:

- **texts**: correct statements of the facts (``7 + 5 = 12.``, ``7 + 5 is 12.``) and of the second skill
  (``The larger of 7 and 5 is 7.``), for pretraining;
- **demos**: questions with the answer as ``Answer: <number>``, as people would write them: of the arithmetic
  ones, ``DEMO_WRONG`` give a wrong number (off by one or two) and ``DEMO_UNFORMATTED`` a right one in another
  form (``The answer is 12.``); ``DEMO_COMPARE`` of all demonstrations are of the second skill. A policy that imitates them gets many answers wrong or unformatted,
  which is what reinforcement on a checker can fix;
- **prompts**: distinct (fact, phrasing) questions of the first skill, each with its ``answer`` field (the
  reference the graders read) and ``skill``. A fact's demonstrations (if it drew any) all use one phrasing of
  it, and the questions are its other four, so no question is word for word a demonstration.

The facts are ``a op b`` for a, b in 0..9 and op in ``+ - *`` (300). Held out are *prompts* (``prepare``
splits by the prompt's text), so a held-out question's fact may be asked in another phrasing among the
training prompts: what a cycle can improve is answering these questions, not learning facts it never saw.

The second skill, "which is larger", is taught by the bootstrap's demonstrations but is not among the cycle's
prompts, so the RL stage never trains on it: its questions are the regression suite
``regression/larger.jsonl`` (``larger_suite``), which the gate checks so that training on arithmetic does not
erase it.

It has no simulated annotator: correctness is the graders' (``examples/arithmetic/params.yaml``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from tasks.errors import ConfigError
from tasks.io import write_jsonl

OPS = ("+", "-", "*")
TEMPLATES = ("What is {a} {op} {b}?", "Compute {a} {op} {b}.", "Calculate {a} {op} {b}, please.",
             "{a} {op} {b} = ?", "Work out {a} {op} {b}.")
COMPARE_TEMPLATES = ("Which is larger, {a} or {b}?", "Name the larger number: {a} or {b}.")
DEMO_WRONG = 0.3            # share of demonstrations with a wrong number
DEMO_UNFORMATTED = 0.15     # share with the right number, not as "Answer: <number>"
DEMO_COMPARE = 0.15         # share of demonstrations of the second skill


def answer(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def question(template: str, a: int, op: str, b: int) -> str:
    return template.format(a=a, op=op, b=b)


def formatted(n: int) -> str:
    """The answer in the task's format: what the graders accept."""
    return f"Answer: {n}"


FACTS = [(a, op, b) for op in OPS for a in range(10) for b in range(10)]


@dataclass(frozen=True)
class Built:
    texts: list
    demos: list
    prompts: list


def build_corpus(seed: int, n_texts: int, n_demos: int, n_prompts: int) -> Built:
    rng = random.Random(seed)
    texts = []
    for _ in range(n_texts):
        a, op, b = rng.choice(FACTS)
        x, y = rng.randrange(10), rng.randrange(10)
        texts.append({"text": rng.choice([f"{a} {op} {b} = {answer(a, op, b)}.",
                                          f"{a} {op} {b} is {answer(a, op, b)}.",
                                          f"The larger of {x} and {y} is {max(x, y)}."])})
    # Each fact is demonstrated in one phrasing of its own (drawn once); the cycle's questions are the other
    # phrasings, so that no question is a demonstration's (prepare would keep those out of the held-out side).
    demo_template = {f: rng.choice(TEMPLATES) for f in FACTS}
    demos = []
    for _ in range(n_demos):
        if rng.random() < DEMO_COMPARE:
            x, y = rng.randrange(10), rng.randrange(10)
            demos.append({"prompt": rng.choice(COMPARE_TEMPLATES).format(a=x, b=y), "response": formatted(max(x, y))})
            continue
        a, op, b = rng.choice(FACTS)
        right, draw = answer(a, op, b), rng.random()
        if draw < DEMO_WRONG:
            response = formatted(right + rng.choice((-2, -1, 1, 2)))
        elif draw < DEMO_WRONG + DEMO_UNFORMATTED:
            response = rng.choice([f"The answer is {right}.", f"{right}", f"It is {right}."])
        else:
            response = formatted(right)
        demos.append({"prompt": question(demo_template[(a, op, b)], a, op, b), "response": response})
    pool = [(t, f) for t in TEMPLATES for f in FACTS if t != demo_template[f]]
    if n_prompts > len(pool):
        raise ConfigError(f"corpus.n_prompts: the arithmetic task has {len(pool)} distinct questions "
                          f"({len(FACTS)} facts x {len(TEMPLATES) - 1} phrasings besides the demonstrated one), "
                          f"not {n_prompts}")
    prompts = [{"id": f"q{i:05d}", "prompt": question(t, a, op, b), "answer": str(answer(a, op, b)),
                "skill": "arithmetic", "source": "bundled"}
               for i, (t, (a, op, b)) in enumerate(rng.sample(pool, n_prompts))]
    return Built(texts, demos, prompts)


def larger_suite() -> list[dict]:
    """The second skill as a fixed regression suite: "which is larger" for every pair of different digits, in
    both phrasings (180 questions), each with its ``answer``. The bootstrap's demonstrations teach it and the RL
    stage never trains on it; the gate checks that training on arithmetic did not erase it
    (``evaluate.regression.larger``)."""
    rows = []
    for t, template in enumerate(COMPARE_TEMPLATES):
        for x in range(10):
            for y in range(10):
                if x != y:
                    rows.append({"id": f"l{t}{x}{y}", "prompt": template.format(a=x, b=y), "answer": str(max(x, y)),
                                 "skill": "larger"})
    return rows


class Arithmetic:
    name = "arithmetic"
    has_truth = False

    def write_corpus(self, cfg, out_dir: Path) -> dict:
        built = build_corpus(cfg.seed, cfg.n_texts, cfg.n_demos, cfg.n_prompts)
        write_jsonl(out_dir / "texts.jsonl", built.texts)
        write_jsonl(out_dir / "demos.jsonl", built.demos)
        write_jsonl(out_dir / "prompts.jsonl", built.prompts)
        (out_dir / "regression").mkdir(parents=True, exist_ok=True)
        write_jsonl(out_dir / "regression" / "larger.jsonl", larger_suite())
        return {"texts": len(built.texts), "demos": len(built.demos), "prompts": len(built.prompts)}

    def annotator(self, truth_cfg, seed: int):
        raise ConfigError("task.env: arithmetic has no simulated annotator: its graders check the answers")


ENVIRONMENT = Arithmetic()
