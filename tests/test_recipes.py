"""Every recipe names only options its stage has, with values of the right type (recipes can't drift)."""
from __future__ import annotations

import dataclasses
import importlib
import typing
from pathlib import Path

import pytest
import yaml

from ttscale.cli import STAGES
from ttscale.config import _coerce
from ttscale.demo_cmd import RECIPES_ROOT as RECIPES
STAGE_OF = {"problems_train": "toy-world", "problems_test": "toy-world", "prm_heldout": "toy-world",
            "prm_fit": "toy-world", "problems_dev": "toy-world", "problems_confirm": "toy-world", "tune": "evaluate",
            "policy": "train-policy", "label": "label", "label_ray": "label", "prm": "train-prm", "eval_prm": "eval-prm",
            "build_revisions": "build-revisions", "train_revision": "train-revision", "evaluate": "evaluate",
            "build_revisions_own": "build-revisions", "train_revision_own": "train-revision"}


def _stage(path: Path) -> str:
    return "search" if path.stem.startswith(("search_", "deploy_")) else STAGE_OF[path.stem]


def test_recipes_live_in_the_package_and_the_demo_reads_them_there():
    import ttscale
    from ttscale.demo_cmd import RECIPES as DEMO_RECIPES

    assert RECIPES == Path(ttscale.__file__).resolve().parent / "recipes"
    assert DEMO_RECIPES == RECIPES / "toy"
    assert len(list((RECIPES / "toy").glob("*.yaml"))) >= 10 and list((RECIPES / "real").glob("*.yaml"))


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*/*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_options_exist_and_parse(path):
    cfg_cls = importlib.import_module(STAGES[_stage(path)][0]).Config
    hints = typing.get_type_hints(cfg_cls)
    names = {f.name for f in dataclasses.fields(cfg_cls)}
    data = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(data) - names)
    assert not unknown, f"{path}: options not in `ttscale {_stage(path)}`: {unknown}"
    for key, value in data.items():
        _coerce(hints[key], value, key)


def test_demo_has_a_recipe_for_every_step():
    from ttscale.demo_cmd import _steps

    steps = _steps(Path("/tmp/x"), RECIPES / "toy", "1")
    argv = {s.name: s.argv for s in steps if not callable(s.argv)}   # evaluate's argv is built when it starts
    recipes = [a for a in (x for v in argv.values() for x in v) if a.endswith(".yaml") and "/tmp/x" not in a]
    assert recipes and all(Path(r).exists() for r in recipes)
    # every search recipe is a step (the new strategies are swept beside the anchors)
    assert {f"search-{p.stem[len('search_'):]}" for p in (RECIPES / "toy").glob("search_*.yaml")} <= set(argv)
    assert set(argv) >= {"policy", "label", "prm", "prm-eval", "revision-data", "reviser", "search-bon",
                         "search-beam16", "deploy-bon", "deploy-auto16"}
    # the split protocol: every search recipe also runs on the dev split, into its own folder
    for recipe in (RECIPES / "toy").glob("search_*.yaml"):
        name = recipe.stem[len("search_"):]
        test, dev = argv[f"search-{name}"], argv[f"dev-{name}"]
        assert test[test.index("--problems") + 1] == "/tmp/x/problems_test.jsonl" and test[-1] == f"/tmp/x/runs/{name}"
        assert dev[dev.index("--problems") + 1] == "/tmp/x/problems_dev.jsonl" and dev[-1] == f"/tmp/x/runs_dev/{name}"
    seeds = {s: yaml.safe_load((RECIPES / "toy" / f"problems_{s}.yaml").read_text())["seed"]
             for s in ("train", "dev", "test", "confirm")}
    assert len(set(seeds.values())) == 4   # four disjoint draws of the toy world


def _reads(steps, name):
    """Every step `name` waits for, directly or through others."""
    by, seen, todo = {s.name: s for s in steps}, set(), [name]
    while todo:
        for d in by[todo.pop()].after:
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_demo_steps_wait_for_their_inputs(jobs):
    from ttscale.demo_cmd import _steps

    steps = _steps(Path("/tmp/x"), RECIPES / "toy", "1", jobs)
    names = [s.name for s in steps]
    assert len(names) == len(set(names)) and all(d in names for s in steps for d in s.after)
    assert "policy" in _reads(steps, "label") and "label" in _reads(steps, "search-bon")
    assert {"reviser", "prm", "policy", "problems-test"} <= _reads(steps, "search-revisions16")
    assert {"prm", "prm-heldout", "prm-fit"} <= _reads(steps, "prm-eval")
    assert "label" in _reads(steps, "revision-data") and "label" in _reads(steps, "prm")
    # the reviser's second round reads the first one's own answers
    assert {"reviser-sft", "revision-data-own", "revision-data"} <= _reads(steps, "reviser")
    # evaluate reads every run of its split; auto on confirm reads the allocation fitted on test, not the reverse
    assert {s.name for s in steps if s.name.startswith("dev-")} <= _reads(steps, "evaluate-report_dev")
    assert {"evaluate-report_dev", "prm-eval", "search-bon"} <= _reads(steps, "evaluate-report")
    assert {"evaluate-report", "reviser"} <= _reads(steps, "deploy-auto16")   # the allocation may pick revisions
    assert _reads(steps, "deploy-bon") == {"policy", "prm", "problems-confirm", "label", "label-shard0",
                                           "label-shard1", "label-shard2", "problems-train"} & set(names)
    assert not any(s.name.startswith("deploy-") for s in steps if s.name in _reads(steps, "evaluate-report"))
    # with more than one job, labelling runs as that many shards side by side, then `merge` joins them
    by = {s.name: s for s in steps}
    shards = [s.argv for s in steps if s.name.startswith("label-shard")]
    assert len(shards) == (jobs if jobs > 1 else 0)
    assert all(a[a.index("--num-shards") + 1] == str(jobs) for a in shards)
    assert sorted(a[a.index("--shard-index") + 1] for a in shards) == [str(i) for i in range(len(shards))]
    assert by["label"].argv[0] == ("merge" if jobs > 1 else "label")
    # the policy trains alone at the start, on every core the demo has
    policy = by["policy"].argv
    assert policy[policy.index("--threads") + 1] == str(max(1, jobs))


def test_demo_queue_runs_steps_in_workers_longest_ready_first(tmp_path):
    """run_dag on real (tiny) `ttscale toy-world` steps: inputs first, longest ready step first, output in each
    step's log, a step already done is skipped, and a failing step stops the queue with its exit code."""
    from ttscale.demo_queue import Step, run_dag

    def toy(name, n, after=(), cost=1.0):
        return Step(name, ["toy-world", "--n", str(n), "--seed", "3", str(tmp_path / f"{name}.jsonl")],
                    tmp_path / f"{name}.jsonl", after, cost)

    steps = [toy("a", 4), toy("b", 5, cost=9), toy("c", 6, ("a", "b"), cost=5), toy("d", 7, ("a",), cost=1)]
    started, took = [], {}
    rc = run_dag(steps, 1, tmp_path / "logs", lambda s, log: started.append(s.name),
                 lambda s, t: took.setdefault(s.name, t))
    assert rc == 0 and started == ["b", "a", "c", "d"] and set(took) == {"a", "b", "c", "d"}
    assert [len((tmp_path / f"{n}.jsonl").read_text().splitlines()) for n in "abcd"] == [4, 5, 6, 7]
    assert (tmp_path / "logs" / "c.log").exists()
    (tmp_path / "d.jsonl").unlink()
    bad = Step("e", ["toy-world", "--n", "-1", str(tmp_path / "e.jsonl")], tmp_path / "e.jsonl", ("d",))
    started.clear()
    rc = run_dag([*steps, bad, toy("f", 2, ("e",))], 2, tmp_path / "logs", lambda s, log: started.append(s.name),
                 lambda s, t: None)
    assert rc != 0 and started == ["d", "e"]   # a, b, c were done; f never starts after e failed
    assert "--n" in (tmp_path / "logs" / "e.log").read_text()


def test_demo_deploys_auto_on_the_confirm_split_with_the_fitted_allocation():
    from ttscale.demo_cmd import _searches

    out = Path("/tmp/x")
    deploy = {s.name: s.argv for s in _searches(out, RECIPES / "toy", "1", "deploy", out / "problems_confirm.jsonl",
                                                out / "runs_confirm", "confirm",
                                                allocation=out / "report" / "allocation.yaml")}
    assert set(deploy) == {"deploy-auto16", "deploy-bon"}
    auto = deploy["deploy-auto16"]
    assert auto[auto.index("--allocation") + 1] == str(out / "report" / "allocation.yaml")
    assert "--allocation" not in deploy["deploy-bon"]
    assert all(argv[argv.index("--problems") + 1] == str(out / "problems_confirm.jsonl") for argv in deploy.values())
