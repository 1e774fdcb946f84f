"""Throughput of `ttscale convert` paths: native -> each format -> native on synthetic rows.

    .venv/bin/python benchmarks/bench_formats.py --rows 20000
Prints rows/second for writing and reading each format as JSON lines and parquet.
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
import warnings
from pathlib import Path

from ttscale.data.formats import FORMATS, ConversionWarning, read_rows, write_rows


def synthetic_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        k = rng.randint(2, 10)
        steps = [f"Step text {j}: {rng.randint(0, 999)} + {rng.randint(0, 999)} = x" for j in range(k)]
        err = rng.choice([-1] + list(range(k)))
        labels = [1.0] * k if err == -1 else [1.0] * err + [0.0]
        rows.append({"id": f"r-{i}", "problem": f"Problem {i}: what is x?", "steps": steps, "labels": labels})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = synthetic_rows(args.rows, args.seed)
    warnings.simplefilter("ignore", ConversionWarning)  # unlabelled tails are dropped by +/- formats
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in (n for n, f in FORMATS.items() if f.write):
            for ext in (".jsonl", ".parquet"):
                path = Path(tmp) / f"{fmt}{ext}"
                t0 = time.perf_counter()
                n = write_rows(fmt, rows, path)
                t1 = time.perf_counter()
                back = read_rows(fmt, path)
                t2 = time.perf_counter()
                print(f"{fmt:<14} {ext:<8} write {n / (t1 - t0):>9.0f} rows/s   read {len(back) / (t2 - t1):>9.0f} rows/s")


if __name__ == "__main__":
    main()
