"""Tiny causal LMs made inside a test in seconds: a policy that writes varied text, and a judge that answers A or B."""

from __future__ import annotations

import random
from pathlib import Path


def tiny_policy(path: Path, n_positions: int = 256, seed: int = 0) -> Path:
    """A random (untrained) tiny GPT-2 with a BPE tokenizer: its samples are varied token soup."""
    import torch

    from tasks.policy import tiny_gpt, train_tokenizer

    torch.manual_seed(seed)
    texts = ["How do I bake bread? Mix flour, water and yeast, then bake it.",
             "Tell me a joke. Why did the chicken cross the road?", "Which fruit is red? An apple is red."] * 30
    tok = train_tokenizer(texts, 300)
    tiny_gpt(len(tok), 2, 2, 32, n_positions, tok.eos_token_id).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def tiny_ab_judge(path: Path, steps: int = 60, seed: int = 0) -> Path:
    """A tiny GPT-2 trained for a few steps to answer judge questions with ' A' or ' B', so that both
    letters lead its next-token distribution (as a real judge model's would), whatever it prefers."""
    import torch

    from tasks.judges.pairwise import judge_messages
    from tasks.policy import tiny_gpt, train_tokenizer
    from tasks.prompting import format_prompt
    from tasks.rubric import parse_rubric

    rng = random.Random(seed)
    torch.manual_seed(seed)
    rubric = parse_rubric({"criteria": [{"name": "helpful", "description": "The reply answers.", "weight": 1}]},
                          "r")
    words = "bread fruit apple joke road bake water yeast red why how tell me which".split()
    questions = [format_prompt(judge_messages(rubric, " ".join(rng.choices(words, k=5)),
                                              " ".join(rng.choices(words, k=6)), " ".join(rng.choices(words, k=6))))
                 for _ in range(64)]
    texts = [q + rng.choice([" A", " B"]) for q in questions]
    tok = train_tokenizer(texts, 300)
    model = tiny_gpt(len(tok), 2, 2, 32, 512, tok.eos_token_id)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    ids = [tok(t)["input_ids"][-512:] for t in texts]
    model.train()
    for step in range(steps):
        batch = rng.sample(ids, 8)
        width = max(map(len, batch))
        x = torch.full((8, width), tok.eos_token_id)
        labels = torch.full((8, width), -100)
        for i, seq in enumerate(batch):
            x[i, :len(seq)] = torch.tensor(seq)
            labels[i, len(seq) - 1] = seq[-1]          # learn only the answer letter
        loss = model(input_ids=x, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def log_folder(folder: Path):
    """What a stage passes to ``tracking.register_model``: a function that logs, in the active run, an MLflow
    model holding ``folder`` (a trivial pyfunc with the folder as its ``files`` artifact)."""
    import mlflow

    class Files(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    return lambda: mlflow.pyfunc.log_model(name="model", python_model=Files(), artifacts={"files": str(folder)},
                                           pip_requirements=["mlflow"])
