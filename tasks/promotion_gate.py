"""The promotion gate: pure logic over the evaluation metrics and the ``promote`` params."""

from __future__ import annotations

from dataclasses import dataclass

from tasks.errors import ConfigError


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: list[str]

    @property
    def summary(self) -> str:
        return ("promoted: " if self.promote else "not promoted: ") + "; ".join(self.reasons)


def grader_verdict(m: dict, name: str, statistic: str) -> tuple[bool, str]:
    """Whether grader ``name``'s paired difference ``statistic`` (pass_diff or score_diff) has a 95% CI low
    above 0, and the sentence that says so with the two policies' figures."""
    g = f"grader_{name}"
    lo = m[f"{g}.{statistic}_ci_low"]
    what, of = ("pass rate", "pass_rate") if statistic == "pass_diff" else ("mean score", "score")
    ok = lo > 0
    return ok, (f"{name}'s {what} {m[f'{g}.{of}']:.3f} vs the champion's {m[f'{g}.{of}_champion']:.3f}: paired "
                f"difference {m[f'{g}.{statistic}']:+.3f}, 95% CI low {lo:+.3f} {'>' if ok else '<='} 0")


def regression_suites(m: dict) -> list[str]:
    """The regression suites the evaluation measured (``evaluate.regression``), by the bound each wrote."""
    return sorted({k.split(".", 1)[0][len("regression_"):] for k in m
                   if k.startswith("regression_") and k.endswith((".max_drop", ".max_ratio"))})


def regression_verdict(m: dict, name: str) -> tuple[bool, str]:
    """Whether the candidate held its ground on suite ``name``, and the sentence that says so. A grader suite
    holds when the 95% CI low of the paired difference (``gate_diff``) is at least ``-max_drop``; a perplexity
    suite when the 95% CI high of the perplexity ratio is at most ``max_ratio``: a loss beyond the bound must be
    ruled out, not merely unproven."""
    g = f"regression_{name}"
    if f"{g}.max_ratio" in m:
        hi, bound = m[f"{g}.ratio_ci_high"], m[f"{g}.max_ratio"]
        ok = hi <= bound
        return ok, (f"regression suite {name}: perplexity {m[f'{g}.perplexity']:.3f} vs the champion's "
                    f"{m[f'{g}.perplexity_champion']:.3f}, ratio x{m[f'{g}.ratio']:.3f}, 95% CI high x{hi:.3f} "
                    f"{'<=' if ok else '>'} x{bound:.3f}")
    lo, bound = m[f"{g}.gate_diff_ci_low"], m[f"{g}.max_drop"]
    ok = lo >= -bound
    what = "mean score" if m[f"{g}.gate_on_score"] else "pass rate"
    return ok, (f"regression suite {name}: {what} {m[f'{g}.gate_value']:.3f} vs the champion's "
                f"{m[f'{g}.gate_value_champion']:.3f}, paired difference {m[f'{g}.gate_diff']:+.3f}, 95% CI low "
                f"{lo:+.3f} {'>=' if ok else '<'} -{bound:g}")


def decide(m: dict, cfg, training_judge: str | None = None, suites=()) -> Decision:
    """Promote only if every check passes; ``reasons`` explains each check either way.

    ``suites``: the names of ``evaluate.regression``; each must have its figures in ``m``.
    ``training_judge``: how ``cfg.winrate_source`` is a judge the policy trains against
    (``tasks/config.py::gate_training_judge``), which only ``cfg.allow_training_judge`` lets through;
    the reasons then say so, whatever the verdict.

    1. the win-rate vs the champion of ``cfg.winrate_source`` (``truth`` in a demo
       environment, else a judge of ``evaluate.judges``) has a bootstrap CI
       lower bound above ``cfg.min_ci_low`` (0.5: better than a coin); when that judge is a grader,
       by ``cfg.grader_statistic``, its paired difference of pass rates (or of mean scores) has a CI
       lower bound above 0 (``grader_verdict``);
    2. the KL to the reference is at most ``cfg.max_kl``;
    3. no reward-hacking alarm: the reward model's mean score rose while the
       independent judge ``cfg.alarm_judge``'s win-rate fell below
       ``cfg.judge_alarm_winrate`` (0.5: that judge prefers the champion); and
       the mean length stayed under ``cfg.max_length_ratio`` times the champion's; and (diversity alarm)
       the candidate's distinct-2 is at least ``cfg.min_distinct_ratio`` times the champion's, so a policy
       that collapsed onto a few phrasings is refused;
    4. with ``cfg.min_judge_human_agreement``, the gate's judge agrees with the
       held-out human pairs (``evaluate.human_pairs``) at least that often: a judge
       that cannot tell what people prefer cannot promote.
    5. every regression suite of ``evaluate.regression`` held (``regression_verdict``): the candidate may
       not have lost more than the suite's bound, by its CI, on a fixed prompt set or reference texts.

    A win-rate the metrics do not hold (a judge that did not run) is an error,
    never a silent pass or fail.
    """
    key = f"winrate_{cfg.winrate_source}"
    if key not in m:
        raise ConfigError(f"promote.winrate_source: the evaluation has no {key} "
                          f"(it has: {', '.join(k for k in m if k.startswith('winrate_') and '_ci_' not in k)})")
    fails, passes = [], []
    grader = f"grader_{cfg.winrate_source}"
    if f"{grader}.pass_diff" in m and cfg.grader_statistic != "winrate":
        verdict = grader_verdict(m, cfg.winrate_source, cfg.grader_statistic)
        (passes if verdict[0] else fails).append(verdict[1])
    else:
        lo = m[f"{key}_ci_low"]
        (passes if lo > cfg.min_ci_low else fails).append(
            f"{key} {m[key]:.3f}, 95% CI low {lo:.3f} {'>' if lo > cfg.min_ci_low else '<='} {cfg.min_ci_low}")
    (passes if m["kl"] <= cfg.max_kl else fails).append(
        f"KL {m['kl']:.3f} {'<=' if m['kl'] <= cfg.max_kl else '>'} {cfg.max_kl}")
    if cfg.alarm_judge is not None:
        judged = m[f"winrate_{cfg.alarm_judge}"]
        if m["reward_mean"] > m["reward_mean_champion"] and judged < cfg.judge_alarm_winrate:
            fails.append(f"reward-hacking alarm: reward-model score rose ({m['reward_mean_champion']:.3f} -> "
                         f"{m['reward_mean']:.3f}) while {cfg.alarm_judge}'s win-rate fell to {judged:.3f}")
    if cfg.min_judge_human_agreement is not None:
        key = f"human_agreement_{cfg.winrate_source}"
        if key not in m:
            raise ConfigError(f"promote.min_judge_human_agreement: the evaluation has no {key} (set "
                              "evaluate.human_pairs to held-out human pairs)")
        agree, bound = m[key], cfg.min_judge_human_agreement
        (passes if agree >= bound else fails).append(
            f"{cfg.winrate_source} agrees with people on {agree:.3f} of the held-out human pairs "
            f"{'>=' if agree >= bound else '<'} {bound}")
    if cfg.min_distinct_ratio is not None:
        kept = m["distinct_2"] / max(m["distinct_2_champion"], 1e-9)
        if kept < cfg.min_distinct_ratio:
            fails.append(f"diversity alarm: distinct-2 {m['distinct_2']:.3f} is x{kept:.2f} of the champion's "
                         f"{m['distinct_2_champion']:.3f} < x{cfg.min_distinct_ratio}")
    missing = [name for name in suites if name not in regression_suites(m)]
    if missing:
        raise ConfigError(f"evaluate.regression: the evaluation has no figures of suite {missing[0]!r}: rerun "
                          "evaluate (a suite is never passed unmeasured)")
    for name in regression_suites(m):
        ok, why = regression_verdict(m, name)
        (passes if ok else fails).append(why)
    ratio = m["mean_length"] / max(m["mean_length_champion"], 1e-9)
    if ratio > cfg.max_length_ratio:
        fails.append(f"length alarm: mean length x{ratio:.2f} of the champion's > x{cfg.max_length_ratio}")
    notes = []
    if training_judge is not None:
        notes.append(f"caution: the gate's judge {cfg.winrate_source} is {training_judge}, allowed by "
                     "promote.allow_training_judge: its win-rate measures the candidate by its own training target")
    return Decision(promote=not fails, reasons=(fails or passes) + notes)
