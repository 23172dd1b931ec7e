"""Stage ``corpus``: the environment (``task.env``) writes its corpus to ``data/corpus/``: texts, demonstrations and,
for a demo, prompts and regression suites (``data/corpus/regression/``, listed in its ``suites.json``).
"""

from __future__ import annotations

from tasks.envs import load_env
from tasks.io import atomic_path, read_jsonl, write_json
from tasks.paths import CORPUS as CORPUS_DIR
from tasks.paths import REGRESSION
from tasks.prompting import prompt_of
from tasks.stages.common import StageContext, stage_run


def run(ctx: StageContext) -> dict:
    import mlflow

    params = ctx.params
    c = params.corpus
    with stage_run("corpus", ctx):
        with atomic_path(CORPUS_DIR, is_dir=True) as out:
            out.mkdir(parents=True, exist_ok=True)
            metrics = load_env(params.task.env).write_corpus(c, out)
            # the environment's regression suites (evaluate.regression may name them), listed even when none
            (out / REGRESSION.name).mkdir(exist_ok=True)
            write_json(out / REGRESSION.name / "suites.json",
                       sorted(p.name for p in (out / REGRESSION.name).glob("*.jsonl")))
            write_json(out / "manifest.json", {"env": params.task.env, **metrics})
        mlflow.log_metrics(metrics)
        if metrics.get("demos"):
            demos = read_jsonl(CORPUS_DIR / "demos.jsonl")[:20]
            mlflow.log_table({"prompt": [str(prompt_of(d)) for d in demos],
                              "response": [d["response"] for d in demos]}, artifact_file="sample_demos.json")
    return metrics
