"""`ttscale merge`: join the parts of sharded `ttscale label` runs into one dataset + summary."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from ttscale.config import field
from ttscale.data.rundir import check_output_dir
from ttscale.data.threads import ThreadArgs
from ttscale.train.labeling.output import finalize


@dataclass
class Config(ThreadArgs):
    """Join sharded labelling runs (their parts/ folders) into OUTPUT/dataset and OUTPUT/summary.json."""
    output_dir: str = field(help="folder to write dataset/ and summary.json into", positional=True)
    inputs: list[str] = field(help="the shard output folders (each from `ttscale label --shard-index i`)",
                              positional=True)
    export: str = field("", help="also export the merged rows in this format (trl-stepwise, math-shepherd, "
                        "processbench, ...): written to OUTPUT_DIR/export.jsonl")


def run(cfg: Config) -> int:
    cfg.apply_threads()
    runs = [Path(p) for p in cfg.inputs]
    check_output_dir(Path(cfg.output_dir))
    metas = [json.loads((p / "run.json").read_text()) for p in runs]
    if any(m != metas[0] for m in metas[1:]):
        raise SystemExit("the shards were labelled with different settings; merge only shards of one run")
    summary = finalize(runs, Path(cfg.output_dir), export=cfg.export or None)
    print(json.dumps(summary, indent=1))
    print(f"[merge] wrote {Path(cfg.output_dir) / 'dataset'} and {Path(cfg.output_dir) / 'summary.json'}",
          file=sys.stderr)   # stdout stays the summary's JSON
    return 0
