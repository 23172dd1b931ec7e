"""The optimize stage's learning curve as a picture that needs no network: ``reports/optimize/curve.png``.

``dvc plots show`` renders its vega plots with scripts from a CDN, so offline they are blank; an image plot is
embedded in the same page as it is. The PNG has the probe's reward and its KL to the reference on two panels,
one y axis each, sharing the optimizer step on x.
"""

from __future__ import annotations

from pathlib import Path

from tasks.io import atomic_path

PANELS = (("reward", "probe reward\n(reward model score)"), ("kl", "KL to the reference\n(nats per sequence)"))


def curve_png(rows: list[dict], path: str | Path, title: str) -> None:
    """Draw ``rows`` (``step``, ``reward``, ``kl``) into the PNG ``path``: reward above, KL below."""
    import matplotlib

    matplotlib.use("Agg")            # no display: draw to a file
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    rows = sorted(rows, key=lambda r: r["step"])
    fig = Figure(figsize=(7, 5), dpi=100, layout="constrained")
    axes = fig.subplots(len(PANELS), 1, sharex=True)
    steps = [r["step"] for r in rows]
    for ax, (key, label) in zip(axes, PANELS):
        ax.plot(steps, [r[key] for r in rows], marker="o", markersize=3)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("optimizer step")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
