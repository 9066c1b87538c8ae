"""Run every benchmark: ``python -m benchmarks [--quick] [--only NAME ...]``.

Each benchmark runs in its own process (no state shared between them), writes ``benchmarks/results/<name>.json``
and prints ``name=value`` lines, which are repeated here at the end. ``--table`` rewrites the results table in
``benchmarks/README.md`` from the result files.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import RESULTS, load_results

BENCHMARKS = ("dpo_step", "overhead", "generation", "judge_prefix", "judge_batch", "judge_throughput", "dpo_memory",
              "quickstart_stages")
README = Path(__file__).resolve().parent / "README.md"
TABLE_START, TABLE_END = "<!-- results:start -->", "<!-- results:end -->"


def run_one(name: str, quick: bool) -> list[str]:
    command = [sys.executable, "-m", f"benchmarks.{name}", *(["--quick"] if quick else [])]
    env = {**os.environ, "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in completed.stdout.splitlines() if "=" in line and " " not in line.strip()]
    print(f"[benchmarks] {name}: {time.perf_counter() - started:.0f}s, exit {completed.returncode}", flush=True)
    if completed.returncode != 0:
        print(completed.stderr[-2000:], file=sys.stderr)
    return lines


def figures_table() -> str:
    rows = ["| benchmark | figure | value | goal | date |", "|---|---|---|---|---|"]
    goals = {"dpo_step_ratio": "≤ 1.5", "overhead_ratio": "≤ 1.03", "generation_ratio": "≥ 1.0",
             "judge_prefix_speedup": "≥ 3", "throughput_ratio": "≥ 0.9", "cache_ratio": "≤ 0.02",
             "memory_ratio": "≤ 1.15", "max_score_difference": "≤ 1e-4"}
    for name, result in load_results().items():
        for key, value in result["figures"].items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                rows.append(f"| {name} | `{key}` | {value} | {goals.get(key, '')} | {result['date'][:10]} |")
    return "\n".join(rows)


def update_readme() -> None:
    text = README.read_text()
    start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    README.write_text(text[:start] + "\n" + figures_table() + "\n" + text[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes; the whole suite in a few minutes")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    parser.add_argument("--table", action="store_true", help="rewrite the table in benchmarks/README.md and exit")
    args = parser.parse_args(argv)
    if args.table:
        update_readme()
        return 0
    RESULTS.mkdir(exist_ok=True)
    printed: list[str] = []
    for name in args.only or BENCHMARKS:
        printed += run_one(name, args.quick)
    print("\n".join(printed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
