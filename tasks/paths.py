"""Artifact paths of a cycle, defined once. Every stage, the flow and the tests read them from here."""

from pathlib import Path

INCOMING = Path("data/incoming")             # user files (preference files, corpora), a DVC dependency
KEEP_IN_TRAIN = INCOMING / "keep_in_train.json"   # prompts that stay in training (`rft keep-trained`)
CORPUS = Path("data/corpus")                 # the environment's corpus: texts, demos, (prompts)
PROMPTS = Path("data/prompts.jsonl")
GENERATIONS = Path("data/generations.jsonl")
LABELS = Path("data/labels.jsonl")
RATINGS = Path("data/ratings.jsonl")           # single rated responses (Likert, attributes, comments)
EVAL_ROWS = Path("data/eval.jsonl")
BASE = Path("models/base")
REWARD = Path("models/reward")
CANDIDATE = Path("models/candidate")
REPORTS = Path("reports")
EVAL_METRICS = REPORTS / "eval/metrics.json"
KEY_METRICS = REPORTS / "metrics.json"          # the cycle's key figures: the one DVC metrics file
REWARD_METRICS = REPORTS / "reward/metrics.json"
DATA_DOCS = REPORTS / "data_docs"
VALIDATION = REPORTS / "validation"
LABEL_QUALITY = REPORTS / "label/quality.json"
