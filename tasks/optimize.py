"""The work of stage ``optimize`` (its adapter: ``tasks/stages/optimize.py``): turn the champion into a candidate
policy with ``optimize.algorithm``.

The algorithm comes from the registry of ``tasks/algorithms/`` (GRPO, RLOO,
PPO, DPO, KTO, best-of-n, online DPO), each with its own ``optimize.<name>``
section. This stage does what they share:

- loads the champion twice: the policy to train and the frozen reference;
- gives the algorithm the data it consumes: the training prompts (online
  algorithms, scored by the ``optimize.reward`` judges), the labelled pairs
  (``label.ties`` applied), or good/bad responses (from ``data/ratings.jsonl`` or
  unpaired pairs);
- wraps the policy in LoRA adapters when ``optimize.lora`` (merged on save);
- logs the trainer's own metrics every step and, every ``log_every`` steps, a
  **probe** that is the same for every algorithm: one fresh sample for each of
  ``probe_prompts`` training prompts, with its mean reward, KL to the reference
  on the sampled tokens, mean length and EOS rate. The probe curve is also
  written to ``reports/optimize/curve.csv`` for ``dvc plots``. The probes draw
  on their own random stream, so training is the same run whether and when they
  run. They run at step 0, every ``log_every`` steps and at the last step: the
  same steps on every machine. ``probe_budget`` (off by default) caps their
  share of the training time instead (a due probe that would pass it is
  skipped and counted as ``probes_skipped``);
- checkpoints into ``checkpoints/optimize/<fingerprint>/`` (not a DVC output):
  a rerun after a crash resumes there; the folder is removed once the candidate
  is saved. The fingerprint covers the config and the inputs, so a checkpoint
  of other settings or data is never resumed.

The stage's adapter (``tasks/stages/optimize.py``) saves the candidate to ``models/candidate`` and registers it
as a new version of ``policy`` with alias ``challenger``; the champion is never written by this stage.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

from tasks.accel import gathered
from tasks.algorithms import REGISTRY
from tasks.algorithms.base import BINARY, PAIRS, Run, TrlReward, mlflow_callback
from tasks.algorithms.base import PROMPTS as ONLINE
from tasks.config import OPTIMIZE_COMMON, Params
from tasks.errors import DataError
from tasks.evalmath import mean, sequence_kl
from tasks.heldout import is_heldout
from tasks.io import atomic_path, dvc_md5, read_jsonl, write_json
from tasks.judges import JudgeContext, build_judge
from tasks.labels.convert import preference_pairs
from tasks.paths import LABELS, PROMPTS, RATINGS
from tasks.policy import load_policy
from tasks.precision import resolve
from tasks.prompting import completion_text, format_prompt, label_prompt, prompt_key, prompt_of, rows_by_prompt
from tasks.rollout import sample, token_logprobs
from tasks.rubric import load_rubric
from tasks.tracking import log_many


def probe(policy, ref, tok, reward, prompts: list, temperature: float, max_new_tokens: int, seed: int) -> dict:
    """Reward, KL to the reference, length and EOS rate of one fresh sample per prompt. The sample is seeded
    with ``seed`` inside a fork of torch's random state: the caller's random stream (training's) is left where
    it was, so probing, or not, never changes a training run."""
    import torch

    device = next(policy.parameters()).device
    was_training = policy.training
    policy.eval()
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device.index or 0] if cuda else [], device_type="cuda"):
        r = sample(policy, tok, prompts, 1, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed,
                   device=device.type)
    kl = sequence_kl(token_logprobs(policy, r, temperature), token_logprobs(ref, r, temperature), r.response_mask)
    if was_training:
        policy.train()
    scores = reward(prompts, r.texts)
    parts = getattr(reward, "parts", {})
    return {"probe_reward": mean(scores), "probe_kl": float(kl.mean()),
            "probe_length": mean([len(t.split()) for t in r.texts]),
            "probe_eos_rate": mean([float(e) for e in r.ended]),
            # with several rewards, each one's mean (unweighted) as a curve of its own
            **({f"probe_reward.{name}": v for name, v in parts.items()} if len(parts) > 1 else {})}


def weighted_reward(judges: list, weights: list[float], names: list[str] | None = None, rows_of=None):
    """``reward(prompts, responses)``: the weighted sum of the judges' scores per response. ``rows_of(prompts)``
    gives the prompts' rows to judges that read reference fields (graders). After each call, ``reward.parts``
    holds each judge's mean score (unweighted), by ``names``."""
    names = names or [j.name for j in judges]

    def reward(prompts, responses):
        rows = rows_of(prompts) if rows_of is not None and any(j.fields for j in judges) else None
        total = [0.0] * len(responses)
        reward.parts = {}
        for name, judge, w in zip(names, judges, weights):
            scores = judge.score(prompts, responses, rows)
            reward.parts[name] = mean(scores) if scores else 0.0
            total = [t + w * s for t, s in zip(total, scores)]
        return total
    reward.parts = {}
    return reward


def pair_rows(tok, ties: str) -> list[dict]:
    """The labelled pairs as TRL preference rows (formatted prompt, chosen, rejected)."""
    prompts = {str(r["id"]): prompt_of(r) for r in read_jsonl(PROMPTS)}
    rows = [{"prompt": (p := format_prompt(label_prompt(r, prompts), tok)), "chosen": completion_text(p, r["chosen"]),
             "rejected": completion_text(p, r["rejected"])} for r in preference_pairs(read_jsonl(LABELS), ties)]
    if not rows:
        raise DataError(LABELS, "preference pairs", detail=f"no pairs to train on (label.ties: {ties} leaves out "
                        "tied rows)")
    return rows


def binary_rows(tok, ties: str, source: str) -> tuple[list[dict], str]:
    """Good/bad responses as TRL unpaired rows (prompt, completion, label), and where they came from:
    ``data/ratings.jsonl`` rows that carry ``good``, or each pair unpaired (chosen good, rejected bad)."""
    prompts = {str(r["id"]): prompt_of(r) for r in read_jsonl(PROMPTS)}
    rated = [r for r in (read_jsonl(RATINGS, allow_empty=True) if RATINGS.exists() else []) if "good" in r]
    if source == "ratings" and not rated:
        raise DataError(RATINGS, "good/bad ratings", detail="optimize.kto.source is ratings but no row carries "
                        "'good' (Likert, attribute or comment feedback with label.kto_threshold writes them)")
    if rated and source != "pairs":
        rows = [{"prompt": (p := format_prompt(label_prompt(r, prompts), tok)),
                 "completion": completion_text(p, r["response"]), "label": bool(r["good"])} for r in rated]
        return rows, "ratings"
    rows = []
    for r in preference_pairs(read_jsonl(LABELS), ties):
        p = format_prompt(label_prompt(r, prompts), tok)
        rows += [{"prompt": p, "completion": completion_text(p, r["chosen"]), "label": True},
                 {"prompt": p, "completion": completion_text(p, r["rejected"]), "label": False}]
    if not rows:
        raise DataError(LABELS, "preference pairs", detail="no pairs to unpair into good/bad examples")
    return rows, "pairs"


def fingerprint(params: Params, champion: Path) -> str:
    """What a checkpoint was trained from: the optimize settings (the active section), the champion and the
    data. A checkpoint resumes only into a run with the same fingerprint."""

    o = params.optimize
    common = {name: getattr(o, name) for name in OPTIMIZE_COMMON if name not in ("checkpoint_every", "log_every")}
    data = {str(p): dvc_md5(p) for p in (champion, PROMPTS, LABELS, RATINGS) if p.exists()}
    active = dataclasses.asdict(getattr(o, o.algorithm))
    blob = json.dumps({"common": common, "active": active, "data": data,
                       "ties": params.label.ties}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _with_lora(model, cfg):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                            target_modules="all-linear", task_type="CAUSAL_LM"))


def log_table(rows: list[dict], name: str) -> None:
    import mlflow

    if rows:
        mlflow.log_table({k: [r.get(k) for r in rows] for k in rows[0]}, artifact_file=name)


@dataclasses.dataclass
class Setup:
    """What training and the probes need besides the policy: built the same way in the stage's process and in
    each ``accelerate launch`` process."""
    ref: object
    tok: object
    judges: list
    weights: list
    reward: object
    train: list
    by_formatted: dict
    data: list
    info: dict
    probe_prompts: list
    rows_of: object = None        # prompts -> their rows of the prompts file (graders read reference fields)
    val_rows: list = dataclasses.field(default_factory=list)   # optimize.select best: the validation prompts


def setup(params: Params, champion: Path, device: str) -> Setup:
    cfg = params.optimize
    algo = REGISTRY[cfg.algorithm]
    ref, tok = load_policy(champion, device)
    ref.requires_grad_(False)
    ctx = JudgeContext(params.judges, params.task, None, cfg.seed)
    judges = [build_judge(n, ctx) for n in cfg.reward]
    weights = list(cfg.reward_weights or [1.0] * len(judges))
    train_rows = [r for r in read_jsonl(PROMPTS) if r["split"] == "train"]
    val_rows: list[dict] = []
    if cfg.select == "best":            # a validation share of the training prompts, not trained on
        held = validation_share(train_rows, cfg.select_share)
        val_rows = [r for r in train_rows if prompt_key(prompt_of(r)) in held]
        train_rows = [r for r in train_rows if prompt_key(prompt_of(r)) not in held]
        if not val_rows or not train_rows:
            raise DataError(PROMPTS, "training prompts on both sides of optimize.select_share",
                            detail=f"{len(val_rows)} validation and {len(train_rows)} training prompts at "
                                   f"optimize.select_share {cfg.select_share}")
    train = [prompt_of(r) for r in train_rows]
    rows_of = rows_by_prompt(train_rows + val_rows)
    info: dict = {}
    if algo.consumes == PAIRS:
        data = pair_rows(tok, params.label.ties)
    elif algo.consumes == BINARY:
        data, info["kto_source"] = binary_rows(tok, params.label.ties, getattr(cfg, cfg.algorithm).source)
    else:
        data = train
    if val_rows and algo.consumes != ONLINE:       # pairs and ratings of the validation prompts are set apart too
        kept = {format_prompt(prompt_of(r), tok) for r in val_rows}
        data = [row for row in data if row["prompt"] not in kept]
    return Setup(ref, tok, judges, weights, weighted_reward(judges, weights, list(cfg.reward), rows_of), train,
                 {format_prompt(p, tok): p for p in train}, data, info, train[:cfg.probe_prompts], rows_of, val_rows)


def within_budget(spent: float, expected: float, elapsed: float, budget: float | None) -> bool:
    """Whether a probe expected to take ``expected`` seconds may run when the probes so far took ``spent`` of the
    ``elapsed`` seconds since training began: only if all of them, this one included, stay within ``budget``
    (a share of the time since training began, this probe included). ``budget`` None: always."""
    return budget is None or spent + expected <= budget * (elapsed + expected)


def validation_share(rows: list[dict], share: float) -> set[str]:
    """The prompt keys (``prompt_key``) of the training rows set apart for ``optimize.select: best``: those whose
    salted hash falls under ``share`` (``tasks/heldout.py``), so a prompt's side does not depend on the others."""
    return {k for k in (prompt_key(prompt_of(r)) for r in rows) if is_heldout(k, SELECT_SALT, share)}


SELECT_SALT = "optimize-select"
SELECTED = "select-best"          # the best model so far, in the run's checkpoint folder (it survives a resume)


class Selector:
    """``optimize.select: best``: scores the policy on the validation prompts (``select_samples`` samples each,
    by ``judge``) at step 0 and every probe step, logs ``select/score``, and keeps the best model so far in
    ``<checkpoint folder>/select-best/`` (a later score must be strictly higher to replace it). ``restore``
    loads the best into the trained model at the end."""

    def __init__(self, judge, prompts: list, rows: list, cfg, tok, log, folder: Path):
        self.judge, self.prompts, self.rows, self.cfg, self.tok, self.log = judge, prompts, rows, cfg, tok, log
        self.folder = folder / SELECTED
        record = self.folder / "select.json"
        # after a resume, the scores and the saved best of the steps before it are still on disk
        saved = json.loads(record.read_text()) if record.exists() else {}
        self.history = [tuple(h) for h in saved.get("history", [])]
        self.saved = tuple(saved["best"]) if saved.get("best") else None     # (step, score) of the model on disk

    def best(self) -> tuple[int, float] | None:
        """(step, score) of the best model, the one on disk."""
        return self.saved

    def __call__(self, model, step: int) -> float:
        import torch

        n = self.cfg.select_samples
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        cuda = device.type == "cuda"
        # one seed for every scoring: the checkpoints are compared on the same random draws
        with torch.random.fork_rng(devices=[device.index or 0] if cuda else [], device_type="cuda"):
            r = sample(model, self.tok, self.prompts, n, temperature=self.cfg.probe_temperature,
                       max_new_tokens=self.cfg.probe_max_new_tokens, seed=self.cfg.seed + 7_919,
                       device=device.type)
        if was_training:
            model.train()
        scores = self.judge.score([p for p in self.prompts for _ in range(n)], r.texts,
                                  [row for row in self.rows for _ in range(n)] if self.judge.fields else None)
        value = mean(scores)
        self.log("select/score", value, step)
        self.history = [(s, v) for s, v in self.history if s != step] + [(step, value)]
        if self.saved is None or value > self.saved[1]:
            # written beside the folder and renamed in: a crash mid-save leaves the last best whole
            with atomic_path(self.folder, is_dir=True) as tmp:
                save_whole(model, tmp)
                (tmp / "select.json").write_text(json.dumps({"history": self.history, "best": [step, value]}))
            self.saved = (step, value)
        else:
            write_json(self.folder / "select.json", {"history": self.history, "best": list(self.saved)})
        return value

    def restore(self, model) -> tuple[int, float]:
        """Load the best model's weights into ``model``; (its step, its score)."""
        from safetensors.torch import load_file

        step, value = self.best()
        state = {}
        for f in sorted(self.folder.glob("*.safetensors")):
            state.update(load_file(str(f), device=str(next(model.parameters()).device)))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.endswith("lm_head.weight")]:
            raise RuntimeError(f"optimize.select: the saved best model does not fit the policy ({missing[:3]}, "
                               f"{unexpected[:3]})")
        return step, value


def whole_state(model) -> dict:
    """The weights of ``model`` with its LoRA adapters merged in, keyed as the plain model's (what
    ``merge_and_unload`` would leave, computed without changing the model that trains): each adapted layer's
    weight is its base weight plus the adapter's delta (``get_delta_weight``, fan-in-fan-out included). A tensor
    shared by two keys (tied embeddings) is kept once, under its first key."""
    import torch
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    adapted = {name: m for name, m in base.named_modules() if isinstance(m, LoraLayer)}
    if any(m.merged for m in adapted.values()):
        raise RuntimeError("optimize.select: the adapters are merged already; whole_state adds them itself")
    out, seen = {}, set()
    with torch.no_grad():
        for key, value in base.state_dict().items():
            if ".lora_" in key:
                continue
            key = key.replace(".base_layer.", ".")
            layer = adapted.get(key.rsplit(".", 1)[0])
            if layer is not None and key.endswith(".weight"):
                # one adapter at a time, in the order merge() adds them (the same rounding in bf16)
                for a in (a for a in layer.active_adapters if a in layer.lora_A):
                    value = (value + layer.get_delta_weight(a)).to(value.dtype)
            elif value.numel() and value.data_ptr() in seen:
                continue
            seen.add(value.data_ptr())
            out[key] = value.to("cpu").contiguous()
    return out


def save_whole(model, folder: Path) -> None:
    """``model``'s whole weights into ``folder`` (``*.safetensors``): ``save_pretrained``, or with LoRA adapters
    the merged weights (``whole_state``), so that the best checkpoint of any phase restores into the merged
    candidate."""
    if not hasattr(model, "peft_config"):
        model.save_pretrained(folder)
        return
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(whole_state(model), str(folder / "model.safetensors"))


def selector(s: Setup, params: Params, log, folder: Path) -> Selector | None:
    """The run's ``Selector`` (None with ``optimize.select: last``)."""
    cfg = params.optimize
    if cfg.select != "best":
        return None
    judge = build_judge(cfg.select_judge, JudgeContext(params.judges, params.task, None, cfg.seed))
    return Selector(judge, [prompt_of(r) for r in s.val_rows], s.val_rows, cfg, s.tok, log, folder)


def prober(s: Setup, cfg, log, curve: list, clock=time.perf_counter, select: Selector | None = None):
    """``probe(model, step)``: the probe's figures, logged at ``step`` and kept in ``curve``. The first call
    always probes (the curve's start); a later one is skipped, returning ``{}`` and counted in
    ``probes_skipped``, when it would take the probes past ``cfg.probe_budget`` of the time since this call
    was made (the last probe's duration is the expected one). ``select`` (``optimize.select: best``) scores
    the model at every call, skipped probe or not."""
    start = clock()
    spent, last, skipped = 0.0, 0.0, 0

    def do_probe(m, step):
        nonlocal spent, last, skipped
        if select is not None:
            select(m, step)
        began = clock()
        if curve and not within_budget(spent, last, began - start, cfg.probe_budget):
            skipped += 1
            log(HEALTH + "probes_skipped", float(skipped), step)
            return {}
        out = probe(m, s.ref, s.tok, s.reward, s.probe_prompts, cfg.probe_temperature, cfg.probe_max_new_tokens,
                    cfg.seed + step)
        last = clock() - began
        spent += last
        log_many(log, health(out), step)
        curve.append(curve_row(step, out))
        return out
    return do_probe


# The probe's figures in MLflow: a section of their own, which the run's charts show first (MLflow orders the
# sections by name: "health" before PPO's "loss", "objective", "policy" and TRL's "train").
HEALTH = "health/"


def health(out: dict) -> dict:
    return {HEALTH + k: v for k, v in out.items()}


def curve_row(step: int, out: dict) -> dict:
    """A probe's figures as a row of the curve (``reports/optimize/curve.csv`` keeps step, reward, kl, length)."""
    return {"step": step, "reward": out["probe_reward"], "kl": out["probe_kl"], "length": out["probe_length"],
            "eos_rate": out["probe_eos_rate"]}


def final_figures(curve: list, steps: int | None, run_probe, log) -> dict:
    """The candidate's probe figures (``final_probe_*``), one value for each point of the curve.

    When the schedule's last probe was of the last step (``steps``, where training ended), it is the candidate's:
    its figures are returned as they are in the curve and in MLflow's history. Otherwise ``run_probe()``
    probes the candidate, and its figures are logged at ``steps`` and added to the curve, so MLflow's history,
    ``curve.csv`` and the final figures never show two values for one step. ``steps`` None (an algorithm
    that counts no steps): the probe is only returned."""
    if steps is not None and curve and curve[-1]["step"] == steps:       # the last probe, of the trained model
        row = curve[-1]
        return {"probe_reward": row["reward"], "probe_kl": row["kl"], "probe_length": row["length"],
                "probe_eos_rate": row["eos_rate"]}
    out = run_probe()
    if steps is not None:
        log_many(log, health(out), steps)
        curve.append(curve_row(steps, out))
    return out


def train_policy(params: Params, s: Setup, model, champion: Path, ckpt: Path, log, do_probe, table=None) -> tuple:
    """Run the algorithm on ``model`` (LoRA-wrapped first when asked); return (trained model, info), LoRA
    adapters merged into the model. Under ``accelerate launch`` the model is gathered whole on the main
    process (sharded by FSDP or ZeRO-3 or not); the other processes get None."""

    cfg = params.optimize
    if cfg.lora:
        model = _with_lora(model, cfg)
    ctx = JudgeContext(params.judges, params.task, None, cfg.seed)
    mixed = resolve(params.train.precision, next(model.parameters()).device.type)
    job = Run(cfg=getattr(cfg, cfg.algorithm), common=cfg, policy=model, reference=s.ref, tok=s.tok, data=s.data,
              reward=s.reward,
              reward_funcs=[TrlReward(n, j, s.by_formatted, s.rows_of) for n, j in zip(cfg.reward, s.judges)],
              reward_weights=s.weights, callbacks=[mlflow_callback(log, do_probe, cfg.log_every)], log=log,
              probe=do_probe, checkpoint_dir=ckpt, champion=champion, judge=lambda n: build_judge(n, ctx),
              rubric=load_rubric(params.task.rubric), table=table or log_table, precision=mixed,
              rows_of=s.rows_of, reward_model_path=next((Path(params.judges[n].path) for n in cfg.reward
                                      if params.judges[n].kind == "reward_model"), None))
    trained, info = REGISTRY[cfg.algorithm].train(job)
    if job.trainer is not None and job.trainer.accelerator.num_processes > 1:
        def fresh():
            base = load_policy(champion, next(trained.parameters()).device.type)[0]
            return _with_lora(base, cfg) if cfg.lora else base

        trained = gathered(job.trainer, fresh)       # whole, on the main process; None on the others
    if trained is None:
        return None, info
    return (trained.merge_and_unload() if cfg.lora else trained), info


