"""The user docs stay true to the code: commands name real stages and flags, links stay inside the repository,
and docs/design.md lists exactly the stages of cli.STAGES and the strategies of search.registry."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from ttscale.cli import STAGES
from ttscale.config import build_parser

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "ttscale").rglob("*.md"))]
DESIGN = REPO / "docs" / "design.md"
# `ttscale STAGE` (also after `-m`); the command runs to the end of the line, a comment or a shell separator.
COMMAND = re.compile(r"(?<![\w/.-])ttscale[ \t]+([a-z][a-z-]*)([^;&|#`\n]*)")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _flags(stage: str) -> set[str]:
    return set(build_parser(importlib.import_module(STAGES[stage][0]).Config)._option_string_actions)


def _commands(text: str) -> list[tuple[str, str]]:
    """(stage, rest of the command) for each `ttscale STAGE ...` in shell code blocks and inline code."""
    blocks = re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", text, flags=re.S)
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    code = "\n".join(blocks + inline).replace("\\\n", " ")   # join continued shell lines
    return COMMAND.findall(code)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_commands_name_existing_stages_and_flags(doc):
    bad = []
    for stage, rest in _commands(doc.read_text()):
        if stage not in STAGES:
            bad.append(f"ttscale {stage}: no such stage")
            continue
        unknown = sorted(set(FLAG.findall(rest)) - _flags(stage))
        if unknown:
            bad.append(f"ttscale {stage}{rest}: unknown {unknown}")
    assert not bad, f"{doc.name}:\n" + "\n".join(bad)


def test_the_command_check_sees_commands_and_stale_flags():
    text = "```bash\nttscale search out --policy P \\\n    --allocation-policy a.yaml  # old\n```\n`ttscale nope`"
    assert _commands(text) == [("search", " out --policy P      --allocation-policy a.yaml  "), ("nope", "")]
    assert "--allocation-policy" not in _flags("search") and "--allocation" in _flags("search")
    assert len(_commands((REPO / "README.md").read_text())) >= 3
    assert sum(len(_commands(d.read_text())) for d in DOCS) >= 30   # the pages carry the rest


def test_the_readme_is_a_front_door_and_links_every_docs_page():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 160
    for page in sorted((REPO / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in text, f"README.md does not link docs/{page.name}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_links_resolve_inside_the_repository(doc):
    text = doc.read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"`(\.\./[^`\s]*)`", text)
    for target in targets:
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (doc.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(REPO), f"{doc.name} points outside the repository: {target}"
        assert path.exists(), f"{doc.name} links a missing file: {target}"


def test_design_doc_maps_every_stage_to_its_module():
    rows = dict(re.findall(r"^\| `([a-z-]+)` \| `(ttscale/[\w/]+\.py)` \|$", DESIGN.read_text(), flags=re.M))
    expected = {stage: module.replace(".", "/") + ".py" for stage, (module, _) in STAGES.items()}
    assert rows == expected
    for stage, path in rows.items():  # each stage module is named after its stage
        assert (REPO / path).is_file() and Path(path).name == stage.replace("-", "_") + "_cmd.py", path


def test_design_doc_budget_table_covers_every_strategy():
    from ttscale.search.registry import STRATEGIES

    section = DESIGN.read_text().split("## The budget contract", 1)[1].split("\n## ", 1)[0]
    named = {n for cell in re.findall(r"^\| ([^|]+) \|", section, flags=re.M) for n in re.findall(r"`([a-z-]+)`", cell)}
    assert named == set(STRATEGIES)
