"""Run chatlog's benchmarks; prints a table per section and, last, one JSON line with every figure.

python -m bench.run          # full sizes
python -m bench.run --quick  # the same measurements, small (under two minutes)
python -m bench.run --quick --only projector --events 50000   # one section, another size
"""

import argparse
import json
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

from bench import catchup, freshness, ingest, query
from bench.harness import ensure_wrk, servers

SECTIONS = ["ingest", "query", "projector", "replay", "freshness"]
RSS_TARGET_MB = 300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a quick look")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (medians are reported)")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run these sections only")
    parser.add_argument("--seconds", type=float, help="seconds per ingest/query measurement")
    parser.add_argument("--messages", type=int, help="messages in the query section's chat")
    parser.add_argument("--events", type=int, help="events in the projector and replay stream")
    parser.add_argument("--freshness-seconds", type=float, help="seconds per freshness round")
    parser.add_argument("--rate", type=float, default=1000, help="freshness updates per second")
    args = parser.parse_args()
    sections = [s for s in SECTIONS if s in (args.only or SECTIONS)]
    if {"ingest", "query"} & set(sections):
        ensure_wrk()
    seconds = args.seconds or (1 if args.quick else 10)
    messages = args.messages or (100_000 if args.quick else 1_000_000)
    events = args.events or (10_000 if args.quick else 1_000_000)
    fresh_seconds = args.freshness_seconds or (3 if args.quick else 20)
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
    took: dict[str, float] = {}
    with servers() as found:
        if "ingest" in sections:
            with _timed(took, "ingest"):
                results["ingest"] = ingest.run(found, runs=args.runs, seconds=seconds)
        if "query" in sections:
            with _timed(took, "query"):
                results["query"] = query.run(
                    found, messages=messages, runs=args.runs, seconds=seconds
                )
        if {"projector", "replay"} & set(sections):
            with _timed(took, "projector+replay"):
                results.update(
                    catchup.run(
                        found,
                        events=events,
                        runs=args.runs,
                        projector="projector" in sections,
                        replay="replay" in sections,
                        pause=0.2 if args.quick else 1.0,
                    )
                )
        if "freshness" in sections:
            with _timed(took, "freshness"):
                results["freshness"] = freshness.run(
                    found, runs=args.runs, seconds=fresh_seconds, rate=args.rate
                )
    results["section_seconds"] = took
    results["memory"] = memory(results)
    results["seconds"] = round(time.time() - started, 1)
    print()
    for section in sections:
        TABLES[section](args.runs, results[section])
    _memory_table(results["memory"])
    print(
        f"total {results['seconds']:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in took.items())})"
    )
    print(json.dumps(results))


@contextmanager
def _timed(took: dict[str, float], name: str) -> Iterator[None]:
    began = time.perf_counter()
    try:
        yield
    finally:
        took[name] = round(time.perf_counter() - began, 1)


def memory(results: dict) -> dict[str, object]:
    """The peak RSS of each chatlog process over every section that ran it, against the target."""
    seen: dict[str, list[float]] = {}
    if "ingest" in results:
        rss = results["ingest"]["rss_mb"]
        seen["ingest"] = [v for k, v in rss.items() if k.startswith("chatlog ")]
    if "query" in results:
        seen["query"] = [results["query"]["rss_mb"]["chatlog query"]]
    if "projector" in results:
        seen["project"] = [results["projector"]["rss_mb"]]
    if "replay" in results:
        seen["replay"] = [results["replay"]["rss_mb"]]
    if "freshness" in results:
        for name, value in results["freshness"]["rss_mb"].items():
            seen.setdefault(name, []).append(value)
    peaks = {name: max(values) for name, values in seen.items() if values}
    return {
        "target_mb": RSS_TARGET_MB,
        "peak_mb": peaks,
        "within_target": all(v <= RSS_TARGET_MB for v in peaks.values()),
    }


def _rps_table(runs: int, section: dict, title: str) -> None:
    print(f"{title + f' (median of {runs})':<30}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for name, figures in section["medians"].items():
        print(f"{name:<30}{figures['rps']:>10,.0f}{figures['p50']:>9.1f}{figures['p99']:>9.1f}")
    _ratios(section)


def _ratios(section: dict) -> None:
    for name, ratio in section["ratios"].items():
        print(f"  {name}: {ratio:.2f}")
    print()


def _projector_table(runs: int, section: dict) -> None:
    title = f"projector, {section['events']:,} events (median of {runs})"
    print(f"{title:<46}{'events/s':>10}{'seconds':>9}")
    for name, figures in section["medians"].items():
        secs = figures.get("seconds", section["events"] / figures["rate"])
        print(f"{name:<46}{figures['rate']:>10,.0f}{secs:>9.2f}")
    print(f"  projector timed from {section['timed_from']}; wall from process start"
          f" {section['medians']['projector']['wall_seconds']:.2f} s")  # fmt: skip
    _ratios(section)


def _replay_table(runs: int, section: dict) -> None:
    med = section["medians"]
    print(f"replay, {section['events']:,} events (median of {runs})")
    own = med.get("own_seconds", float("nan"))
    print(f"  wall from process start {med['seconds']:.1f} s = {med['rate']:,.0f} events/s"
          f" (its own figure, without the interpreter's start: {own:.1f} s);"
          f" target 1,000,000 in <= 90 s")  # fmt: skip
    print()


def _freshness_table(runs: int, section: dict) -> None:
    med = {k: float("nan") if v is None else v for k, v in section["medians"].items()}
    print(f"freshness at {section['rate']:,.0f} updates/s, {runs} rounds of"
          f" {section['seconds_per_round']:g} s (median)")  # fmt: skip
    print(
        f"  write 200 -> readable (incl. one read round trip): p50 {med['p50_ms']:.1f} ms,"
        f" p99 {med['p99_ms']:.1f} ms, max {med['max_ms']:.1f} ms (target p99 <= 100 ms)"
    )
    print(f"  write latency p50 {med['write_p50_ms']:.1f} ms p99 {med['write_p99_ms']:.1f} ms;"
          f" achieved {med['achieved_rate']:,.0f} updates/s, behind schedule p99"
          f" {med['behind_p99_ms']:.1f} ms max {med['behind_max_ms']:.1f} ms")  # fmt: skip
    print(
        f"  {section['read_back']:,}/{section['updates']:,} read back, errors"
        f" {section['errors']}, load generator CPU {section['load_generator_cpu']:.0%}"
    )
    print()


def _memory_table(section: dict) -> None:
    print(f"{'memory: peak RSS':<30}{'MB':>10}   (target <= {section['target_mb']} MB each)")
    for name, value in section["peak_mb"].items():
        print(f"{'chatlog ' + name:<30}{value:>10.0f}")
    print()


TABLES = {
    "ingest": lambda runs, s: _rps_table(runs, s, "ingest"),
    "query": lambda runs, s: _rps_table(runs, s, f"query, {s['messages']:,} msgs"),
    "projector": _projector_table,
    "replay": _replay_table,
    "freshness": _freshness_table,
}


if __name__ == "__main__":
    main()
