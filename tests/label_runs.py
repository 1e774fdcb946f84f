"""The small `label` run that the labeling-stage and Ray-executor tests share (one reference run a session)."""
from __future__ import annotations

from pathlib import Path

import datasets


def label_argv(problems: Path, policy: Path, out: Path, *extra: str) -> list[str]:
    return ["label", "--problems", str(problems), "--policy", str(policy), "--threads", "1",
            "--num-solutions", "2", "--rollouts", "2", "--max-new-tokens", "24", "--prefilter", "false",
            "--chunk-size", "2", "--rollout-batch", "4", "--seed", "5", *extra, str(out)]


def dataset_rows(out: Path) -> list[dict]:
    return datasets.load_from_disk(str(out / "dataset")).to_list()
