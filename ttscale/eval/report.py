"""summary.json + report.md + PNG plots from evaluated points, difficulty bins and the allocation.

summary.json keys (stable; the demo and users read them):
  accuracy[method][budget]                 default aggregation/voting of each strategy (method = strategy plus
                                           its hyperparameters, e.g. "beam(M=4)"); interval in accuracy_ci
  accuracy_by_bin[bin][method][budget]     oracle difficulty bins (accuracy_by_predicted_bin: predicted bins)
  pass_at_k[run][k]                        unbiased pass@k of each parallel-sample run (coverage)
  cost[method][budget]                     measured per problem: {"tokens" (generated), "run_tokens" (prompts
                                           run + generated, every model), "flops" (None when unknown)}
  flops_known                              False when some model's size was unknown (notes name it)
  sweep                                    every method × aggregation × voting × budget with its interval
  revision_ratio                           accuracy by sequential:parallel ratio (revision runs only)
  compute_optimal, compute_optimal_efficiency   on compute_optimal.cost_axis, with
                                           compute_optimal_efficiency_interval [low, high] (bootstrap over problems)
  prm, label_agreement, seconds            slots other stages fill (merged in from --extra JSON files)
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from ttscale.eval import plots
from ttscale.eval.metrics import Point, default_curves, paired_difference

EXTRA_SLOTS = ("prm", "label_agreement", "seconds")


def _r(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


def _length(pt: Point) -> int:
    return pt.config.get("revision_length") or pt.budget      # `revisions` = one chain of length N


def _ratio(pt: Point) -> float:
    return _length(pt) ** 2 / pt.budget                       # L / C with C = N / L


def _flops(pt: Point) -> float | None:
    """FLOPs per problem, None when a model's size was unknown (0 would read as real)."""
    return pt.flops if pt.flops_known else None


def sweep_rows(points: Sequence[Point]) -> list[dict[str, Any]]:
    rows = []
    for pt in sorted(points, key=lambda p: (p.method, p.config["aggregation"], p.config["voting"], p.budget)):
        mean, lo, hi = pt.accuracy()
        rows.append({"method": pt.method, "aggregation": pt.config["aggregation"], "voting": pt.config["voting"],
                     "budget": pt.budget, "default": pt.default, "accuracy": _r(mean), "low": _r(lo),
                     "high": _r(hi), "tokens": _r(pt.tokens), "run_tokens": _r(pt.run_tokens), "flops": _flops(pt), "subsamples": pt.hits.shape[0],
                     "problems": pt.hits.shape[1], "seeds": pt.seeds})
    return rows


def paired_rows(curves: Mapping[str, Mapping[int, Point]], baseline: str | None) -> dict[str, Any]:
    """method -> budget -> [accuracy difference to the baseline, low, high] on the same problems (paired)."""
    if baseline is None:
        baseline = next((m for m in ("weighted-best-of-n", "majority") if m in curves), None)
    base = curves.get(baseline or "", {})
    out: dict[str, Any] = {"baseline": baseline}
    for m, per in curves.items():
        if m != baseline:
            rows = {b: [_r(x) for x in paired_difference(pt, base[b])] for b, pt in per.items() if b in base}
            if rows:
                out[m] = rows
    return out


def by_bin(points: Sequence[Point], bins: Mapping[str, str], order: Sequence[str]) -> dict[str, dict[str, dict]]:
    """bin -> method -> budget -> (mean, low, high) for the default points."""
    out: dict[str, dict[str, dict]] = {}
    for label in order:
        for method, per in default_curves(points).items():
            for budget, pt in per.items():
                cols = [i for i, pid in enumerate(pt.ids) if bins.get(pid) == label]
                if cols:
                    out.setdefault(label, {}).setdefault(method, {})[budget] = pt.accuracy(cols)
    return out


def ratio_sweep(points: Sequence[Point]) -> list[dict[str, Any]]:
    """One row per revision run's default point: its ratio L/C, who wrote the chains' first attempts, accuracy
    with its interval, and the paired difference to the chains of length 1 of the same budget and first-attempt
    generator (the revision model's own parallel baseline, when that run is there)."""
    revs = [pt for pt in points if pt.default and pt.family == "revision"]
    first = lambda pt: pt.config.get("first_attempt") or "reviser"   # noqa: E731  (runs before the option)
    parallel = {(pt.budget, first(pt)): pt for pt in revs if _length(pt) == 1}
    rows = []
    for pt in revs:
        base = parallel.get((pt.budget, first(pt)))
        rows.append({"budget": pt.budget, "ratio": _ratio(pt), "first_attempt": first(pt), "method": pt.method,
                     **dict(zip(("accuracy", "low", "high"), map(_r, pt.accuracy()))),
                     "vs_chains_of_1": None if base is None or base is pt else
                     [_r(x) for x in paired_difference(pt, base)]})
    return sorted(rows, key=lambda r: (r["budget"], r["first_attempt"] != "reviser", r["ratio"]))


def build_summary(points: Sequence[Point], oracle_bins: Mapping[str, str] | None, predicted_bins: Mapping[str, str]
                  | None, bin_order: Sequence[str], compute_optimal: Mapping[str, Any] | None,
                  difficulty: Mapping[str, Any] | None, extras: Sequence[Mapping[str, Any]] = (),
                  pass_at_k: Mapping[str, Mapping[int, float]] | None = None) -> dict[str, Any]:
    curves = default_curves(points)
    summary: dict[str, Any] = {
        "accuracy": {m: {b: _r(pt.accuracy()[0]) for b, pt in per.items()} for m, per in curves.items()},
        "accuracy_ci": {m: {b: [_r(x) for x in pt.accuracy()[1:]] for b, pt in per.items()}
                        for m, per in curves.items()},
        "cost": {m: {b: {"tokens": _r(pt.tokens), "run_tokens": _r(pt.run_tokens), "flops": _flops(pt)}
                     for b, pt in per.items()} for m, per in curves.items()},
        "flops_known": all(pt.flops_known for pt in points),
        "seeds": {m: {b: pt.seeds for b, pt in per.items()} for m, per in curves.items()},
        "paired_vs_baseline": paired_rows(curves, (compute_optimal or {}).get("baseline")),
        "pass_at_k": {run: {k: _r(v) for k, v in per.items()} for run, per in (pass_at_k or {}).items()},
        "accuracy_by_bin": {}, "accuracy_by_predicted_bin": {},
        "difficulty": dict(difficulty or {}),
        "sweep": sweep_rows(points),
        "revision_ratio": ratio_sweep(points),
        "compute_optimal": dict(compute_optimal or {}),
        "compute_optimal_efficiency": (compute_optimal or {}).get("efficiency"),
        "compute_optimal_efficiency_interval": (compute_optimal or {}).get("efficiency_interval"),
        # each budget rule's headline: mean (per-problem budgets) beside per-bin (Snell et al.'s fixed N)
        "compute_optimal_by_rule": {rule: {"efficiency": r.get("efficiency"), "interval": r.get("efficiency_interval")}
                                    for rule, r in ((compute_optimal or {}).get("rules") or {}).items()},
        **{slot: None for slot in EXTRA_SLOTS},
    }
    for key, bins in (("accuracy_by_bin", oracle_bins), ("accuracy_by_predicted_bin", predicted_bins)):
        if bins:
            summary[key] = {lab: {m: {b: _r(v[0]) for b, v in per.items()} for m, per in methods.items()}
                            for lab, methods in by_bin(points, bins, bin_order).items()}
    for extra in extras:   # stage outputs (PRM eval, label agreement, timings) override the empty slots
        summary.update(extra)
    return summary


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    fmt = lambda v: "" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}"


def _rules_section(co: Mapping[str, Any], out: Path, written: dict[str, Path]) -> list[str]:
    """Both budget rules side by side: held-out accuracy and spend per N, efficiency against the tuned baseline
    per N (with its refit interval), and the plot of accuracy vs mean cost with each bin's given budget."""
    rules = co.get("rules") or {}
    if not rules or not all(r.get("efficiency_curve") for r in rules.values()):
        return []     # in-sample fits (fewer than 2 folds) have no refitted curve
    axis, lines = co.get("cost_axis"), ["### Budget rules: per-bin (Snell et al.) and mean cost over problems", ""]
    rows = []
    for rule, r in rules.items():
        for e in r.get("efficiency_curve") or []:
            b = e["budget"]
            rows.append([rule, b, e["cost"], _pct(e["accuracy"]), r["curve_cost"].get(b), _pct(r["curve"].get(b)),
                         _r(e["value"]), f"[{_r(e['low'])}, {_r(e['high'])}]"])
    lines += [f"Efficiency at each budget N of the tuned baseline: its {axis} at N over what the rule's held-out "
              "curve needs to reach its accuracy there (None: never reached); interval: bootstrap over problems, "
              "both refitted on each replicate.", "",
              _table(["rule", "N", f"baseline {axis}", "baseline acc", f"rule spent ({axis})", "rule acc",
                      "efficiency", "95% interval"], rows), ""]
    curves = {co.get("efficiency_against") or "baseline": {e["cost"]: e["accuracy"]
                                                           for e in next(iter(rules.values()))["efficiency_curve"]}}
    curves.update({f"rule {rule}": {r["curve_cost"][b]: a for b, a in r["curve"].items()} for rule, r in rules.items()})
    given = (rules.get("mean") or {}).get("given") or {}
    written["allocation_rules"] = plots.allocation_rules(curves, given, axis, out / "allocation_rules.png")
    return lines + ["![allocation rules](allocation_rules.png)", ""]


def write_report(out: Path, points: Sequence[Point], summary: Mapping[str, Any],
                 oracle_bins: Mapping[str, str] | None, bin_order: Sequence[str]) -> dict[str, Path]:
    """report.md, summary.json and the plots under `out`; returns the written paths by name."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    curves = default_curves(points)
    lines = ["# ttscale evaluation report", ""]
    budgets = sorted({b for per in curves.values() for b in per})
    lines += ["## Accuracy vs budget (each strategy's default aggregation and voting, % with 95% interval)", "",
              _table(["method"] + [f"N={b}" for b in budgets],
                     [[m] + [f"{_pct(per[b].accuracy()[0])} [{_pct(per[b].accuracy()[1])}, "
                             f"{_pct(per[b].accuracy()[2])}]" if b in per else "" for b in budgets]
                      for m, per in curves.items()]), ""]
    series = {m: [{"budget": b, "tokens": pt.tokens, "flops": _flops(pt) or 0.0, **dict(zip(("accuracy", "low", "high"),
                                                                                 pt.accuracy()))}
                  for b, pt in per.items()] for m, per in curves.items()}
    written["accuracy_vs_budget"] = plots.accuracy_vs_compute(series, out / "accuracy_vs_budget.png")
    lines += ["![accuracy vs budget](accuracy_vs_budget.png)", ""]
    if summary.get("pass_at_k"):
        ks = sorted({int(k) for per in summary["pass_at_k"].values() for k in per})
        lines += ["## Coverage: unbiased pass@k (Chen et al. 2021), % of problems", "",
                  _table(["run"] + [f"k={k}" for k in ks],
                         [[run] + [_pct(per.get(k)) for k in ks] for run, per in summary["pass_at_k"].items()]), ""]
    lines += ["## Every aggregation × voting", "",
              _table(["method", "aggregation", "voting", "N", "acc %", "95% interval", "generated tokens",
                      "tokens run", "FLOPs"],
                     [[r["method"], r["aggregation"], r["voting"], r["budget"], _pct(r["accuracy"]),
                       f"[{_pct(r['low'])}, {_pct(r['high'])}]", r["tokens"], r["run_tokens"],
                       "unknown" if r["flops"] is None else r["flops"]] for r in summary["sweep"]]),
              ""]
    if oracle_bins:
        table = by_bin(points, oracle_bins, bin_order)
        diff = summary.get("difficulty", {})
        lines += [f"## Accuracy by difficulty bin ({diff.get('binning', {}).get('kind', '')} bins of oracle "
                  f"pass@1 from {diff.get('run', '?')}; counts {diff.get('counts', {})})", ""]
        lines += [_table(["bin", "method"] + [f"N={b}" for b in budgets],
                         [[lab, m] + [_pct(per[b][0]) if b in per else "" for b in budgets]
                          for lab, methods in table.items() for m, per in methods.items()]), ""]
        written["accuracy_by_bin"] = plots.accuracy_by_bin(table, out / "accuracy_by_bin.png", "bin")
        lines += ["![accuracy by bin](accuracy_by_bin.png)", ""]
    if summary["revision_ratio"]:
        lines += ["## Sequential : parallel ratio (revisions)", "",
                  "Every chain after its first attempt is the revision model's. Ratio L/C = 1/N is N chains of "
                  "length 1: the revision model's own parallel baseline, which each ratio is paired with (same "
                  "budget, same first-attempt generator).", "",
                  _table(["N", "ratio L/C", "first attempt by", "method", "acc %", "95% interval",
                          "vs chains of length 1 (paired)"],
                         [[r["budget"], r["ratio"], r["first_attempt"], r["method"], _pct(r["accuracy"]),
                           f"[{_pct(r['low'])}, {_pct(r['high'])}]",
                           "" if not r["vs_chains_of_1"] else f"{_pct(r['vs_chains_of_1'][0])} "
                           f"[{_pct(r['vs_chains_of_1'][1])}, {_pct(r['vs_chains_of_1'][2])}]"]
                          for r in summary["revision_ratio"]]), ""]
        ratio_curves: dict[str, dict[float, tuple]] = {}
        for r in summary["revision_ratio"]:
            line = f"N={r['budget']}, first attempt: {r['first_attempt']}"
            ratio_curves.setdefault(line, {})[r["ratio"]] = (r["accuracy"], r["low"], r["high"])
        written["revision_ratio"] = plots.ratio_sweep(ratio_curves, out / "revision_ratio.png")
        lines += ["![ratio sweep](revision_ratio.png)", ""]
    co = summary.get("compute_optimal") or {}
    if co.get("curve"):
        lines += ["## Compute-optimal allocation", "",
                  f"Bins: {co.get('measure')} difficulty, {co.get('folds')}-fold held-out accuracy over "
                  f"{co.get('problems')} problems; baseline: {co.get('baseline')}. Allocation file: `{co.get('allocation')}`.",
                  "", f"Configurations are compared at equal measured cost on **{co.get('cost_axis')}**: budget N "
                  f"is {co.get('baseline')}'s measured cost at N, and a configuration is allowed at N only if its "
                  "own measured cost per problem is no higher.", "",
                  f"compute_optimal_efficiency = {_r(summary.get('compute_optimal_efficiency'))}, 95% interval "
                  f"{[_r(x) for x in summary.get('compute_optimal_efficiency_interval') or [None, None]]} "
                  f"against {co.get('efficiency_against')}: parallel sampling with its aggregation and voting chosen "
                  f"by the same {co.get('folds')}-fold procedure (baseline {co.get('cost_axis')} ÷ compute-optimal "
                  f"{co.get('cost_axis')} to reach the baseline's best held-out accuracy, log-cost interpolation; "
                  "the interval refits both on each bootstrap resample of the problems; None = not reached). "
                  "Against each default parallel-sampling curve (choices held fixed): "
                  + ", ".join(f"{m} {_r(e)}" for m, e in (co.get("efficiency_by_baseline") or {}).items()), ""]
        cb = sorted(int(b) for b in co["curve"])
        bases = co.get("baseline_curves") or {}
        lines += [_table(["", *[f"N={b}" for b in cb]],
                         [["compute-optimal", *[_pct(co["curve"].get(b)) for b in cb]],
                          *[[m, *[_pct(c.get(b)) for b in cb]] for m, c in bases.items()],
                          [f"budget ({co.get('cost_axis')})", *[co.get("budget_cost", {}).get(b) for b in cb]],
                          [f"compute-optimal spent ({co.get('cost_axis')})",
                           *[co.get("curve_cost", {}).get(b) for b in cb]]]), ""]
        lines += [_table(["bin", "N", "chosen"], [[lab, b, f"{c['method']} {c['aggregation']}/{c['voting']} "
                                                  f"({_pct(c['accuracy'])}%)"]
                                                 for lab, per in co.get("choices", {}).items()
                                                 for b, c in per.items()]), ""]
        written["compute_optimal"] = plots.compute_optimal(
            {"compute-optimal": co["curve"], **bases},
            out / "compute_optimal.png")
        lines += ["![compute-optimal](compute_optimal.png)", ""]
        lines += _rules_section(co, out, written)
        lines += [f"- {n}" for n in co.get("notes", [])]
    if summary.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in summary["notes"]] + [""]
    for slot in EXTRA_SLOTS:
        if summary.get(slot) is not None:
            lines += [f"## {slot}", "", "```json", json.dumps(summary[slot], indent=1), "```", ""]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    written["report"], written["summary"] = out / "report.md", out / "summary.json"
    return written
