"""PNG plots for the evaluation report (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from cycler import cycler  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

# 20 colours, not matplotlib's 10: a sweep of every strategy has more methods than that, and two methods in
# one colour cannot be told apart. Set for the figures drawn here only.
_STYLE = {"axes.prop_cycle": cycler(color=plt.get_cmap("tab20").colors)}

Curve = Mapping[float, tuple[float, float, float]]   # x -> (mean, low, high)


def _line(ax, curve: Curve, label: str, **kw) -> None:
    xs = sorted(curve)
    mean = [curve[x][0] for x in xs]
    err = [[max(0.0, curve[x][0] - curve[x][1]) for x in xs], [max(0.0, curve[x][2] - curve[x][0]) for x in xs]]
    ax.errorbar(xs, mean, yerr=err, marker="o", markersize=3, capsize=2, label=label, **kw)


def _finish(fig, axes, path: Path) -> Path:
    for ax in axes:
        ax.xaxis.set_minor_formatter(NullFormatter())   # log-axis minor labels collide
        ax.grid(alpha=0.3)
        ax.set_ylim(-0.02, 1.02)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=7, frameon=False)
    # fixed margins: tight_layout would draw every figure twice (slow on shared CPUs)
    w, h = fig.get_size_inches()
    legend_rows = 1 + (len(labels) - 1) // 4 if labels else 0
    fig.subplots_adjust(left=0.75 / w, right=1 - 0.15 / w, top=1 - 0.35 / h, wspace=0.12,
                        bottom=(0.55 + 0.2 * legend_rows) / h)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def accuracy_vs_compute(curves: Mapping[str, Sequence[Mapping[str, float]]], path: Path) -> Path:
    """One line per method; panels with x = nominal budget N, generated tokens, FLOPs (all log scale).

    curves: method -> points with keys budget, tokens, flops, accuracy, low, high.
    """
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), sharey=True)
    for ax, (key, title) in zip(axes, (("budget", "budget N"), ("tokens", "generated tokens / problem"),
                                       ("flops", "FLOPs / problem"))):
        for method, pts in curves.items():
            if all(p[key] > 0 for p in pts):
                _line(ax, {p[key]: (p["accuracy"], p["low"], p["high"]) for p in pts}, method)
        ax.set_xscale("log", base=2 if key == "budget" else 10)
        ax.set_xlabel(title)
    axes[0].set_ylabel("accuracy")
    return _finish(fig, list(axes), path)


def accuracy_by_bin(by_bin: Mapping[str, Mapping[str, Curve]], path: Path, title: str) -> Path:
    """One panel per difficulty bin (easiest first), one line per method, x = budget N."""
    labels = list(by_bin)
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(1, max(1, len(labels)), figsize=(3.2 * max(1, len(labels)), 3.8), sharey=True,
                                 squeeze=False)
    axes = list(axes[0])
    methods = sorted({m for per in by_bin.values() for m in per})
    for ax, label in zip(axes, labels):
        for method in methods:
            if method in by_bin[label]:
                _line(ax, by_bin[label][method], method)
        ax.set_xscale("log", base=2)
        ax.set_title(f"{title} {label}", fontsize=9)
        ax.set_xlabel("budget N")
    axes[0].set_ylabel("accuracy")
    return _finish(fig, axes, path)


def ratio_sweep(lines: Mapping[str, Curve], path: Path) -> Path:
    """Accuracy vs sequential:parallel ratio (chain length / chains) from 1/N (N chains of length 1) to N, one
    line per label (budget and who wrote the first attempts)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label in sorted(lines):
        _line(ax, lines[label], label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sequential : parallel ratio (L / C)")
    ax.set_ylabel("accuracy")
    return _finish(fig, [ax], path)


def compute_optimal(curves: Mapping[str, Mapping[int, float]], path: Path) -> Path:
    """The compute-optimal (held-out) curve against the baseline(s), x = budget N."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, curve in curves.items():
        _line(ax, {b: (a, a, a) for b, a in curve.items()}, name,
              linestyle="-" if name == "compute-optimal" else "--")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("budget N")
    ax.set_ylabel("accuracy")
    return _finish(fig, [ax], path)


def allocation_rules(curves: Mapping[str, Mapping[float, float]], given: Mapping[str, Mapping[int, float]],
                     axis: str, path: Path) -> Path:
    """Left: held-out accuracy vs mean measured cost per problem, one line per curve (the tuned baseline and each
    budget rule). Right: what each difficulty bin was given under the mean-cost rule, per budget N."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))    # 10 distinct colours: few lines here
    for name, curve in curves.items():
        _line(left, {c: (a, a, a) for c, a in curve.items() if c > 0}, name)
    left.set_xscale("log")
    left.set_xlabel(f"mean {axis} / problem")
    left.set_ylabel("accuracy (held out)")
    for label, per in given.items():
        right.plot(sorted(per), [per[b] for b in sorted(per)], marker="o", markersize=3, label=f"bin {label}")
    right.set_xscale("log", base=2)
    right.set_yscale("log")
    right.set_xlabel("budget N (mean cost = the baseline's at N)")
    right.set_ylabel(f"{axis} given / problem")
    right.legend(fontsize=7, frameon=False)
    path = _finish(fig, [left], path)
    return path
