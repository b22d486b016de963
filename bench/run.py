"""Run chatlog's benchmarks; prints a table and, last, one JSON line with every figure.

python -m bench.run          # full sizes
python -m bench.run --quick  # the same measurements, small (under two minutes)
"""

import argparse
import json
import os
import platform
import time

import psutil

from bench import ingest, query
from bench.harness import ensure_wrk, servers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a quick look")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (medians are reported)")
    parser.add_argument(
        "--only", choices=["ingest", "query"], action="append", help="run these sections only"
    )
    args = parser.parse_args()
    ensure_wrk()
    seconds = 2 if args.quick else 10
    started = time.time()
    results: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
        },
        "quick": args.quick,
        "runs": args.runs,
    }
    sections = args.only or ["ingest", "query"]
    with servers() as found:
        if "ingest" in sections:
            results["ingest"] = ingest.run(found, runs=args.runs, seconds=seconds)
        if "query" in sections:
            size = 100_000 if args.quick else 1_000_000
            results["query"] = query.run(found, messages=size, runs=args.runs, seconds=seconds)
    results["seconds"] = round(time.time() - started, 1)
    print()
    for section in sections:
        _table(f"{section} (median of {args.runs})", results[section])  # type: ignore[arg-type]
    print(json.dumps(results))


def _table(title: str, section: dict[str, dict[str, dict[str, float]]]) -> None:
    print(f"{title:<28}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for name, figures in section["medians"].items():
        print(f"{name:<28}{figures['rps']:>10,.0f}{figures['p50']:>9.1f}{figures['p99']:>9.1f}")
    for name, ratio in section["ratios"].items():
        print(f"  {name}: {ratio:.2f}")
    print()


if __name__ == "__main__":
    main()
