"""`ttscale demo`: the whole pipeline on the toy world, through the same stages and CLI a user runs.

tiny policy -> sample + Monte Carlo step labels (sharded over --jobs processes, merged) -> train PRM (+ eval on
held-out ProcessBench-style data) beside revision data (from the labelled solutions) + revision model, then
revision data from that model's own answers + a second round of it -> search
sweep over strategies and budgets -> evaluate -> report -> auto on the confirm split.

Three problem splits keep the figures honest (`split_protocol` in report/summary.json): every search runs on
*dev* and *test*; evaluate's knobs (tune.yaml) are chosen on dev, the allocation is fitted and every curve and
table reported on test, and the deployed `auto` with its baseline touches *confirm* once.

Each stage reads its options from a recipe in ttscale/recipes/toy/ (printed with the exact command as it runs),
writes its output under --out (its log under --out/logs/), and is skipped when that output already exists, so
a killed demo resumes. The steps run on --jobs long-lived worker processes as soon as their inputs exist, the
longest first (ttscale/demo_queue.py); `deploy-bon` needs only the policy and the PRM, so it runs among the
searches, and `deploy-auto16` waits for the allocation that evaluate fits on the test split.
On a GPU with real checkpoints the same stages run with the recipes in ttscale/recipes/real/ (see its README).
The recipes ship inside the package, so an installed ttscale (not only a checkout) finds them.
"""
from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from ttscale.config import field
from ttscale.demo_queue import Step, run_dag

# Package data (pyproject.toml [tool.setuptools.package-data]): next to this module in a checkout and in an
# installed wheel alike. Stages get these as --config paths, so they must be real files, not zip members.
RECIPES_ROOT = Path(__file__).resolve().parent / "recipes"   # toy/ (the demo's) and real/ (GPU examples)
RECIPES = RECIPES_ROOT / "toy"


@dataclass
class Config:
    """Run the whole pipeline on the embedded toy world (what `make demo` runs)."""
    out: str = field("demo_out", help="folder for every stage's output, report.md and summary.json")
    recipes: str = field(str(RECIPES), help="folder with one YAML recipe per stage")
    threads: int = field(1, ge=1, help="torch CPU threads per step (1 is fastest when --jobs steps share the cores; "
                                       "the policy, alone at the start, gets max(threads, jobs))")
    only: list[str] | None = field(None, help="run only these step names (their inputs must exist)")
    jobs: int = field(2, ge=1, help="worker processes that run the steps side by side, the longest ready step first "
                              "(labelling runs as that many shards); each worker imports ttscale once; 1 = one by one")


SPLITS = {"dev": "problems_dev", "test": "problems_test", "confirm": "problems_confirm"}   # split -> recipe


# Expected seconds of a step on one core (the demo's last measured run, rounded): the queue starts the longest
# ready step first. Only the order depends on these.
COSTS = {"policy": 290, "label-shard": 270, "prm": 740, "reviser-sft": 650, "revision-data-own": 150, "reviser": 250,
         "revision-data": 7, "prm-eval": 10,
         "label": 2, "evaluate": 20, "rebase16": 110, "pf16": 98, "revisions16_l16": 130, "revisions16": 85,
         "revisions16_l2": 80, "revisions16_policy": 75, "dvts16": 70, "auto16": 65, "bon": 55, "mcts4": 50,
         "revisions16_l1": 50, "beam16": 48, "adaptive16": 45, "lookahead4": 43, "beam4": 25}


# Runs that read another run's samples back from the demo's sample store, so they start after it: adaptive
# rounds, auto's probe and its extension and the policy-first chains are best-of-N's samples; the shorter
# revision chains are prefixes of the 16-long one.
READS = {"adaptive16": "bon", "auto16": "bon", "revisions16_policy": "bon", "revisions16": "revisions16_l16",
         "revisions16_l2": "revisions16_l16"}


def _searches(out: Path, rec: Path, threads: str, prefix: str, problems: Path, runs: Path, split: str,
              allocation: Path | None = None, label: str | None = None) -> list[Step]:
    """One search step per recipe PREFIX_NAME.yaml -> runs/NAME, named LABEL-NAME (LABEL: PREFIX by default;
    revision strategies get the reviser, auto the allocation file and the reviser, since the allocation may
    give a bin revision chains); all share one sample store."""
    steps, names = [], [r.stem[len(prefix) + 1:] for r in sorted(rec.glob(f"{prefix}_*.yaml"))]
    for name in names:
        recipe = rec / f"{prefix}_{name}.yaml"
        auto = bool(allocation) and "auto" in name
        extra = (["--revision-model", str(out / "reviser")] if "revisions" in name or auto else [])
        extra += (["--allocation", str(allocation)] if auto else [])
        after = ("policy", "prm", f"problems-{split}", *(("reviser",) if "revisions" in name or auto else ()),
                 *(("evaluate-report",) if auto else ()),
                 *((f"{label or prefix}-{READS[name]}",) if READS.get(name) in names else ()))
        steps.append(Step(f"{label or prefix}-{name}",
                          ["search", "--config", str(recipe), "--problems", str(problems), "--policy", str(out / "policy"),
                           "--prm", str(out / "prm"), *extra, "--threads", threads, "--prm-threads", threads,
                           "--sample-store", str(out / "samples.sqlite"), str(runs / name)],
                          runs / name / "dataset", after, COSTS.get(name, 60)))
    return steps


def _label_steps(out: Path, rec: Path, t: list[str], jobs: int) -> list[Step]:
    """`label` in one process, or with jobs > 1 as that many shards side by side joined by `merge` (label is
    one process's generation loop, so sharding is what puts a second core to work)."""
    argv = ["label", "--config", str(rec / "label.yaml"), "--problems", str(out / "problems_train.jsonl"),
            "--policy", str(out / "policy"), *t]
    done, after = out / "labels" / "summary.json", ("policy", "problems-train")
    if jobs < 2:
        return [Step("label", [*argv, str(out / "labels")], done, after, COSTS["label-shard"] * 2)]
    shards = [out / "label_shards" / str(i) for i in range(jobs)]
    # a shard's parts resume on their own; the merged summary marks them all done
    return [*(Step(f"label-shard{i}", [*argv, "--num-shards", str(jobs), "--shard-index", str(i), str(d)], done,
                   after, COSTS["label-shard"]) for i, d in enumerate(shards)),
            Step("label", ["merge", str(out / "labels"), *map(str, shards)], done,
                 tuple(f"label-shard{i}" for i in range(jobs)), COSTS["label"])]


def _steps(out: Path, rec: Path, threads: str, jobs: int = 1, seconds: dict | None = None) -> list[Step]:
    """Every step of the demo with what it reads, in data-flow order."""
    t = ["--threads", threads]
    search = _searches(out, rec, threads, "search", out / "problems_test.jsonl", out / "runs", "test")
    dev = _searches(out, rec, threads, "search", out / "problems_dev.jsonl", out / "runs_dev", "dev", label="dev")
    deploy = _searches(out, rec, threads, "deploy", out / "problems_confirm.jsonl", out / "runs_confirm", "confirm",
                       allocation=out / "report" / "allocation.yaml")
    tune = (yaml.safe_load((rec / "tune.yaml").read_text()) or {}).get("tune") or []

    def evaluate(name: str, runs: list[Step], extra: list[str], after: tuple[str, ...] = ()) -> Step:
        def argv() -> list[str]:   # built when the step starts: extra.json holds the seconds so far
            more = ["--extra", str(_extra_json(out, seconds or {}))] if name == "report" else []
            return ["evaluate", "--config", str(rec / "evaluate.yaml"), "--out", str(out / name), *extra, *more,
                    "--", *(str(r.done.parent) for r in runs)]
        return Step(f"evaluate-{name}", argv, out / name / "summary.json", (*(r.name for r in runs), *after),
                    COSTS["evaluate"])

    # policy alone on the critical path at the start: it takes every core the demo has
    policy_threads = str(max(int(threads), jobs))
    return [
        Step("problems-train", ["toy-world", "--config", str(rec / "problems_train.yaml"),
                                str(out / "problems_train.jsonl")], out / "problems_train.jsonl"),
        *(Step(f"problems-{split}", ["toy-world", "--config", str(rec / f"{recipe}.yaml"),
                                     str(out / f"{recipe}.jsonl")], out / f"{recipe}.jsonl")
          for split, recipe in SPLITS.items()),
        *(Step(name, ["toy-world", "--config", str(rec / f"{stem}.yaml"), str(out / f"{stem}.jsonl")],
               out / f"{stem}.jsonl") for name, stem in (("prm-heldout", "prm_heldout"), ("prm-fit", "prm_fit"))),
        Step("policy", ["train-policy", "--config", str(rec / "policy.yaml"), "--threads", policy_threads,
                        str(out / "policy")], out / "policy" / "policy_report.json", (), COSTS["policy"]),
        *_label_steps(out, rec, t, jobs),
        Step("prm", ["train-prm", "--config", str(rec / "prm.yaml"), "--model", str(out / "policy"),
                     "--data", str(out / "labels" / "dataset"), str(out / "prm"), *t],
             out / "prm" / "ttscale_prm.json", ("label",), COSTS["prm"]),
        Step("prm-eval", ["eval-prm", "--config", str(rec / "eval_prm.yaml"), "--data", str(out / "prm_heldout.jsonl"),
                          "--prm", str(out / "prm"), "--threshold-from", str(out / "prm_fit.jsonl"),
                          "--predictions", str(out / "prm_eval" / "predictions.jsonl"),
                          "--summary", str(out / "prm_eval" / "summary.json")], out / "prm_eval" / "summary.json",
             ("prm", "prm-heldout", "prm-fit"), COSTS["prm-eval"]),
        Step("revision-data", ["build-revisions", "--config", str(rec / "build_revisions.yaml"),
                               "--problems", str(out / "problems_train.jsonl"), "--samples",
                               str(out / "labels" / "dataset"), *t, str(out / "revisions.jsonl")],
             out / "revisions.jsonl", ("label",), COSTS["revision-data"]),
        # the reviser's cost counts the revision searches waiting on it, so it starts as early as the PRM.
        # Two rounds: on the policy's attempts, then on its own (build_revisions_own.yaml says why).
        Step("reviser-sft", ["train-revision", "--config", str(rec / "train_revision.yaml"), "--model",
                             str(out / "policy"), *t, str(out / "revisions.jsonl"), str(out / "reviser_sft")],
             out / "reviser_sft" / "revision_format.json", ("revision-data",), COSTS["reviser-sft"]),
        Step("revision-data-own", ["build-revisions", "--config", str(rec / "build_revisions_own.yaml"),
                                   "--problems", str(out / "problems_train.jsonl"), "--policy", str(out / "reviser_sft"),
                                   *t, str(out / "revisions_own.jsonl")],
             out / "revisions_own.jsonl", ("reviser-sft",), COSTS["revision-data-own"]),
        Step("reviser", ["train-revision", "--config", str(rec / "train_revision_own.yaml"), "--model",
                         str(out / "reviser_sft"), *t, str(out / "revisions_own.jsonl"), str(out / "reviser")],
             out / "reviser" / "revision_format.json", ("revision-data-own",), COSTS["reviser"]),
        *search, *dev, *(d for d in deploy if "auto" not in d.name),
        # dev chooses evaluate's knobs; test fits the allocation with them and reports every curve
        evaluate("report_dev", dev, ["--difficulty-run", str(out / "runs_dev" / "bon"), *(["--tune", *tune] if tune else [])]),
        evaluate("report", search, ["--difficulty-run", str(out / "runs" / "bon"),
                                    *(["--tuned", str(out / "report_dev" / "tuned.yaml")] if tune else [])],
                 ("evaluate-report_dev", "prm-eval", "label")),
        # deployment: auto with the allocation just fitted, and its baseline, on the confirm split (touched once)
        *(d for d in deploy if "auto" in d.name),
        evaluate("report_confirm", deploy, ["--bins", "none", "--deployment-of", str(out / "report" / "summary.json")],
                 ("evaluate-report",)),
    ]


def _extra_json(out: Path, seconds: dict[str, float]) -> Path:
    """What evaluate merges into summary.json from the other stages: PRM eval, label agreement, timings."""
    extra: dict = {"seconds": seconds}
    prm = out / "prm_eval" / "summary.json"
    if prm.exists():
        s = json.loads(prm.read_text())
        metrics = json.loads((out / "prm" / "metrics.json").read_text()) if (out / "prm" / "metrics.json").exists() else {}
        extra["prm"] = {"first_error_f1": s.get("f1"), "step_auc": metrics.get("eval_step_auc"),
                        "step_accuracy": metrics.get("eval_step_accuracy"), "heldout": s}
    labels = out / "labels" / "summary.json"
    if labels.exists():
        s = json.loads(labels.read_text())
        extra["label_agreement"] = s.get("label_agreement")
        extra["labeling"] = s
    policy = out / "policy" / "policy_report.json"
    if policy.exists():
        extra["policy"] = json.loads(policy.read_text())
    path = out / "extra.json"
    path.write_text(json.dumps(extra, indent=1))
    return path


def run(cfg: Config) -> int:
    out, rec = Path(cfg.out), Path(cfg.recipes)
    out.mkdir(parents=True, exist_ok=True)
    timings_path = out / "seconds.json"
    seconds: dict[str, float] = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    start = time.time()
    steps = _steps(out, rec, str(cfg.threads), cfg.jobs, seconds)
    if cfg.only:
        steps = [s for s in steps if s.name in cfg.only]

    def announce(step: Step, log: Path) -> None:
        print(f"\n[demo] {step.name}: ttscale {shlex.join(step.argv)}\n    (output: {log})", flush=True)
        recipe = next((Path(a) for a in step.argv if a.endswith(".yaml") and Path(a).parent == rec), None)
        if recipe is not None:
            print("\n".join("    " + line for line in recipe.read_text().strip().splitlines()), flush=True)

    def finished(step: Step, took: float) -> None:
        seconds[step.name] = round(took, 1)
        timings_path.write_text(json.dumps(seconds, indent=1))
        print(f"[demo] {step.name}: finished in {seconds[step.name]} s", flush=True)

    rc = run_dag(steps, cfg.jobs, out / "logs", announce, finished)
    summary_path = out / "report" / "summary.json"
    confirm = out / "report_confirm" / "summary.json"
    if rc == 0 and summary_path.exists():
        summary = json.loads(summary_path.read_text())
        if confirm.exists():
            summary["deployment"] = json.loads(confirm.read_text())["deployment"]
            print("[demo] deployment (auto on the confirm split):", json.dumps(summary["deployment"]["budgets"]))
        tune = (yaml.safe_load((rec / "tune.yaml").read_text()) or {}).get("tune") or []
        summary["split_protocol"] = split_protocol(out, rec, tune)
        summary["seconds"] = seconds   # the evaluations' own time is known only now
        summary_path.write_text(json.dumps(summary, indent=1))
    print(f"\n[demo] finished in {time.time() - start:.0f} s (this invocation); "
          f"report: {out / 'report' / 'report.md'}, summary: {summary_path}")
    return rc


def split_protocol(out: Path, rec: Path, tune: list[str]) -> dict:
    """Which split chose what: summary.json's record of the protocol (module doc)."""
    def split(name: str) -> dict:
        recipe = yaml.safe_load((rec / f"{SPLITS[name]}.yaml").read_text())
        return {"problems": str(out / f"{SPLITS[name]}.jsonl"), "n": recipe.get("n"), "seed": recipe.get("seed")}

    tuned = out / "report_dev" / "tuned.yaml"
    chosen = (yaml.safe_load(tuned.read_text()) or {}).get("knobs") if tuned.exists() else None
    return {
        "dev": {**split("dev"), "runs": str(out / "runs_dev"), "chose": chosen, "grid": tune,
                "how": "evaluate --tune: mean over the budgets of the 5-fold held-out allocation accuracy, 0 "
                       "where it overspent the budget"},
        "test": {**split("test"), "runs": str(out / "runs"),
                 "fits": "the allocation (allocation.yaml), the tuned baseline's selection; every curve and table "
                         "of report/"},
        "confirm": {**split("confirm"), "runs": str(out / "runs_confirm"),
                    "touched_by": ["deploy-auto16", "deploy-bon"], "figure": "deployment"},
        "fixed_in_recipes": "model and strategy hyperparameters come from the recipes; their comments name the "
                            "split each cited figure came from",
    }
