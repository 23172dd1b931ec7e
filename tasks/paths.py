"""Artifact paths of a cycle, defined once. Every stage, the manifest (and so ``dvc.yaml``), the flow and the
tests read them from here."""

from pathlib import Path

INCOMING = Path("data/incoming")             # user files (preference files, corpora), a DVC dependency
KEEP_IN_TRAIN = INCOMING / "keep_in_train.json"   # prompts that stay in training (`rft keep-trained`)
CORPUS = Path("data/corpus")                 # the environment's corpus: texts, demos, (prompts)
DEMOS = CORPUS / "demos.jsonl"               # the corpus's demonstrations (prompt, response)
REGRESSION = CORPUS / "regression"           # the environment's regression suites (evaluate.regression)
PROMPTS = Path("data/prompts.jsonl")
GENERATIONS = Path("data/generations.jsonl")
LABELS = Path("data/labels.jsonl")
RATINGS = Path("data/ratings.jsonl")           # single rated responses (Likert, attributes, comments)
EVAL_ROWS = Path("data/eval.jsonl")
BASE = Path("models/base")
CHAMPION = Path("models/champion")             # policy.champion_dir's default, and what dvc.yaml names
REWARD = Path("models/reward")
CANDIDATE = Path("models/candidate")
CHECKPOINTS = Path("checkpoints/optimize")     # optimize's resumable checkpoints (not a DVC output)
METRIC_MODULES = Path("metrics")               # the evaluate library's metric modules, bundled
REPORTS = Path("reports")
BOOTSTRAP_REPORT = REPORTS / "bootstrap/metrics.json"
EVAL_METRICS = REPORTS / "eval/metrics.json"
KEY_METRICS = REPORTS / "metrics.json"          # the cycle's key figures: the one DVC metrics file
REWARD_METRICS = REPORTS / "reward/metrics.json"
OPTIMIZE_REPORT = REPORTS / "optimize/metrics.json"
CURVE = REPORTS / "optimize/curve.csv"          # the probe's curve, a DVC plot
CURVE_PNG = REPORTS / "optimize/curve.png"      # the same curve drawn, for offline viewing (tasks/plots.py)
DATA_DOCS = REPORTS / "data_docs"
VALIDATION = REPORTS / "validation"
PROMPTS_REPORT = VALIDATION / "prompts.json"     # written only by a passing validation: generate reads it
LABELS_REPORT = VALIDATION / "labels.json"
PROMPTS_DOCS = DATA_DOCS / "prompts"
LABELS_DOCS = DATA_DOCS / "labels"
LABEL_QUALITY = REPORTS / "label/quality.json"
DVC_LOCK = Path("dvc.lock")
