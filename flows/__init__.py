"""The Prefect flows: ``cycle`` (one cycle) and ``retrain`` (what a schedule runs).

A flow module is an entry point: ``python -m flows.cycle`` runs one, and a Prefect worker loads
``flows/retrain.py:retrain`` to run a deployment. So this package sets up the process
(``tasks/runtime.py::setup_process``: offline, no telemetry, threads) when it is imported, before its modules
import Prefect, which reads its settings from the environment as it loads. It is the one package that does;
the modules of ``tasks`` change nothing when imported.
"""

from tasks.runtime import setup_process

setup_process()
