"""`--threads` for stages that run no model (toy-world, convert, merge): it caps Arrow's CPU pool, the part
of these stages that runs on several cores (reading and writing jsonl/parquet/datasets folders)."""
from __future__ import annotations

from dataclasses import dataclass

from ttscale.config import field


@dataclass(kw_only=True)
class ThreadArgs:
    threads: int | None = field(None, ge=1, run_key=False,
                                help="CPU threads for reading and writing tables (Arrow; default: all cores)")

    def apply_threads(self) -> None:
        if self.threads:
            import pyarrow

            pyarrow.set_cpu_count(self.threads)
