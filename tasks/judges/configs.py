"""The typed config of each judge kind: what a ``judges.<name>`` entry of ``params.yaml`` may set
(``rft params`` lists them with their help). ``tasks/judges/__init__.py::KINDS`` pairs each with its
implementation."""

from __future__ import annotations

from dataclasses import dataclass

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
