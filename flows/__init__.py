"""The Prefect flows: ``cycle`` (one cycle) and ``retrain`` (what a schedule runs).

A flow module is an entry point: ``python -m flows.cycle`` runs one, and a Prefect worker loads
``flows/retrain.py:retrain`` to run a deployment. So this package sets up the process
(``tasks/runtime.py::setup_process``: offline, no telemetry, threads) when it is imported: under
``python -m flows.cycle`` that is before Prefect loads and reads its settings from the environment, and in a
worker (where Prefect is loaded already) before anything loads torch. It is the one package that does; the
modules of ``tasks`` change nothing when imported.
"""

from tasks.runtime import setup_process

setup_process()
