"""Stage ``generate``: ``generate.k`` responses per training prompt, sampled from the champion."""

from __future__ import annotations

from pathlib import Path

from tasks import tracking
from tasks.genbackend import generate_responses, resolve_backend
from tasks.generate import policy_version
from tasks.io import read_jsonl, write_jsonl
from tasks.paths import GENERATIONS as OUT
from tasks.paths import PROMPTS
from tasks.policy import check_model_folder, pick_device
from tasks.prompting import prompt_of
from tasks.stages.common import StageContext, stage_run


def run(ctx: StageContext) -> dict:
    import sys

    import mlflow

    params = ctx.params
    cfg = params.generate
    champion = Path(params.policy.champion_dir)
    with stage_run("generate", ctx):
        prompts = [r for r in read_jsonl(PROMPTS) if r["split"] == "train"]
        device = pick_device(cfg.device)
        check_model_folder(champion)            # a damaged champion stops before any sampling, naming the path
        version = policy_version(champion)
        texts = [prompt_of(r) for r in prompts]
        runner = params.scale.runner
        backend = resolve_backend(cfg.backend, runner, device)
        dtype = tracking.record_precision(params, device, sampling=True).dtype
        responses, n_tokens, seconds, truncated = generate_responses(str(champion), texts, cfg, device,
                                                                     params.scale, backend, dtype)
        if truncated:
            # The sampler cut them from the left: the end, where the request is, survives.
            print(f"generate: {truncated} of {len(texts)} prompts are longer than the policy's context leaves "
                  f"beside generate.max_new_tokens ({cfg.max_new_tokens}); cut from the left", file=sys.stderr,
                  flush=True)
        # The rows are written as they are made: no second list of every generation beside `responses`.
        counts = {"empty": 0, "chars": 0}
        sample: list[dict] = []

        def rows():
            for row, resp in zip(prompts, responses):
                for j, text in enumerate(resp):
                    out = {"prompt_id": row["id"], "response_id": f"{row['id']}-r{j}", "response": text,
                           "policy_version": version, "seed": cfg.seed}
                    counts["empty"] += not text
                    counts["chars"] += len(text)
                    if len(sample) < cfg.sample_table_rows:
                        sample.append(out)
                    yield out

        n_rows = write_jsonl(OUT, rows())
        metrics = {"prompts": len(prompts), "generations": n_rows, "generated_tokens": n_tokens,
                   "tokens_per_second": n_tokens / max(seconds, 1e-9), "truncated_prompts": truncated,
                   "empty_responses": counts["empty"], "mean_response_chars": counts["chars"] / max(1, n_rows)}
        mlflow.log_metrics(metrics)
        if sample:
            by_id = {r["id"]: str(prompt_of(r)) for r in prompts}
            mlflow.log_table({"prompt": [by_id[r["prompt_id"]] for r in sample],
                              "response": [r["response"] for r in sample],
                              "response_id": [r["response_id"] for r in sample]},
                             artifact_file="sample_generations.json")
        mlflow.set_tags({"policy_version": version, "generate.runner": runner if backend == "transformers" else "local",
                         "generate.backend": backend})
    return metrics
