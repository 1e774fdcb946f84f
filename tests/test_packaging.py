"""A plain (non-editable) install works: the wheel carries the recipes and `ttscale demo` finds them there.

Builds the wheel from a copy of the sources, installs it into a fresh venv, and runs the installed
`ttscale` from a scratch folder with the repository off sys.path, so nothing can fall back on the checkout.
The fresh venv gets its dependencies from this interpreter's site-packages through a .pth file: it is
appended after the venv's own site-packages (the installed wheel wins), and .pth files inside that folder
(the checkout's editable finder among them) are not processed, so the checkout stays unimportable.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def _can_build_wheels() -> str | None:
    """Why a wheel cannot be built and installed offline here, or None when it can."""
    for mod in ("pip", "setuptools", "venv"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed in {sys.executable}"
    import pip

    if tuple(int(x) for x in re.findall(r"\d+", pip.__version__)[:2]) < (22, 3):
        return f"pip {pip.__version__} has no --python (needs 22.3+)"
    return None


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{argv} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.skipif(_can_build_wheels() is not None, reason=f"cannot build a wheel here: {_can_build_wheels()}")
def test_wheel_installed_in_a_fresh_venv_ships_and_finds_the_recipes(tmp_path):
    # Build from a copy: an in-tree build would leave build/ behind, and stale files there leak into wheels.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "ttscale", src / "ttscale", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(COLUMNS="1000", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")  # COLUMNS: unwrapped --help
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
          str(src)], tmp_path, env)
    (wheel,) = wheels.glob("ttscale-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    py = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", str(wheel)], tmp_path, env)
    purelib = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        tmp_path, env).stdout.strip())
    deps = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (purelib / "_ttscale_test_deps.pth").write_text("".join(f"{d}\n" for d in deps))

    work = tmp_path / "work"  # a cwd with no ttscale/ in it
    work.mkdir()
    installed = Path(_run([str(py), "-c", "import ttscale; print(ttscale.__file__)"], work, env).stdout.strip())
    assert installed.is_relative_to(venv), f"imported {installed}, not the wheel installed in {venv}"
    pkg = installed.parent

    ttscale = str(venv / "bin" / "ttscale")  # the console script the wheel declares
    help_text = _run([ttscale, "demo", "--help"], work, env).stdout
    default = re.search(r"--recipes RECIPES .*\(default: '([^']+)'\)", help_text)
    assert default, help_text
    recipes = Path(default.group(1))
    assert recipes == pkg / "recipes" / "toy" and recipes.is_dir()
    shipped = {p.name for p in recipes.glob("*.yaml")}
    in_repo = {p.name for p in (REPO / "ttscale" / "recipes" / "toy").glob("*.yaml")}
    assert shipped == in_repo, f"recipes missing from the wheel: {sorted(in_repo - shipped)}"
    assert {p.name for p in (pkg / "recipes" / "real").glob("*.yaml")} == \
        {p.name for p in (REPO / "ttscale" / "recipes" / "real").glob("*.yaml")}
    assert (pkg / "recipes" / "real" / "README.md").is_file()

    # The demo runs a stage with the packaged recipe: its options (n, levels) reach the output.
    out = tmp_path / "demo_out"
    log = _run([ttscale, "demo", "--only", "problems-test", "--out", str(out)], work, env).stdout
    recipe = recipes / "problems_test.yaml"
    assert f"--config {recipe}" in log
    spec = yaml.safe_load(recipe.read_text())
    rows = [json.loads(line) for line in (out / "problems_test.jsonl").read_text().splitlines()]
    assert len(rows) == spec["n"] and {r["level"] for r in rows} == set(spec["levels"])
    assert not (work / "demo_out").exists()
