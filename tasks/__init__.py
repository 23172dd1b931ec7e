"""The pipeline's code: ``tasks/stages/`` (one module per stage of ``dvc.yaml``), the components and services
they use, and the ``rft`` command (``tasks/cli.py``). The layers are drawn in ``docs/architecture.md``.

Importing any module of the package changes nothing in the process: the entry points set up the
environment (offline, no telemetry, threads) with ``tasks/runtime.py::setup_process``.
"""
