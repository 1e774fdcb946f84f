"""`ttscale evaluate RUN_DIR... --out DIR`: accuracy vs budget, difficulty bins, compute-optimal allocation, report.

Writes DIR/report.md, DIR/summary.json, DIR/*.png and DIR/allocation.yaml (for `ttscale search --strategy auto
--allocation DIR/allocation.yaml`).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttscale.config import field, to_yaml
from ttscale.data.threads import ThreadArgs
import yaml

from ttscale.eval.allocation import RULES, allocate, allocation_dict, write_allocation
from ttscale.eval.efficiency import TUNED, efficiency, efficiency_refit, tuned_baseline
from ttscale.eval.bins import difficulty_run, make_binning, oracle_difficulty, predicted_difficulty
from ttscale.eval.metrics import COST_AXES, default_curves, evaluate_runs, pass_at_k_curve, probe_cost, unknown_flops
from ttscale.eval.deployment import deployment
from ttscale.eval.knobs import (CRITERIA, KNOBS, choose, efficiency_score, equal_cost_score, parse_tune, read_tuned,
                                write_tuned)
from ttscale.eval.report import build_summary, write_report
from ttscale.errors import UserError
from ttscale.eval.runs import Run, common_problems, load_runs
from ttscale.search.output import flops_notes

BASELINES = ("weighted-best-of-n", "best-of-n", "majority")


@dataclass(kw_only=True)
class Config(ThreadArgs):
    runs: list[str] = field(help="search run folders (`ttscale search` outputs; one strategy and budget each)",
                            positional=True)
    out: str = field("eval", help="output folder for report.md, summary.json, plots and allocation.yaml")
    subsamples: int = field(16, ge=1, help="seeded candidate subsets per budget N' < N for parallel-sample runs")
    seed: int = field(0, help="seed for subsampling and the cross-validation folds")
    bins: str = field("quantile", choices=["quantile", "fixed", "none"],
                      help="difficulty binning: quantile (Snell et al. levels), fixed (Liu et al. pass@1 "
                           "thresholds) or none (skip bins and allocation)")
    n_bins: int = field(5, ge=1, help="number of quantile bins")
    thresholds: list[float] = field(default_factory=lambda: [0.1, 0.5],
                                    help="ascending edges for --bins fixed (hard < 0.1 <= medium < 0.5 <= easy)")
    difficulty_run: str | None = field(None, help="run whose samples define difficulty (default: the parallel-"
                                                  "sample run with the largest budget)")
    allocation_difficulty: str = field("predicted", choices=["predicted", "oracle"],
                                       help="difficulty the policy bins on: predicted (PRM, usable at test "
                                            "time; falls back to oracle when the run has no PRM scores) or oracle")
    folds: int = field(5, ge=1, help="cross-validation folds for the compute-optimal choice")
    probe_samples: int = field(4, ge=0, help="predicted difficulty = mean final-step PRM score over each problem's "
                                             "first this-many samples: as many as `search --strategy auto` probes "
                                             "(the allocation file records it and auto follows it); 0 = all. Their "
                                             "cost is charged to every configuration as auto spends it: on top, or "
                                             "reused as a parallel-sampling one's first samples")
    budget_rule: str = field("per-bin", choices=list(RULES),
                             help="compute-optimal budget N: per-bin caps every difficulty bin's choice at the "
                             "baseline's cost at N (Snell et al.); mean caps the mean cost over problems, so bins get "
                             "different budgets (easy bins less, hard bins more)")
    max_budget: int | None = field(None, ge=1, help="per-problem cap: no difficulty bin is given a configuration "
                                   "whose measured cost per problem there exceeds the baseline's cost at this N (the "
                                   "largest measured N <= it); recorded in the allocation file. Default: no cap")
    pooling: float = field(0.0, ge=0, help="compute-optimal choice per bin: shrink each configuration's accuracy in "
                                           "the bin toward its accuracy over all bins by this many pseudo-problems "
                                           "(partial pooling; 0 = the raw per-bin best)")
    baseline: str = field("weighted-best-of-n", choices=list(BASELINES),
                          help="parallel-sampling curve whose measured cost at N defines budget N (weighted "
                               "best-of-N is Snell et al.'s best-of-N baseline). compute_optimal_efficiency is "
                               "measured against parallel sampling with its aggregation and voting chosen "
                               "k-fold like the allocation; each default curve is reported beside it")
    cost: str = field("flops", choices=list(COST_AXES),
                      help="what compute-optimal allocation holds equal: flops (measured, policy + reviser + PRM, "
                           "prompts included), tokens (measured tokens run through any model) or n (nominal "
                           "budget N); budget N = the baseline's measured cost at N, and efficiency is measured "
                           "on this axis")
    refit_replicates: int = field(1000, ge=10, help="bootstrap replicates of the efficiency interval; each refits "
                                  "the allocation and the tuned baseline on its resample of the problems")
    allocation_format: str = field("yaml", choices=["yaml", "json"], help="allocation file format")
    tune: list[str] = field(default_factory=list,
                            help="KNOB=V1,V2,... (pooling, probe_samples, n_bins): choose these knobs on THESE runs "
                                 "(a dev split): the mean over the budgets of the allocation's k-fold held-out "
                                 "accuracy, 0 where it overspent the budget; writes OUT/tuned.yaml for `--tuned` "
                                 "on another split")
    tune_by: str = field("accuracy", choices=list(CRITERIA),
                         help="--tune's score: accuracy (mean over the budgets of the held-out allocation's accuracy, "
                              "0 where it overspent) or efficiency (the headline: its efficiency against the tuned "
                              "baseline)")
    tuned: str | None = field(None, help="OUT/tuned.yaml of an `evaluate --tune` on another split: its knob values "
                                         "replace this config's, and summary.json records where they came from")
    deployment_of: str | None = field(None, help="summary.json of the evaluation whose allocation these runs' "
                                                 "`search --strategy auto` used: adds a `deployment` section (auto's "
                                                 "accuracy here vs the accuracy that evaluation predicted, and vs "
                                                 "the baselines at equal measured cost, paired)")
    extra: list[str] = field(default_factory=list,
                             help="JSON files merged into summary.json (e.g. {\"prm\": ...}, {\"seconds\": ...})")

    def __post_init__(self):
        if self.tune and self.bins == "none":
            raise ValueError("--tune chooses knobs of the allocation: it needs difficulty bins (not --bins none)")
        if any(b < a for a, b in zip(self.thresholds, self.thresholds[1:])):
            raise ValueError(f"--thresholds must ascend, got {self.thresholds}")


def _extras(paths: list[str]) -> list[dict[str, Any]]:
    out = []
    for p in paths:
        try:
            data = json.loads(Path(p).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SystemExit(f"--extra {p}: cannot read a JSON object ({e})") from None
        if not isinstance(data, dict):
            raise SystemExit(f"--extra {p}: expected a JSON object at the top level, got {type(data).__name__}")
        out.append(data)
    return out


def _read_summary(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"--deployment-of {path}: cannot read an evaluate summary.json ({e})") from None
    if not isinstance(data, dict) or "compute_optimal" not in data:
        raise UserError(f"--deployment-of {path}: not the summary.json of an `evaluate` that fitted an allocation")
    return data


def _flops_notes(runs: list[Run]) -> list[str]:
    """A line per run whose FLOPs are unknown for some model, naming the model (from the run's config.yaml)."""
    notes = []
    for r in runs:
        unknown = unknown_flops(r)
        if unknown:
            conf = Path(r.path) / "config.yaml"
            c = (yaml.safe_load(conf.read_text()) or {}) if conf.is_file() else {}
            models = {"policy": c.get("policy"), "reviser": c.get("revision_model"), "prm": c.get("prm")}
            notes += [f"{r.path}: {n}" for n in flops_notes(unknown, models)]
    return notes


@dataclass
class _Fit:
    """Bins and the allocation fitted for one setting of evaluate's knobs."""
    binning: Any
    pbinning: Any
    oracle_bins: dict[str, str]
    predicted_bins: dict[str, str] | None
    order: list[str]
    difficulty: dict[str, Any]
    measure: str
    probe: dict[str, dict[str, float]] | None
    baseline: str | None
    alloc: Any
    bins_used: dict[str, str]

    def refit(self, cfg: "Config", points: list, rule: str) -> Any:
        """The allocation on the same bins, probe and baseline under another budget rule."""
        return allocate(points, self.bins_used, cfg.folds, cfg.seed, axis=cfg.cost, baseline=self.baseline,
                        pooling=cfg.pooling, probe=self.probe, rule=rule, max_budget=cfg.max_budget)


def _fit(cfg: Config, runs: list[Run], points: list) -> _Fit:
    drun = difficulty_run(runs, cfg.difficulty_run)
    oracle, predicted = oracle_difficulty(drun), predicted_difficulty(drun, cfg.probe_samples)
    binning = make_binning(cfg.bins, list(oracle.values()), cfg.n_bins, cfg.thresholds)
    oracle_bins, order = binning.assign_all(oracle), binning.order()
    pbinning = make_binning(cfg.bins, list(predicted.values()), cfg.n_bins, cfg.thresholds) if predicted else None
    predicted_bins = pbinning.assign_all(predicted) if pbinning else None
    difficulty = {"run": drun.path, "binning": binning.to_dict(),
                  "predicted_binning": pbinning.to_dict() if pbinning else None,
                  "counts": {lab: sum(v == lab for v in oracle_bins.values()) for lab in order}}
    measure = cfg.allocation_difficulty if predicted_bins else "oracle"
    curves = default_curves(points)
    baseline = cfg.baseline if cfg.baseline in curves else next((m for m in BASELINES if m in curves), None)
    # auto's difficulty probe, charged to every configuration (none with oracle bins: nothing to probe)
    probe = probe_cost(drun, cfg.probe_samples) if measure == "predicted" else None
    bins_used = predicted_bins if measure == "predicted" else oracle_bins
    alloc = allocate(points, bins_used, cfg.folds, cfg.seed, axis=cfg.cost, baseline=baseline, pooling=cfg.pooling,
                     probe=probe, rule=cfg.budget_rule, max_budget=cfg.max_budget)
    return _Fit(binning, pbinning, oracle_bins, predicted_bins, order, difficulty, measure, probe, baseline, alloc,
                bins_used)


def _mean(values: dict[str, float] | None) -> float:
    return float(sum(values.values()) / len(values)) if values else 0.0


def _rule_figures(alloc: Any, eff: dict[str, Any]) -> dict[str, Any]:
    """One budget rule's held-out curve, its efficiency against the tuned baseline (headline and per budget), and
    what each bin was given: the chosen configuration's mean cost per problem there, per budget N."""
    return {"curve": alloc.curve, "curve_cost": alloc.curve_cost, "by_bin": alloc.by_bin,
            "efficiency": eff.get("value"), "efficiency_interval": [eff.get("low"), eff.get("high")],
            "efficiency_curve": eff.get("curve"),
            "given": {lab: {b: c.get("cost") for b, c in per.items()} for lab, per in alloc.choices.items()}}


def _tune(cfg: Config, runs: list[Run], points: list, out: Path) -> dict[str, Any]:
    """--tune: the knob values whose allocation scores best on these runs (knobs.equal_cost_score)."""
    grid = parse_tune(cfg.tune)

    def score(knobs: dict[str, Any]) -> float:
        alloc = _fit(dataclasses.replace(cfg, **knobs), runs, points).alloc
        return equal_cost_score(alloc) if cfg.tune_by == "accuracy" else efficiency_score(
            alloc, tuned_baseline(points, alloc, cfg.seed))

    knobs, rows = choose(grid, score)
    path = write_tuned(out / "tuned.yaml", knobs, rows, cfg.runs, len(runs[0].graded) if runs else 0, cfg.tune_by)
    print(f"  chose {knobs} on these runs -> {path}")
    return {"knobs": knobs, "table": rows, "file": str(path)}


def run(cfg: Config) -> int:
    cfg.apply_threads()
    out = Path(cfg.out)
    tuned = read_tuned(cfg.tuned) if cfg.tuned else None
    if tuned:   # knobs chosen on another split win over this config's own values
        cfg = dataclasses.replace(cfg, **tuned["knobs"])
    try:
        runs = load_runs(cfg.runs)
    except (FileNotFoundError, ValueError) as e:   # a run folder that is not one: the user's to fix
        raise UserError(str(e)) from None
    out.mkdir(parents=True, exist_ok=True)   # only once its inputs read: a mistyped run leaves nothing behind
    (out / "evaluate_config.yaml").write_text(to_yaml(cfg))
    runs, run_notes = common_problems(runs)
    points = evaluate_runs(runs, cfg.subsamples, cfg.seed, notes=run_notes)
    oracle_bins = predicted_bins = None
    order: list[str] = []
    difficulty: dict[str, Any] = {}
    co: dict[str, Any] | None = None
    knobs: dict[str, Any] = {"from": tuned} if tuned else {}
    if cfg.tune:   # chosen here, on these runs: this evaluation's own figures are then in-sample for them
        knobs["tuned_here"] = _tune(cfg, runs, points, out)
        cfg = dataclasses.replace(cfg, **knobs["tuned_here"]["knobs"])
    if cfg.bins != "none":
        f = _fit(cfg, runs, points)
        alloc, baseline, probe, measure = f.alloc, f.baseline, f.probe, f.measure
        oracle_bins, predicted_bins, order, difficulty = f.oracle_bins, f.predicted_bins, f.order, f.difficulty
        allocation_path = write_allocation(allocation_dict(alloc, f.pbinning if measure == "predicted" else f.binning,
                                                           measure, cfg.probe_samples),
                                           out / f"allocation.{cfg.allocation_format}")
        curves = default_curves(points)
        base_curves = {m: {b: pt.accuracy()[0] for b, pt in curves[m].items()} for m in BASELINES if m in curves}
        base_costs = {m: {b: pt.cost(alloc.axis) for b, pt in curves[m].items()} for m in base_curves}
        eff = {m: efficiency(alloc, points, m, seed=cfg.seed) for m in base_curves}
        # the headline: against parallel sampling whose selection is tuned like the allocation, interval refitted
        tb = tuned_baseline(points, alloc, cfg.seed)
        main = eff[TUNED] = efficiency_refit(alloc, tb, replicates=cfg.refit_replicates, seed=cfg.seed)
        rules = {cfg.budget_rule: _rule_figures(alloc, main)}
        for other in (r for r in RULES if r != cfg.budget_rule):   # the other rule beside it, fitted alike
            alt = f.refit(cfg, points, other)
            rules[other] = _rule_figures(alt, efficiency_refit(alt, tb, replicates=cfg.refit_replicates, seed=cfg.seed))
        base_curves[TUNED], base_costs[TUNED] = tb.curve, tb.curve_cost
        notes = list(alloc.notes) + ([] if measure == cfg.allocation_difficulty else
                                     ["no PRM scores in the difficulty run: the allocation bins on oracle difficulty, "
                                      "which needs gold answers (not usable at test time)"])
        co = {"measure": measure, "rule": cfg.budget_rule, "folds": alloc.folds, "problems": alloc.problems,
              "curve": alloc.curve, "by_bin": alloc.by_bin, "choices": alloc.choices, "baseline": baseline,
              "cost_axis": alloc.axis, "budget_cost": alloc.budget_cost, "curve_cost": alloc.curve_cost,
              "probe_cost": _mean((probe or {}).get(alloc.axis)), "max_budget": cfg.max_budget,
              "efficiency": main.get("value"), "efficiency_interval": [main.get("low"), main.get("high")],
              "efficiency_against": TUNED, "efficiency_curve": main.get("curve"), "rules": rules,
              "tuned_baseline": {"curve": tb.curve, "curve_cost": tb.curve_cost, "chosen": tb.fallback},
              "baseline_curves": base_curves, "baseline_costs": base_costs,
              "efficiency_by_baseline": {m: (e or {}).get("value") for m, e in eff.items()},
              "efficiency_detail": eff,
              "allocation": str(allocation_path),
              "notes": notes}
    coverage = {r.path: pass_at_k_curve(r) for r in runs if r.parallel}
    summary = build_summary(points, oracle_bins, predicted_bins, order, co, difficulty, _extras(cfg.extra), coverage)
    summary["knobs"] = {**{k: getattr(cfg, k) for k in KNOBS}, **knobs}
    if cfg.deployment_of:
        summary["deployment"] = deployment(_read_summary(cfg.deployment_of), summary, points)
    flops_unknown = _flops_notes(runs)
    summary["flops_known"] = not flops_unknown
    summary["notes"] = run_notes + flops_unknown
    written = write_report(out, points, summary, oracle_bins, order)
    print(f"evaluated {len(runs)} run(s), {len(points)} points -> {written['report']}")
    for note in summary["notes"]:
        print(f"  note: {note}")
    for method, per in summary["accuracy"].items():
        print(f"  {method}: " + ", ".join(f"N={b}: {a}" for b, a in per.items()))
    if co:
        print(f"  compute-optimal efficiency on {co['cost_axis']}: " + ", ".join(
            f"vs {m} {e}" for m, e in co["efficiency_by_baseline"].items()))
    return 0
