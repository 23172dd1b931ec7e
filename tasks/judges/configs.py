"""The typed config of each judge kind: what a ``judges.<name>`` entry of ``params.yaml`` may set
(``rft params`` lists them with their help). ``tasks/judges/__init__.py::KINDS`` pairs each with its
implementation."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tasks.errors import ConfigError
from tasks.formula import ANY_NAME, FormulaError, parse
from tasks.label_studio_client import StudioWait
from tasks.options import opt
from tasks.paths import REWARD


@dataclass(frozen=True)
class RewardModelJudgeConfig:
    kind: str = opt("reward_model", "A trained reward-model folder as a judge.")
    path: str = opt(str(REWARD), "Reward-model folder: this cycle's (models/reward), a gold model, any path.")
    max_length: int | None = opt(None, "Tokens per text, truncated from the left; null: the length the model "
                                 "was trained with (its rft_reward.json), else 128.", ge=8)
    batch_size: int = opt(64, "Texts per forward pass.", ge=1)


@dataclass(frozen=True)
class EmbeddingJudgeConfig:
    kind: str = opt("embedding", "MiniLM-L6 zero-shot judge with the rubric's sentences as principles.")
    relevance: float = opt(0.5, "Weight of cos(response, request) in the score.", ge=0)
    scale: float = opt(10.0, "Slope of P(A better) = sigmoid(scale * score margin).", gt=0)
    batch_size: int = opt(128, "Texts per encoder batch.", ge=1)
    max_length: int = opt(128, "Tokens per text.", ge=8)


@dataclass(frozen=True)
class LLMJudgeConfig:
    kind: str = opt("llm", "A local Hugging Face causal LM, deciding by the log-probs of 'A' and 'B'.")
    model: str = opt("", "Model folder (or a policy folder with a pointer).", required=True)
    batch_size: int = opt(8, "Questions per forward pass.", ge=1)
    max_length: int = opt(1024, "Tokens per question (truncated from the left; capped by the model's context).",
                          ge=16)
    device: str = opt("auto", "Where the judge runs.", choices=("auto", "cpu", "cuda"))


@dataclass(frozen=True)
class HttpJudgeConfig:
    kind: str = opt("http", "An OpenAI-compatible chat-completions server.")
    url: str = opt("", "Base URL ending in /v1, e.g. http://127.0.0.1:8000/v1.", required=True)
    model: str = opt("", "Model name the server knows.", required=True)
    api_key_env: str | None = opt(None, "Name of the environment variable that holds the API key (the key "
                                  "itself never goes in params.yaml).")
    timeout: float = opt(30.0, "Seconds a request may take in all (connect, send, the whole answer), however "
                         "slowly the server sends it.", gt=0)
    max_retries: int = opt(4, "Retries of a 429, 5xx, timeout, refused connection or answer that is not JSON.", ge=0)
    backoff: float = opt(0.5, "First retry delay in seconds; doubles at each retry, up to 60 s (tasks/retry.py).", ge=0)
    concurrency: int = opt(4, "Requests in flight at once.", ge=1)
    stage_timeout: float = opt(21600.0, "Seconds all of one stage's requests to this judge may take; then the "
                               "stage fails naming this key.", gt=0)
    max_response_kb: int = opt(1024, "An answer longer than this (kB) fails the stage: it is not a chat "
                               "completion.", ge=1)
    max_consecutive_failures: int = opt(8, "Failed tries in a row, over all requests, after which the server "
                                        "counts as down and the stage fails at once (a circuit breaker).", ge=1)


@dataclass(frozen=True)
class EnsembleJudgeConfig:
    kind: str = opt("ensemble", "Several judges combined.")
    members: list = opt([], "Names of the member judges (two or more, none an ensemble).", required=True)
    combine: str = opt("mean", "mean or majority (share of votes). mean of judges that all score responses: "
                       "the mean of each member's score times its scale, a comparison being sigmoid of the "
                       "difference, so its reward and its verdicts agree; mean of judges that compare pairs: the "
                       "mean of P(A better).", choices=("mean", "majority"))


@dataclass(frozen=True)
class SimulatedJudgeConfig:
    kind: str = opt("simulated", "The environment's hidden-truth annotator (demo environments only).")


@dataclass(frozen=True)
class PeopleJudgeConfig(StudioWait):
    kind: str = opt("label_studio", "People in Label Studio (label_studio section), comparing blind; a "
                    "comparison's P(A better) is its share of votes.")
    seed: int = opt(0, "Seed of the display order.")


# Graders: judges that score one response on its own by a rule, code or a model's score, often against a
# reference field of the prompt's row (tasks/judges/graders.py).

STRING_OPERATIONS = ("equals", "not_equals", "contains", "not_contains", "starts_with", "ends_with")
SIMILARITY_METRICS = ("exact_match", "bleu", "chrf", "rouge1", "rouge2", "rougeL", "cosine")
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The prompts file's own columns, and the validation's derived ones (tasks/validate.py), which a reference field
# may not be named after.
RESERVED_FIELDS = ("id", "prompt", "messages", "split", "source", "prompt_form", "conversation_problem",
                   "prompt_text_problem", "prompt_tokens", "heldout_in_training_data", "reference_conflict")
LABEL_WORD = re.compile(r"[^\W_]+(?:[-_][^\W_]+)*")    # tasks/judges/score_model.py::parse_score reads words
FUNCTION_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")


def _field(key: str, value: str | None) -> None:
    if value is not None and (not FIELD_NAME.match(value) or value in RESERVED_FIELDS or value.endswith("__problem")):
        raise ConfigError(f"{key}: {value!r} is not a reference field's name (letters, digits and _, not one of "
                          f"{', '.join(RESERVED_FIELDS)})")


def _pattern(key: str, pattern: str, flags: int = 0) -> None:
    try:
        re.compile(pattern, flags)
    except re.error as exc:
        raise ConfigError(f"{key}: {pattern!r} is not a regular expression: {exc}") from None


def _reachable(cfg, best: float) -> None:
    if cfg.pass_threshold > best:
        raise ConfigError(f"pass_threshold: {cfg.pass_threshold:g} is above the best score this grader gives "
                          f"({best:g}), so no response could pass")


def passes_at(default: float):
    """A grader's ``pass_threshold`` field, with its kind's default."""
    return opt(default, "A response passes when its score is at least this (evaluate's pass rate).")


@dataclass(frozen=True)
class GraderConfig:
    """What every grader sets: when a response passes, and how two scores read as a comparison."""
    pass_threshold: float = passes_at(1.0)
    scale: float = opt(10.0, "Slope of P(A better) = sigmoid(scale * score margin) when the grader compares two "
                       "responses (labelling, online DPO's pairs, a win-rate).", gt=0)


@dataclass(frozen=True)
class StringCheckConfig(GraderConfig):
    kind: str = opt("string_check", "Compares the response (surrounding whitespace stripped) with a string.")
    operation: str = opt("equals", "How the response meets the string.", choices=STRING_OPERATIONS)
    reference: str | None = opt(None, "The prompt row's field holding the string (or a list of acceptable "
                                "strings, any of which will do); set this or literal.")
    literal: str | None = opt(None, "A fixed string instead of a field.")
    ignore_case: bool = opt(False, "Compare case-folded.")
    extract: str | None = opt(None, "A regular expression: the response's first match (its first group, if it "
                              "has one) is compared, and a response without a match misses. null: the whole "
                              "response.")
    match_score: float = opt(1.0, "Score of a response that meets the string.")
    miss_score: float = opt(0.0, "Score of one that does not.")

    def __post_init__(self):
        if (self.reference is None) == (self.literal is None):
            raise ConfigError("reference: set exactly one of reference (a field of the prompt row) or literal")
        _field("reference", self.reference)
        if self.extract is not None:
            _pattern("extract", self.extract)
        _reachable(self, max(self.match_score, self.miss_score))


@dataclass(frozen=True)
class RegexConfig(GraderConfig):
    kind: str = opt("regex", "A regular expression the response (surrounding whitespace stripped) should match.")
    pattern: str = opt("", "The regular expression (Python's re syntax).", required=True)
    mode: str = opt("search", "search: matches anywhere; fullmatch: the whole response.",
                    choices=("search", "fullmatch"))
    ignore_case: bool = opt(False, "re.IGNORECASE.")
    multiline: bool = opt(False, "re.MULTILINE: ^ and $ match at each line.")
    dotall: bool = opt(False, "re.DOTALL: . matches a newline too.")
    match_score: float = opt(1.0, "Score of a response that matches.")
    miss_score: float = opt(0.0, "Score of one that does not.")

    def flags(self) -> int:
        return (re.IGNORECASE * self.ignore_case) | (re.MULTILINE * self.multiline) | (re.DOTALL * self.dotall)

    def __post_init__(self):
        _pattern("pattern", self.pattern, self.flags())
        _reachable(self, max(self.match_score, self.miss_score))


@dataclass(frozen=True)
class TextSimilarityConfig(GraderConfig):
    kind: str = opt("text_similarity", "Similarity to the reference answer in [0, 1], through the evaluate module "
                    "metrics/text_similarity, or the MiniLM encoder's cosine.")
    pass_threshold: float = passes_at(0.5)
    metric: str = opt("rougeL", "exact_match (whitespace-squashed), bleu and chrf (sacreBLEU, / 100), rouge1, "
                      "rouge2, rougeL (F1), or cosine (MiniLM-L6 embeddings, below 0 counted as 0).",
                      choices=SIMILARITY_METRICS)
    reference: str = opt("reference", "The prompt row's field holding the reference answer (a string, or a list "
                         "of them).")
    ignore_case: bool = opt(False, "exact_match only: compare case-folded.")
    batch_size: int = opt(128, "cosine only: texts per encoder batch.", ge=1)
    max_length: int = opt(128, "cosine only: tokens per text.", ge=8)

    def __post_init__(self):
        _field("reference", self.reference)
        _reachable(self, 1.0)


@dataclass(frozen=True)
class PythonGraderConfig(GraderConfig):
    kind: str = opt("python", "Your function function(prompt_row, response) -> float, or a dict holding the "
                    "score under result_key, run in worker processes without the project's secrets.")
    function: str = opt("", "package.module:function, importable from the project's folder.", required=True)
    result_key: str = opt("score", "The score's key when the function returns a dict.")
    timeout: float = opt(5.0, "Seconds one call may take; then the worker is stopped and the response scores "
                         "error_score (counted as a timeout).", gt=0)
    memory_mb: int = opt(1024, "Address space of a worker process in MB (RLIMIT_AS); a call that needs more "
                         "scores error_score (counted as an error, or as a crash when the process dies). Raise "
                         "it for a function that imports a large library.", ge=64)
    error_score: float = opt(0.0, "Score of a response whose call raised, crashed, ran out of memory or time, or "
                             "returned no number.")
    workers: int = opt(1, "Worker processes calling the function at once.", ge=1)
    pass_env: list = opt([], "Names of environment variables the workers may read besides PATH, HOME, LANG, "
                         "LC_ALL, TMPDIR and PYTHONPATH; every other one (API keys, passwords) is withheld.")
    fields: list = opt([], "The prompt row's fields the function reads (e.g. [tests]); the prompts' validation "
                       "checks that every row has them, not empty.")

    def __post_init__(self):
        if not FUNCTION_PATH.match(self.function):
            raise ConfigError(f"function: {self.function!r} is not package.module:function")
        bad = [v for v in self.pass_env if not isinstance(v, str) or not FIELD_NAME.match(v)]
        if bad:
            raise ConfigError(f"pass_env: {bad[0]!r} is not an environment variable's name")
        for f in self.fields:
            if not isinstance(f, str):
                raise ConfigError(f"fields: {f!r} is not a field's name")
            _field("fields", f)


@dataclass(frozen=True)
class ScoreModelConfig(GraderConfig):
    kind: str = opt("score_model", "An llm or http judge of the judges section, asked to score one response "
                    "against the rubric (pointwise); the score, normalised to [0, 1], is the mean over samples.")
    pass_threshold: float = passes_at(0.7)
    judge: str = opt("", "The llm or http entry of the judges section whose model answers (its server, key, "
                     "timeouts and circuit breaker are used).", required=True)
    rubric: str | None = opt(None, "Rubric YAML; null: task.rubric.")
    min_score: float = opt(0.0, "Lowest score the model is asked for.")
    max_score: float = opt(10.0, "Highest score the model is asked for.")
    labels: dict | None = opt(None, "Answer labels mapped to numbers in [min_score, max_score] (e.g. {good: 10, "
                              "bad: 0}); null: the model answers with a number.")
    reference: str | None = opt(None, "A field of the prompt row shown to the model as the reference answer.")
    samples: int = opt(1, "Answers drawn per response; the score is their mean.", ge=1)
    temperature: float = opt(0.0, "Sampling temperature of the answers (above 0 when samples > 1).", ge=0)
    max_tokens: int = opt(8, "Longest answer in tokens.", ge=1)
    unparsed_score: float = opt(0.0, "Score in [0, 1] of an answer holding no number in range (or no label); "
                                "such answers are counted (stats.unparsed).", ge=0, le=1)
    seed: int = opt(0, "Seed of the first sample; sample i uses seed + i.")

    def __post_init__(self):
        if self.max_score <= self.min_score:
            raise ConfigError(f"max_score: {self.max_score:g} must be above min_score ({self.min_score:g})")
        if self.samples > 1 and self.temperature == 0:
            raise ConfigError("temperature: several samples at temperature 0 are one answer repeated; set it "
                              "above 0, or samples to 1")
        if self.labels is not None:
            if not self.labels:
                raise ConfigError("labels: empty; name at least one label, or set null")
            for label, value in self.labels.items():
                if not isinstance(label, str) or not LABEL_WORD.fullmatch(label):
                    raise ConfigError(f"labels.{label}: a label is one word (letters and digits, joined by - or "
                                      "_), as the answer is read word by word")
                if not isinstance(value, (int, float)) or isinstance(value, bool) \
                        or not self.min_score <= value <= self.max_score:
                    raise ConfigError(f"labels.{label}: {value!r} is not a number in [min_score, max_score] "
                                      f"([{self.min_score:g}, {self.max_score:g}])")
        _field("reference", self.reference)
        _reachable(self, 1.0)


@dataclass(frozen=True)
class MultiGraderConfig(GraderConfig):
    kind: str = opt("multi", "A formula over other graders' scores, e.g. 0.7 * correct + 0.3 * format.")
    formula: str = opt("", "Numbers, + - * / (divisors are numbers), parentheses, min(...), max(...), "
                       "clip(x, lo, hi), and the names of judges that score single responses (not multi, "
                       "simulated or label_studio).", required=True)

    def __post_init__(self):
        try:
            parse(self.formula, ANY_NAME)
        except FormulaError as exc:
            raise ConfigError(f"formula: {exc}") from None
