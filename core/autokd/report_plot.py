"""The report's figure: one panel per pair of objectives (a single objective is drawn
against the trial number) with every trial, the failed ones marked, the Pareto front,
the chosen trial, arch labels, and the rungs of a multi-fidelity search shaded."""

from __future__ import annotations

import itertools
import math
import textwrap
from collections.abc import Callable

__all__ = ["plot_search"]

_FRONT = "#2f80ed"
_CHOSEN = "#eb5757"
_FAILED = "#d64545"


def _value(record, name: str) -> float | None:
    value = record.metrics.get(name)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def plot_search(view, path: str, arch_label: Callable[[dict], str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [o.name for o in view.objectives]
    pairs = list(itertools.combinations(names, 2)) or [("trial", names[0] if names else "")]
    cols = min(len(pairs), 2)
    rows = math.ceil(len(pairs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7.5 * cols, 5 * rows), dpi=110, squeeze=False)
    rungs = sorted({view.rung(r) for r in view.records if view.rung(r) is not None})
    shades = plt.get_cmap("Greys")
    for ax, (x_name, y_name) in zip(axes.flat, pairs, strict=False):
        _panel(ax, view, x_name, y_name, rungs, shades, arch_label)
    for ax in list(axes.flat)[len(pairs) :]:
        ax.set_visible(False)
    failed = sum(1 for r in view.records if not r.ok)
    keys = list(dict.fromkeys(k for r in view.records for k in r.arch))
    # wrapped to the figure's width (about 100 characters of 10-point text per panel)
    fig.suptitle(
        textwrap.fill(f"{len(view.records)} trials, {failed} failed; labels: trial: {'/'.join(keys)}", 100 * cols),
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _coords(record, x_name: str, y_name: str):
    x = float(record.trial) if x_name == "trial" else _value(record, x_name)
    return x, _value(record, y_name)


def _panel(ax, view, x_name, y_name, rungs, shades, arch_label) -> None:
    ok = [r for r in view.records if r.ok and None not in _coords(r, x_name, y_name)]
    if rungs:
        for i, rung in enumerate(rungs):
            members = [r for r in ok if view.rung(r) == rung]
            shade = shades(0.3 + 0.6 * i / max(1, len(rungs) - 1))
            ax.scatter(
                [_coords(r, x_name, y_name)[0] for r in members],
                [_coords(r, x_name, y_name)[1] for r in members],
                color=shade,
                s=30,
                label=f"rung {rung}",
                zorder=2,
            )
        others = [r for r in ok if view.rung(r) is None]
    else:
        others = ok
    final = [r for r in others if getattr(r, "phase", None) == "final"]
    others = [r for r in others if r not in final]
    for members, label, color in ((others, "trial", "#9aa5b1"), (final, "final distillation", "#f2994a")):
        if members:
            ax.scatter(
                [_coords(r, x_name, y_name)[0] for r in members],
                [_coords(r, x_name, y_name)[1] for r in members],
                color=color,
                s=30,
                label=label,
                zorder=2,
            )
    for r in ok:
        ax.annotate(
            f"{r.trial}: {arch_label(r.arch)}",
            _coords(r, x_name, y_name),
            textcoords="offset points",
            xytext=(4, 3),
            fontsize=7,
            color="#52606d",
        )
    front = [r for r in view.front if None not in _coords(r, x_name, y_name)]
    if front:
        points = sorted(_coords(r, x_name, y_name) for r in front)
        ax.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            "-o",
            color=_FRONT,
            ms=6,
            lw=1.4,
            label="Pareto front",
            zorder=3,
        )
    best = view.best
    if best is not None and None not in _coords(best, x_name, y_name):
        x, y = _coords(best, x_name, y_name)
        ax.scatter(
            [x],
            [y],
            marker="*",
            s=260,
            c=_CHOSEN,
            edgecolors="black",
            linewidths=0.6,
            label=f"chosen (trial {best.trial})",
            zorder=4,
        )
    _failed(ax, view, x_name, y_name, ok)
    ax.set_xlabel(x_name + _direction(view, x_name))
    ax.set_ylabel(y_name + _direction(view, y_name))
    ax.margins(x=0.15, y=0.1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")


def _failed(ax, view, x_name, y_name, ok) -> None:
    """Failed trials have no metrics: drawn as crosses along the panel's lower edge (at
    their own value of a metric they did record)."""
    failed = [r for r in view.records if not r.ok]
    if not failed:
        return
    xs = [_coords(r, x_name, y_name)[0] for r in ok] or [0.0]
    ys = [_coords(r, x_name, y_name)[1] for r in ok] or [0.0]
    x_low, x_high = min(xs), max(xs)
    y_low = min(ys) - 0.08 * ((max(ys) - min(ys)) or 1.0)
    points = []
    for i, r in enumerate(failed):
        x, y = _coords(r, x_name, y_name)
        if x is None:
            x = x_low + (x_high - x_low) * (i + 1) / (len(failed) + 1) if x_high > x_low else x_low
        points.append((x, y_low if y is None else y, r))
    ax.scatter([p[0] for p in points], [p[1] for p in points], marker="x", c=_FAILED, s=40, label="failed", zorder=3)
    for x, y, r in points:
        ax.annotate(f"{r.trial} failed", (x, y), textcoords="offset points", xytext=(4, -9), fontsize=7, color=_FAILED)


def _direction(view, name: str) -> str:
    for o in view.objectives:
        if o.name == name:
            return " (higher is better)" if o.higher_is_better else " (lower is better)"
    return ""
