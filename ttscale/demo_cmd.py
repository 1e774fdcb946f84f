"""`ttscale demo`: the whole pipeline on the toy world, through the same stages and CLI a user runs.

tiny policy -> sample + Monte Carlo step labels (sharded over --jobs processes, merged) -> train PRM (+ eval on
held-out ProcessBench-style data) beside revision data (from the labelled solutions) + revision model -> search
sweep over strategies and budgets -> evaluate -> report -> auto on the confirm split.

Three problem splits keep the figures honest (`split_protocol` in report/summary.json): every search runs on
*dev* and *test*; evaluate's knobs (tune.yaml) are chosen on dev, the allocation is fitted and every curve and
table reported on test, and the deployed `auto` with its baseline touches *confirm* once.

Each stage reads its options from a recipe in ttscale/recipes/toy/ (printed with the exact command as it runs),
writes its output under --out, and is skipped when that output already exists, so a killed demo resumes.
On a GPU with real checkpoints the same stages run with the recipes in ttscale/recipes/real/ (see its README).
The recipes ship inside the package, so an installed ttscale (not only a checkout) finds them.
"""
from __future__ import annotations

import gc
import json
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from ttscale.config import field

# Package data (pyproject.toml [tool.setuptools.package-data]): next to this module in a checkout and in an
# installed wheel alike. Stages get these as --config paths, so they must be real files, not zip members.
RECIPES_ROOT = Path(__file__).resolve().parent / "recipes"   # toy/ (the demo's) and real/ (GPU examples)
RECIPES = RECIPES_ROOT / "toy"


@dataclass
class Config:
    """Run the whole pipeline on the embedded toy world (what `make demo` runs)."""
    out: str = field("demo_out", help="folder for every stage's output, report.md and summary.json")
    recipes: str = field(str(RECIPES), help="folder with one YAML recipe per stage")
    threads: int = field(1, ge=1, help="torch CPU threads for every stage (1 is fastest on a shared 2-core machine)")
    only: list[str] | None = field(None, help="run only these step names (their inputs must exist)")
    jobs: int = field(2, ge=1, help="independent steps run side by side in this many processes (labelling as that "
                              "many shards, then the PRM beside revision data + reviser, then the searches split over "
                              "the lanes); 1 = one by one")


SPLITS = {"dev": "problems_dev", "test": "problems_test", "confirm": "problems_confirm"}   # split -> recipe


def _searches(out: Path, rec: Path, threads: str, prefix: str, problems: Path, runs: Path,
              allocation: Path | None = None, label: str | None = None) -> list[tuple[str, list[str], Path]]:
    """One search step per recipe PREFIX_NAME.yaml -> runs/NAME, named LABEL-NAME (LABEL: PREFIX by default;
    revision strategies get the reviser, auto the allocation file)."""
    steps = []
    for recipe in sorted(rec.glob(f"{prefix}_*.yaml")):
        name = recipe.stem[len(prefix) + 1:]
        extra = (["--revision-model", str(out / "reviser")] if "revisions" in name else [])
        extra += (["--allocation", str(allocation)] if allocation and "auto" in name else [])
        steps.append((f"{label or prefix}-{name}", ["search", "--config", str(recipe), "--problems", str(problems),
                                            "--policy", str(out / "policy"), "--prm", str(out / "prm"), *extra,
                                            "--threads", threads, "--prm-threads", threads, str(runs / name)],
                      runs / name / "dataset"))
    return steps


def _label_steps(out: Path, rec: Path, t: list[str], jobs: int) -> list[tuple[str, list[str], Path]]:
    """`label` in one process, or with jobs > 1 as that many shards side by side joined by `merge` (label is
    one process's generation loop, so sharding is what puts a second core to work)."""
    argv = ["label", "--config", str(rec / "label.yaml"), "--problems", str(out / "problems_train.jsonl"),
            "--policy", str(out / "policy"), *t]
    done = out / "labels" / "summary.json"
    if jobs < 2:
        return [("label", [*argv, str(out / "labels")], done)]
    shards = [out / "label_shards" / str(i) for i in range(jobs)]
    # a shard's parts resume on their own; the merged summary marks them all done
    return [*((f"label-shard{i}", [*argv, "--num-shards", str(jobs), "--shard-index", str(i), str(d)], done)
              for i, d in enumerate(shards)),
            ("label", ["merge", str(out / "labels"), *map(str, shards)], done)]


def _steps(out: Path, rec: Path, threads: str, jobs: int = 1) -> list[tuple[str, list[str], Path]]:
    """(name, ttscale argv, output that marks the step done) in data-flow order, up to `evaluate`."""
    t = ["--threads", threads]
    search = _searches(out, rec, threads, "search", out / "problems_test.jsonl", out / "runs")
    dev = _searches(out, rec, threads, "search", out / "problems_dev.jsonl", out / "runs_dev", label="dev")
    return [
        ("problems-train", ["toy-world", "--config", str(rec / "problems_train.yaml"),
                            str(out / "problems_train.jsonl")], out / "problems_train.jsonl"),
        *((f"problems-{split}", ["toy-world", "--config", str(rec / f"{recipe}.yaml"), str(out / f"{recipe}.jsonl")],
           out / f"{recipe}.jsonl") for split, recipe in SPLITS.items()),
        ("prm-heldout", ["toy-world", "--config", str(rec / "prm_heldout.yaml"),
                         str(out / "prm_heldout.jsonl")], out / "prm_heldout.jsonl"),
        ("prm-fit", ["toy-world", "--config", str(rec / "prm_fit.yaml"), str(out / "prm_fit.jsonl")],
         out / "prm_fit.jsonl"),
        ("policy", ["train-policy", "--config", str(rec / "policy.yaml"), *t, str(out / "policy")],
         out / "policy" / "policy_report.json"),
        *_label_steps(out, rec, t, jobs),
        ("prm", ["train-prm", "--config", str(rec / "prm.yaml"), "--model", str(out / "policy"),
                 "--data", str(out / "labels" / "dataset"), "--output-dir", str(out / "prm"), *t],
         out / "prm" / "ttscale_prm.json"),
        ("prm-eval", ["eval-prm", "--config", str(rec / "eval_prm.yaml"), "--data", str(out / "prm_heldout.jsonl"),
                      "--prm", str(out / "prm"), "--threshold-from", str(out / "prm_fit.jsonl"),
                      "--predictions", str(out / "prm_eval" / "predictions.jsonl"),
                      "--summary", str(out / "prm_eval" / "summary.json")], out / "prm_eval" / "summary.json"),
        ("revision-data", ["build-revisions", "--config", str(rec / "build_revisions.yaml"),
                           "--problems", str(out / "problems_train.jsonl"), "--samples", str(out / "labels" / "dataset"),
                           *t, str(out / "revisions.jsonl")], out / "revisions.jsonl"),
        ("reviser", ["train-revision", "--config", str(rec / "train_revision.yaml"), "--model",
                     str(out / "policy"), *t, str(out / "revisions.jsonl"), str(out / "reviser")],
         out / "reviser" / "revision_format.json"),
        *search, *dev,
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


def _lanes(names: list[str], jobs: int) -> list[list[list[str]]]:
    """Waves of lanes: the steps of one lane run in order, the lanes of a wave side by side."""
    first = ["problems-train", *(f"problems-{s}" for s in SPLITS), "prm-heldout", "prm-fit", "policy"]
    searches = [n for n in names if n.startswith(("search-", "dev-"))]
    shards = [n for n in names if n.startswith("label-shard")]
    rest = [n for n in names if n not in first and n not in searches and n not in shards]
    if jobs < 2:
        return [[first], [shards + rest], [searches]]
    # revision data reuses the labelled solutions, so both lanes start once `label` (the merge) is done
    label = [n for n in rest if n == "label"]
    revision = [n for n in rest if n in ("revision-data", "reviser")]
    lanes = [[n for n in rest if n not in revision and n not in label], revision]
    waves = [[first], [[s] for s in shards], [label], [lane for lane in lanes if lane],
             [searches[i::jobs] for i in range(jobs) if searches[i::jobs]]]
    return [wave for wave in waves if wave and any(wave)]


def _run_step(name: str, argv: list[str], log: Path | None) -> int:
    """In this process (live output) when `log` is None, else as `python -m ttscale` with output to `log`."""
    from ttscale.cli import main

    if log is None:
        return main(argv)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as fh:
        return subprocess.run([sys.executable, "-m", "ttscale", *argv], stdout=fh, stderr=subprocess.STDOUT).returncode


def run(cfg: Config) -> int:
    out, rec = Path(cfg.out), Path(cfg.recipes)
    out.mkdir(parents=True, exist_ok=True)
    timings_path = out / "seconds.json"
    seconds: dict[str, float] = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    start = time.time()
    steps = {name: (argv, done) for name, argv, done in _steps(out, rec, str(cfg.threads), cfg.jobs)}

    def lane(names: list[str], logged: bool) -> int:
        for name in names:
            argv, done = steps[name]
            if cfg.only and name not in cfg.only:
                continue
            if done.exists():
                print(f"[demo] {name}: done already ({done}), skipped", flush=True)
                continue
            log = out / "logs" / f"{name}.log" if logged else None
            print(f"\n[demo] {name}: ttscale {shlex.join(argv)}" + (f"\n    (output: {log})" if log else ""), flush=True)
            recipe = next((Path(a) for a in argv if a.endswith(".yaml")), None)
            if recipe is not None:
                print("\n".join("    " + line for line in recipe.read_text().strip().splitlines()), flush=True)
            t0 = time.time()
            rc = _run_step(name, argv, log)
            if rc:
                print(f"[demo] {name} failed with exit code {rc}" + (f"; see {log}" if log else ""), flush=True)
                return rc
            seconds[name] = round(time.time() - t0, 1)
            timings_path.write_text(json.dumps(seconds, indent=1))
            print(f"[demo] {name}: finished in {seconds[name]} s", flush=True)
            gc.collect()
        return 0

    for wave in _lanes(list(steps), cfg.jobs):
        if len(wave) == 1:
            rc = lane(wave[0], logged=False)
        else:
            with ThreadPoolExecutor(len(wave)) as pool:
                rc = max(pool.map(lambda names: lane(names, logged=True), wave))
        if rc:
            return rc
    if cfg.only and "evaluate" not in cfg.only:
        return 0
    # dev chooses evaluate's knobs; test fits the allocation with them and reports every curve
    tune = (yaml.safe_load((rec / "tune.yaml").read_text()) or {}).get("tune") or []
    rc = _evaluate(out, rec, "report_dev", _run_dirs(out / "runs_dev"), seconds,
                   ["--difficulty-run", str(out / "runs_dev" / "bon"), *(["--tune", *tune] if tune else [])])
    if rc == 0:
        rc = _evaluate(out, rec, "report", _run_dirs(out / "runs"), seconds,
                       ["--difficulty-run", str(out / "runs" / "bon"), "--extra", str(_extra_json(out, seconds)),
                        *(["--tuned", str(out / "report_dev" / "tuned.yaml")] if tune else [])])
    # Deployment: auto with the allocation just fitted, and its baseline, on the confirm split (touched once).
    deploy = _searches(out, rec, str(cfg.threads), "deploy", out / "problems_confirm.jsonl", out / "runs_confirm",
                       allocation=out / "report" / "allocation.yaml")
    if rc == 0 and deploy:
        steps.update({name: (argv, done) for name, argv, done in deploy})
        names = [name for name, _, _ in deploy]
        with ThreadPoolExecutor(max(1, min(cfg.jobs, len(names)))) as pool:
            lanes = [names[i::cfg.jobs] for i in range(max(1, cfg.jobs))]
            rc = max(pool.map(lambda lane_names: lane(lane_names, logged=cfg.jobs > 1), [n for n in lanes if n]))
        if rc == 0:
            rc = _evaluate(out, rec, "report_confirm", [str(done.parent) for _, _, done in deploy], seconds,
                           ["--bins", "none", "--deployment-of", str(out / "report" / "summary.json")])
        if rc == 0:
            fitted = json.loads((out / "report" / "summary.json").read_text())
            fitted["deployment"] = json.loads((out / "report_confirm" / "summary.json").read_text())["deployment"]
            fitted["split_protocol"] = split_protocol(out, rec, tune)
            (out / "report" / "summary.json").write_text(json.dumps(fitted, indent=1))
            print("[demo] deployment (auto on the confirm split):", json.dumps(fitted["deployment"]["budgets"]))
    summary_path = out / "report" / "summary.json"
    if rc == 0 and summary_path.exists():  # the evaluations' own time is known only now
        summary = json.loads(summary_path.read_text())
        summary["seconds"] = seconds
        summary_path.write_text(json.dumps(summary, indent=1))
    print(f"\n[demo] finished in {time.time() - start:.0f} s (this invocation); "
          f"report: {out / 'report' / 'report.md'}, summary: {out / 'report' / 'summary.json'}")
    return rc


def _run_dirs(runs: Path) -> list[str]:
    return sorted(str(p.parent) for p in runs.glob("*/dataset"))


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


def _evaluate(out: Path, rec: Path, name: str, runs: list[str], seconds: dict[str, float], extra: list[str]) -> int:
    from ttscale.cli import main

    t0 = time.time()
    argv = ["evaluate", "--config", str(rec / "evaluate.yaml"), "--out", str(out / name), *extra, "--", *runs]
    print(f"\n[demo] {name}: ttscale {shlex.join(argv)}")
    rc = main(argv)
    seconds[f"evaluate-{name}"] = round(time.time() - t0, 1)
    (out / "seconds.json").write_text(json.dumps(seconds, indent=1))
    return rc
