"""A verifier that knows the revision model's outputs vs the policy's PRM, selecting from the SAME chains.

    python benchmarks/revision_verifier.py --demo demo_out [--split test] [--problems 2000] [--steps 500]

Snell et al. (§6) select revisions with a verifier trained on the revision model's own outputs; the demo's
PRM was trained on the policy's samples only. This script, on a finished demo:
1. labels the revision model's answers to the first --problems train problems with Monte Carlo rollouts by the
   revision model itself (`ttscale label --policy demo_out/reviser`, the demo's label recipe);
2. fine-tunes the demo's PRM on those labels (--steps, at --learning-rate) into OUT/prm_rev;
3. reruns the demo's revision searches on --split with that verifier and the demo's sample store, so every
   chain is read back, not drawn again (checked: the same attempts and the same measured cost);
4. prints, per run, the accuracy of hierarchical selection by each verifier, overall and per level, with the
   paired interval (search_diagnostics.py compare).
Nothing is chosen on the split it reports; the toy world's checker only measures.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from search_diagnostics import compare, load  # noqa: E402

RECIPES = ROOT / "ttscale" / "recipes" / "toy"
RUNS = ("revisions16", "revisions16_policy", "revisions16_l16")


def ttscale(*argv: str) -> None:
    print("$ ttscale " + " ".join(argv), flush=True)
    subprocess.run([sys.executable, "-m", "ttscale", *argv], check=True, cwd=ROOT)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", default="demo_out", help="a finished demo's --out")
    p.add_argument("--out", default="", help="where labels, the verifier and the runs go (default: DEMO/revision_verifier)")
    p.add_argument("--split", default="test", choices=["dev", "test"], help="the split whose revision runs are reselected")
    p.add_argument("--problems", type=int, default=2000, help="train problems whose revision-model answers are labelled")
    p.add_argument("--steps", type=int, default=500, help="fine-tuning steps of the PRM on those labels")
    p.add_argument("--learning-rate", default="0.0001")
    p.add_argument("--threads", default="1")
    args = p.parse_args()
    demo = Path(args.demo).resolve()
    out = Path(args.out).resolve() if args.out else demo / "revision_verifier"
    runs = demo / ("runs_dev" if args.split == "dev" else "runs")
    problems = demo / f"problems_{args.split}.jsonl"
    t = ["--threads", args.threads]
    if not (out / "labels" / "summary.json").exists():
        ttscale("label", "--config", str(RECIPES / "label.yaml"), "--problems", str(demo / "problems_train.jsonl"),
                "--limit", str(args.problems), "--policy", str(demo / "reviser"), *t, str(out / "labels"))
    if not (out / "prm_rev" / "ttscale_prm.json").exists():
        ttscale("train-prm", "--config", str(RECIPES / "prm.yaml"), "--model", str(demo / "prm"), "--data",
                str(out / "labels" / "dataset"), "--max-steps", str(args.steps), "--learning-rate", args.learning_rate,
                str(out / "prm_rev"), *t)
    for name in RUNS:
        mine = out / f"runs_{args.split}" / name
        if not (mine / "dataset").exists():
            ttscale("search", "--config", str(RECIPES / f"search_{name}.yaml"), "--problems", str(problems),
                    "--policy", str(demo / "policy"), "--prm", str(out / "prm_rev"), "--revision-model",
                    str(demo / "reviser"), *t, "--prm-threads", args.threads,
                    "--sample-store", str(demo / "samples.sqlite"), str(mine))
        (a, _), (b, _) = load(str(runs / name), str(problems)), load(str(mine), str(problems))
        same = all([c["steps"] for c in x["candidates"]] == [c["steps"] for c in y["candidates"]]
                   and x["spent"] == y["spent"] for x, y in zip(a, b))
        print(f"\n{name}: the same chains and cost under both verifiers: {same}")
        compare(str(runs / name), str(mine), str(problems))


if __name__ == "__main__":
    main()
