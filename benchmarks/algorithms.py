"""Every optimizer from the same champion, reward model and labels: win-rates, KL, diversity, time and memory.

    python benchmarks/algorithms.py [--algorithms grpo dpo ...] [--set optimize.grpo.beta=0.1 ...]
                                    [--example hh-rlhf | arithmetic] [--workdir DIR] [--reuse] [--tag NAME]
                                    [--grpo-variants [grpo gspo dapo ...]]

``--grpo-variants`` runs GRPO once per member of its loss family (``GRPO_VARIANTS``: the settings of each, on
top of the task's own ``optimize.grpo``) instead of ``--algorithms``.

Builds one working copy of the project (the demo by default, or
``examples/<name>/params.yaml``), runs its stages up to ``train_reward`` once,
(``--reuse``: a workdir that already holds them is used as it is), then for
each algorithm copies that state, applies ``--set``, sets ``optimize.algorithm`` and runs
``rft stage optimize`` and ``rft stage evaluate`` as a user would, one process
at a time (never side by side: they would share the cores). Each row reads the
evaluation report: the gate's win-rate vs the base (the champion) with its
95% bootstrap CI (the hidden truth on the demo, the gold judge on HH-RLHF; on a task whose gate is a
grader, the arithmetic example, the held-out pass rate and the paired difference of pass rates with its CI), the
AI judge's win-rate, KL, the distinct-2 ratio (candidate over champion, what
``promote.min_distinct_ratio`` checks), wall time of optimize and its peak RSS,
and whether the gate would promote.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cycle import ROOT, make_workdir  # noqa: E402

# GRPO's loss family (docs/algorithms.md, "GRPO's loss family"): each variant's settings of optimize.grpo,
# as its paper or TRL's documentation gives them.
GRPO_VARIANTS = {
    "grpo": {"loss_type": "grpo", "scale_rewards": "group"},                    # DeepSeekMath
    "bnpo": {"loss_type": "bnpo", "scale_rewards": "group"},
    "dr_grpo": {"loss_type": "dr_grpo", "scale_rewards": "none"},               # Dr. GRPO: no std scaling
    "dapo": {"loss_type": "dapo", "epsilon_high": 0.28, "mask_truncated_completions": True},
    "gspo": {"loss_type": "grpo", "importance_sampling_level": "sequence", "epsilon": 3e-4, "epsilon_high": 4e-4},
    "cispo": {"loss_type": "cispo", "epsilon_high": 4.0},
    "sapo": {"loss_type": "sapo"},
    "luspo": {"loss_type": "luspo", "importance_sampling_level": "sequence"},
    "vespo": {"loss_type": "vespo"},
}
BEFORE_OPTIMIZE = ["corpus", "bootstrap", "champion", "prepare", "validate_prompts", "generate", "label",
                   "validate_labels", "train_reward"]


def run(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MiB of the process, stderr tail); raises on a failure."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd}:\n{err[-3000:]}")
    return wall, usage.ru_maxrss / 1024, err[-2000:]


def set_key(params: dict, dotted: str, value) -> None:
    node = params
    *path, last = dotted.split(".")
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.cpu import describe as cpu_line  # noqa: E402  (the CPU and its bf16 flags, printed first)


def main() -> int:
    from tasks.algorithms import NAMES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--algorithms", nargs="+", default=list(NAMES), choices=NAMES)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="params overrides for every run (YAML values), e.g. optimize.grpo.beta=0.1")
    ap.add_argument("--example", default=None, help="an example under examples/ (hh-rlhf, arithmetic) instead of "
                    "the demo")
    ap.add_argument("--grpo-variants", nargs="*", default=None, choices=list(GRPO_VARIANTS),
                    help="run GRPO once per variant of its loss family (all when none is named)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--reuse", action="store_true", help="the workdir's stages up to train_reward are already run")
    ap.add_argument("--tag", default="", help="suffix of the per-algorithm folders (several settings side by side)")
    args = ap.parse_args()
    print(cpu_line(), flush=True)          # the CPU and its bf16 flags (benchmarks/cpu.py)
    overrides = [(k, yaml.safe_load(v)) for k, v in (item.split("=", 1) for item in args.set)]
    if args.reuse:
        base = args.workdir
        return report(base, args, overrides)
    base = make_workdir(args.workdir or Path(tempfile.mkdtemp(prefix="rft-algos-")) / "base")
    if args.example:
        shutil.copytree(ROOT / "examples", base / "examples", dirs_exist_ok=True)
        shutil.copy(ROOT / "examples" / args.example / "params.yaml", base / "params.yaml")
    if args.example == "hh-rlhf":
        hh = ROOT.parent / "shared/data/hh-rlhf-harmless/train-1200.jsonl"
        run([sys.executable, "-m", "tasks.cli", "import-hh", str(hh), "data/incoming/hh"], base)
        run([sys.executable, "-m", "tasks.cli", "train-reward-model", "data/incoming/hh/gold_pairs.jsonl",
             "data/incoming/hh/gold-reward"], base)
    params = yaml.safe_load((base / "params.yaml").read_text())
    for key, value in overrides:
        set_key(params, key, value)
    (base / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    print(f"workdir: {base.parent}", flush=True)
    t0 = time.perf_counter()
    for stage in BEFORE_OPTIMIZE:
        run([sys.executable, "-m", "tasks.cli", "stage", stage], base)
    print(f"stages up to train_reward: {time.perf_counter() - t0:.0f}s", flush=True)
    return report(base, args, overrides)


def report(base: Path, args, overrides: list) -> int:
    from tasks.manifest import load_params
    from tasks.promotion_gate import decide

    source = load_params(base / "params.yaml").promote.winrate_source
    runs = ([(f"grpo/{v}", "grpo", GRPO_VARIANTS[v]) for v in (args.grpo_variants or GRPO_VARIANTS)]
            if args.grpo_variants is not None else [(name, name, {}) for name in args.algorithms])
    rows, graded = [], False
    for label, name, variant in runs:
        work = base.parent / (label.replace("/", "-") + args.tag)
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(base, work, symlinks=True)
        p = yaml.safe_load((work / "params.yaml").read_text())
        for key, value in overrides:
            set_key(p, key, value)
        p["optimize"]["algorithm"] = name
        p["optimize"]["grpo"].update(variant)
        (work / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
        wall, rss, _ = run([sys.executable, "-m", "tasks.cli", "stage", "optimize"], work)
        run([sys.executable, "-m", "tasks.cli", "stage", "evaluate"], work)
        m = json.loads((work / "reports/eval/metrics.json").read_text())
        wp = load_params(work / "params.yaml")
        decision = decide(m, wp.promote, suites=list(wp.evaluate.regression))
        judge = load_params(work / "params.yaml").promote.alarm_judge
        graded = f"grader_{source}.pass_diff" in m
        # a grader's gate: the candidate's pass rate and the paired difference; else the win-rate vs the base
        key = f"grader_{source}.pass_diff" if graded else f"winrate_{source}"
        rows.append({"algorithm": label, "winrate": m[key], "ci_low": m[f"{key}_ci_low"],
                     "ci_high": m[f"{key}_ci_high"],
                     "pass_rate": m.get(f"grader_{source}.pass_rate", float("nan")),
                     "pass_rate_champion": m.get(f"grader_{source}.pass_rate_champion", float("nan")),
                     "judge": m.get(f"winrate_{judge}", float("nan")), "kl": m["kl"],
                     "distinct_ratio": m["distinct_2"] / max(m["distinct_2_champion"], 1e-9),
                     "optimize_s": wall, "peak_rss_mib": rss, "promote": decision.promote,
                     "why": "; ".join(decision.reasons)})
        r = rows[-1]
        print(f"{label}: {key} {r['winrate']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] "
              f"{judge} {r['judge']:.3f} KL {r['kl']:.2f} distinct-2 x{r['distinct_ratio']:.2f} "
              f"optimize {wall:.0f}s {rss:.0f} MiB promote={r['promote']}", flush=True)
    if graded:
        print(f"\n| algorithm | held-out pass rate ({source}; base {rows[-1]['pass_rate_champion']:.3f}) "
              "| paired difference | 95% CI | KL | optimize wall | peak RSS | gate |")
        print("|---|---|---|---|---|---|---|---|")
    else:
        print(f"\n| algorithm | win-rate vs base ({source}) | 95% CI | {judge} win-rate | KL | distinct-2 ratio "
              "| optimize wall | peak RSS | gate |")
        print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        gate = "promote" if r["promote"] else "refuse: " + r["why"]
        middle = (f"{r['pass_rate']:.3f} | {r['winrate']:+.3f} | {r['ci_low']:+.3f}–{r['ci_high']:+.3f}" if graded
                  else f"{r['winrate']:.3f} | {r['ci_low']:.3f}–{r['ci_high']:.3f} | {r['judge']:.3f}")
        tail = f"{r['kl']:.2f}" if graded else f"{r['kl']:.2f} | {r['distinct_ratio']:.2f}"
        print(f"| `{r['algorithm']}` | {middle} | {tail} | {r['optimize_s']:.0f} s | {r['peak_rss_mib']:.0f} MiB "
              f"| {gate} |")
    (base.parent / f"algorithms{args.tag}.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
