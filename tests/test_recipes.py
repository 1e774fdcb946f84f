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
            "build_revisions": "build-revisions", "train_revision": "train-revision", "evaluate": "evaluate"}


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
    recipes = [a for _, argv, _ in steps for a in argv if a.endswith(".yaml")]
    assert recipes and all(Path(r).exists() for r in recipes)
    # every search recipe is a step (the new strategies are swept beside the anchors)
    assert {f"search-{p.stem[len('search_'):]}" for p in (RECIPES / "toy").glob("search_*.yaml")} <= {
        name for name, _, _ in steps}
    assert {name for name, _, _ in steps} >= {"policy", "label", "prm", "prm-eval", "revision-data", "reviser",
                                              "search-bon", "search-beam16"}
    # the split protocol: every search recipe also runs on the dev split, into its own folder
    argv = {name: a for name, a, _ in steps}
    for recipe in (RECIPES / "toy").glob("search_*.yaml"):
        name = recipe.stem[len("search_"):]
        test, dev = argv[f"search-{name}"], argv[f"dev-{name}"]
        assert test[test.index("--problems") + 1] == "/tmp/x/problems_test.jsonl" and test[-1] == f"/tmp/x/runs/{name}"
        assert dev[dev.index("--problems") + 1] == "/tmp/x/problems_dev.jsonl" and dev[-1] == f"/tmp/x/runs_dev/{name}"
    seeds = {s: yaml.safe_load((RECIPES / "toy" / f"problems_{s}.yaml").read_text())["seed"]
             for s in ("train", "dev", "test", "confirm")}
    assert len(set(seeds.values())) == 4   # four disjoint draws of the toy world


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_demo_lanes_run_every_step_once_after_its_inputs(jobs):
    from ttscale.demo_cmd import _lanes, _steps

    steps = _steps(Path("/tmp/x"), RECIPES / "toy", "1", jobs)
    names = [name for name, _, _ in steps]
    waves = _lanes(names, jobs)
    flat = [n for wave in waves for lane in wave for n in lane]
    assert sorted(flat) == sorted(names)
    wave_of = {n: w for w, wave in enumerate(waves) for lane in wave for n in lane}
    assert wave_of["policy"] < wave_of["label"] < wave_of["search-bon"]
    assert wave_of["reviser"] < wave_of["search-revisions16"] and wave_of["prm"] < wave_of["search-beam4"]
    lane_of = {n: lane for wave in waves for lane in wave for n in lane}

    def before(a, b):   # a finishes before b starts: an earlier wave, or earlier in the same lane
        return wave_of[a] < wave_of[b] or (lane_of[a] is lane_of[b] and lane_of[a].index(a) < lane_of[b].index(b))

    assert before("prm", "prm-eval") and before("label", "prm") and before("label", "revision-data")
    assert max(len(wave) for wave in waves) <= max(jobs, 1)
    # with more than one job, labelling runs as that many shards side by side, then `merge` joins them
    shards = [argv for name, argv, _ in steps if name.startswith("label-shard")]
    assert len(shards) == (jobs if jobs > 1 else 0)
    assert all(a[a.index("--num-shards") + 1] == str(jobs) for a in shards)
    assert sorted(a[a.index("--shard-index") + 1] for a in shards) == [str(i) for i in range(len(shards))]
    label = dict((n, a) for n, a, _ in steps)["label"]
    assert label[0] == ("merge" if jobs > 1 else "label")
    assert all(before(f"label-shard{i}", "label") for i in range(len(shards)))


def test_demo_deploys_auto_on_the_confirm_split_with_the_fitted_allocation():
    from ttscale.demo_cmd import _searches

    out = Path("/tmp/x")
    deploy = {name: argv for name, argv, _ in _searches(out, RECIPES / "toy", "1", "deploy",
                                                          out / "problems_confirm.jsonl", out / "runs_confirm",
                                                          allocation=out / "report" / "allocation.yaml")}
    assert set(deploy) == {"deploy-auto16", "deploy-bon"}
    auto = deploy["deploy-auto16"]
    assert auto[auto.index("--allocation") + 1] == str(out / "report" / "allocation.yaml")
    assert "--allocation" not in deploy["deploy-bon"]
    assert all(argv[argv.index("--problems") + 1] == str(out / "problems_confirm.jsonl") for argv in deploy.values())
