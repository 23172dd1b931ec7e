"""``rft``: the command line of the pipeline.

    rft init              initialise DVC (and its local remote folder) and the MLflow store
    rft stage NAME        run one stage (what dvc.yaml's stages call)
    rft cycle             run a whole cycle through the Prefect flow
    rft retrain           run the retrain flow once: new data (params retrain.source), a cycle, promotion
    rft deploy            deploy the retrain flow to the Prefect server (PREFECT_API_URL) on retrain.cron
    rft dag               the stages in order, each with the data it reads and writes
    rft clean [--dry-run] delete what the pipeline wrote (stage outputs, reports, the MLflow store, dvc.lock),
                          never data/incoming or params.yaml
    rft history           the iterations: versions, key metrics, promotion, commit, data hashes
    rft relocate          after the project moved (clone, rename, restore): point MLflow's local store at the
                          new folder (every rft command that opens the store does it first; this does only that)
    rft gc [--dry-run]    delete the DVC cache objects and MLflow artifacts of old rejected candidates
    rft keep-trained      keep every prompt earlier iterations trained on in training
                          (data/incoming/keep_in_train.json), so that a new split (salt, fraction, an upgraded
                          project) holds none of them out
    rft check-params      validate params.yaml and exit
    rft params            list every key with its default and help text
    rft import-hh SRC OUT split an HH-RLHF file into a user task's inputs (prompts, pairs, corpus)
    rft train-reward-model PAIRS OUT
                          train a reward model on a preference file (e.g. a gold model for evaluation)

Errors a user can fix (bad params, bad data) print as one message and exit
with status 2; they never print a traceback.
"""

from __future__ import annotations

import argparse
import sys

from tasks import iterations, provenance, tracking
from tasks.config import describe
from tasks.dag import check_dvc_yaml, dvc_yaml, lines, written
from tasks.errors import RFTError
from tasks.gc import collect
from tasks.importers.hh import import_file
from tasks.lock import project_lock
from tasks.manifest import STAGES, load_params
from tasks.paths import KEEP_IN_TRAIN
from tasks.policy import check_devices
from tasks.precision import of
from tasks.preflight import check_servers
from tasks.promotion import recover_promotion
from tasks.redact import redact_text
from tasks.relocate import say
from tasks.reward_training import train_on_file
from tasks.runtime import setup_process
from tasks.stages import run_stage
from tasks.stages.common import StageContext

# The commands that write the project: one at a time (tasks/lock.py).
WRITERS = {"stage", "cycle", "retrain", "gc", "keep-trained", "relocate", "clean"}


def main(argv: list[str] | None = None) -> int:
    setup_process()                     # the entry point: offline, no telemetry, threads, before torch or Prefect
    parser = argparse.ArgumentParser(prog="rft", description="Reinforcement finetuning cycles.")
    parser.add_argument("--params", default="params.yaml", help="path to params.yaml")
    sub = parser.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("stage", help="run one stage")
    st.add_argument("name", choices=STAGES)
    sub.add_parser("init", help="initialise DVC (local remote) and the MLflow store")
    sub.add_parser("cycle", help="run one cycle through the Prefect flow")
    sub.add_parser("check-params", help="validate params.yaml")
    sub.add_parser("retrain", help="run the retrain flow once: take new data, run a cycle, promote or not")
    sub.add_parser("deploy", help="deploy the retrain flow with its schedule to the Prefect server")
    hist = sub.add_parser("history", help="the iterations, oldest first")
    hist.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    sub.add_parser("params", help="every key, its default and help")
    sub.add_parser("dag", help="the stages in order, each with the data it reads and writes")
    dy = sub.add_parser("dvc-yaml", help="print the dvc.yaml the stage manifest implies (tasks/manifest.py)")
    dy.add_argument("--check", action="store_true", help="compare it with ./dvc.yaml instead; exit 1 when they differ")
    cl = sub.add_parser("clean", help="delete what the pipeline wrote (stage outputs, reports, the MLflow store, "
                        "dvc.lock); data/incoming, params.yaml and the DVC cache stay")
    cl.add_argument("--dry-run", action="store_true", help="print what would be deleted and change nothing")
    sub.add_parser("relocate", help="point MLflow's local store at the project's folder after it moved (every "
                   "rft command that opens the store does this first)")
    sub.add_parser("keep-trained", help="add every prompt earlier iterations trained on to "
                   "data/incoming/keep_in_train.json, so that a new split holds none of them out")
    gc = sub.add_parser("gc", help="delete the DVC cache objects and MLflow artifacts of rejected candidates older "
                        "than the last gc.keep_last iterations (champions are kept)")
    gc.add_argument("--dry-run", action="store_true", help="print what would be deleted and change nothing")
    imp = sub.add_parser("import-hh", help="split an HH-RLHF file into prompts, preference pairs and a corpus")
    imp.add_argument("src")
    imp.add_argument("out", help="output folder, e.g. data/incoming/hh")
    imp.add_argument("--seed", type=int, default=0)
    imp.add_argument("--max-prompt-chars", type=int, default=400)
    imp.add_argument("--limit", type=int, default=None, help="use only this many rows (after shuffling)")
    trm = sub.add_parser("train-reward-model", help="train a reward model (params.yaml's reward section) on a "
                         "preference file in the labels schema or the HH-RLHF format")
    trm.add_argument("pairs")
    trm.add_argument("out")
    args = parser.parse_args(argv)

    try:
        if args.cmd == "params":
            print(describe())
            return 0
        if args.cmd == "dag":
            print("\n".join(lines()))
            return 0
        if args.cmd == "dvc-yaml":
            if not args.check:
                print(dvc_yaml(), end="")
                return 0
            problem = check_dvc_yaml()
            print(problem or "dvc.yaml is the manifest's", file=sys.stderr if problem else sys.stdout)
            return 1 if problem else 0
        if args.cmd == "import-hh":
            counts = import_file(args.src, args.out, seed=args.seed, max_prompt_chars=args.max_prompt_chars,
                                 limit=args.limit)
            print(f"{args.out}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
            return 0

        params = load_params(args.params)
        if args.cmd not in WRITERS or getattr(args, "dry_run", False):
            return _dispatch(args, params)
        import shlex

        with project_lock(shlex.join(["rft", *(sys.argv[1:] if argv is None else argv)]), params.lock):
            return _dispatch(args, params)
    except RFTError as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)     # a URL keeps no credential
        return 2


def _dispatch(args, params) -> int:
    """Run the command ``args.cmd`` (every one but params and import-hh, which need no params.yaml)."""
    if args.cmd == "train-reward-model":
        stats = train_on_file(args.pairs, args.out, params.reward, of(params))
        print(f"{args.out}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in stats.items()))
        return 0
    if args.cmd == "check-params":
        mixed = check_devices(params)
        print(mixed.line())
        print(f"{args.params}: ok")
        return 0
    if args.cmd == "init":
        return init(params)
    if args.cmd == "retrain":
        check_servers(params.tracking.uri)
        # lazy: see LAZY_IMPORTS in tests/test_architecture.py
        from flows.retrain import retrain

        state = retrain(params_path=args.params, return_state=True)
        if not state.is_completed():
            print(f"error: retrain {state.name.lower()}: {state.message}", file=sys.stderr)
            return 2
        return 0
    if args.cmd == "deploy":
        # lazy: see LAZY_IMPORTS in tests/test_architecture.py
        from flows.retrain import deploy

        deployment_id = deploy(args.params)
        cfg = params.retrain
        when = f"on '{cfg.cron}' ({cfg.timezone})" if cfg.cron else "when triggered"
        print(f"deployed rft-retrain/{cfg.deployment} ({deployment_id}) {when}; overlap: {cfg.overlap}. "
              f"Start a worker: infra/prefect.sh worker (pool {cfg.work_pool}); run now: "
              f"prefect deployment run rft-retrain/{cfg.deployment}")
        return 0
    if args.cmd == "gc":
        check_servers(params.tracking.uri, prefect=False)
        collect(params, dry_run=args.dry_run)
        return 0
    if args.cmd == "keep-trained":
        import mlflow

        check_servers(params.tracking.uri, prefect=False)
        tracking.setup(params.tracking)

        path = KEEP_IN_TRAIN
        total, added = provenance.keep_trained(path, mlflow.MlflowClient())
        print(f"{path}: {added} prompt(s) added, {total} in all: every prompt an earlier iteration trained on "
              "stays in training. Commit it with params.yaml; the next cycle's split holds none of them out.")
        return 0
    if args.cmd == "history":
        return show_history(params, as_json=args.json)
    if args.cmd == "clean":
        import shutil
        from pathlib import Path

        for path in map(Path, written(params.tracking)):
            if path.exists() or path.is_symlink():
                print(f"{'would remove' if args.dry_run else 'removed'} {path}")
                if not args.dry_run:
                    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        return 0
    if args.cmd == "relocate":
        report = tracking.relocated(params.tracking)
        if not report:
            print(say(None))
        return 0
    if args.cmd == "stage":
        check_servers(params.tracking.uri, prefect=False)
        recover_promotion(params, who=f"stage {args.name}")   # a promotion a crash cut short, before any stage
        metrics = run_stage(args.name, StageContext.from_dvc(params))
        print(f"{args.name}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in metrics.items()))
        return 0
    if args.cmd == "cycle":
        check_servers(params.tracking.uri)

        # lazy: see LAZY_IMPORTS in tests/test_architecture.py
        from flows.cycle import run_cycle

        result = run_cycle(params_path=args.params)
        return 0 if result.get("ok") else 2
    return 0


def init(params) -> int:
    """Make the working copy ready for a cycle: git and DVC repos, the DVC remote folder, the MLflow store."""
    import subprocess
    from pathlib import Path

    if not Path(".git").exists():
        subprocess.run(["git", "init", "-q"], check=True)
    dvc = [sys.executable, "-m", "dvc"]
    if not Path(".dvc").exists():
        subprocess.run([*dvc, "init", "-q"], check=True)
        subprocess.run([*dvc, "config", "core.analytics", "false"], check=True)
    remote = subprocess.run([*dvc, "remote", "default"], capture_output=True, text=True).stdout.strip()
    if remote:
        url = subprocess.run([*dvc, "config", f"remote.{remote}.url"], capture_output=True, text=True).stdout.strip()
        if url and "://" not in url:
            # A local remote: a path relative to .dvc/ (where the config lives), or absolute.
            (Path(".dvc") / url).resolve().mkdir(parents=True, exist_ok=True)
    exp_id = tracking.setup(params.tracking)
    print(f"DVC: ready (remote: {remote or 'none'}); MLflow: {params.tracking.uri}, "
          f"experiment '{params.tracking.experiment}' ({exp_id})")
    return 0


def show_history(params, *, as_json: bool) -> int:
    import json

    import mlflow

    check_servers(params.tracking.uri, prefect=False)
    exp_id = tracking.setup(params.tracking)
    rows = iterations.history(mlflow.MlflowClient(), exp_id)
    if as_json:
        for row in rows:
            print(json.dumps(row))
    elif not rows:
        print(f"no iterations yet in experiment '{params.tracking.experiment}' ({params.tracking.uri}). "
              "`rft cycle` records one; `dvc repro` and `rft stage` run stages without recording an iteration or "
              "promoting. After `dvc repro`, `rft cycle` runs no stage again: it records the iteration and the "
              "gate decides on the candidate (README: Three ways to run the same stages)")
    else:
        print(iterations.format_history(rows))
    return 0


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    sys.exit(main())
