"""The set-up of a process that runs the pipeline, done by each entry point (``rft``, the flows, the
``accelerate launch`` workers, the shard workers, the benchmarks, the tests) and never by importing a module.

``setup_process()`` turns off the telemetry of every library the pipeline uses, keeps Hugging Face offline
(nothing is ever downloaded at run time), sizes torch's thread pool to the cores the process may use, and
filters the known-harmless library messages (``tasks/quiet.py``). It sets only what the user left unset
(``OMP_NUM_THREADS`` follows ``RFT_THREADS`` when that is set), and running it twice changes nothing.
torch reads ``OMP_NUM_THREADS`` when it loads, so an entry point calls it before anything imports torch: the
project's modules import torch only inside the functions that use it.
"""

from __future__ import annotations

import os
import warnings

from tasks import quiet, threads

# Settings of the libraries, each set unless the user set it.
ENV_DEFAULTS: dict[str, str] = {
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
}


def setup_process() -> None:
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    # torch (through OpenMP) sizes its thread pool from this when it loads: RFT_THREADS when set, else the
    # cores this process may run on (its CPU set, capped by its cgroup's CPU quota), unless the user set it
    # (tasks/threads.py; each stage applies scale.threads too).
    if os.environ.get(threads.ENV, "").strip().isdigit() and int(os.environ[threads.ENV]) > 0:
        os.environ["OMP_NUM_THREADS"] = os.environ[threads.ENV].strip()
    else:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads.usable_cores()))
    # TRL's trainers call transformers' gradient_checkpointing* methods, which transformers 5 renamed to
    # activation_checkpointing* and warns about at every training run; the project never calls them itself, and
    # the names still work until transformers 6. Known and harmless, so filtered by their message alone.
    warnings.filterwarnings("ignore", message=r"`(is_)?gradient_checkpointing(_enable|_disable)?` is deprecated",
                            category=FutureWarning)
    quiet.install()               # known-harmless library messages, each filtered at its logger with the reason
