"""Stages of a reinforcement-finetuning cycle. Each stage is a plain function in its own module.

Importing this package turns off the telemetry of every library the pipeline
uses, keeps Hugging Face offline (nothing is ever downloaded at run time) and
sizes torch's thread pool to the cores the process may use.
"""

import os

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # MLflow draws a bar for every artifact download, also the few small files it reads back to check a
    # model's input example when a stage logs it
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # transformers draws a bar per model load and save ("Loading weights", "Writing model shards"), datasets
    # one per map: unlabelled, instant at this size, and a dozen per cycle. The stages' own bars (generation,
    # training) name their stage and phase, and stay.
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "DVC_NO_ANALYTICS": "1",
    "ITERATIVE_DO_NOT_TRACK": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # Prefect's temporary server migrates a fresh database (PREFECT_HOME) before it answers: 45 s on a slow
    # 2-core CPU, more on one core, against Prefect's default bound of 20 s. The cycle's own wait and Prefect's
    # (`rft retrain`) give it this long while the process is alive; a dead one still fails at once.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "600",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_key, _value)

# torch (through OpenMP) sizes its thread pool from this when it loads: RFT_THREADS when set, else the cores
# this process may run on (its CPU set, capped by its cgroup's CPU quota), unless the user set it
# (tasks/threads.py; each stage applies scale.threads too).
from tasks import threads as _threads  # noqa: E402

if os.environ.get(_threads.ENV, "").strip().isdigit() and int(os.environ[_threads.ENV]) > 0:
    os.environ["OMP_NUM_THREADS"] = os.environ[_threads.ENV].strip()
else:
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads.usable_cores()))

import warnings  # noqa: E402

# TRL's trainers call transformers' gradient_checkpointing* methods, which transformers 5 renamed to
# activation_checkpointing* and warns about at every training run; the project never calls them itself, and
# the names still work until transformers 6. Known and harmless, so filtered by their message alone.
warnings.filterwarnings("ignore", message=r"`(is_)?gradient_checkpointing(_enable|_disable)?` is deprecated",
                        category=FutureWarning)

# Known-harmless library messages, each filtered at its logger with the reason (tasks/quiet.py).
from tasks import quiet as _quiet  # noqa: E402

_quiet.install()
