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
    "DVC_NO_ANALYTICS": "1",
    "ITERATIVE_DO_NOT_TRACK": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_key, _value)

# torch (through OpenMP) sizes its thread pool from this when it loads: use the cores this process may
# run on (a container or a CPU set can allow fewer than the machine has), unless the user set it.
os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                             else (os.cpu_count() or 1)))
