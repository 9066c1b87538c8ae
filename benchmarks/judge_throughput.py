"""Throughput of the OpenAI-compatible judge against a fake endpoint of fixed latency, and the cost of a cached rerun.

The fake endpoint runs in its own process, as a real one would, so the judge does not share its interpreter lock.

Prints `throughput_ratio` (requests/s over the ideal concurrency/latency) and `cache_ratio` (cached rerun time over
first-run time) as the last two lines.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/judge_throughput.py`: the fake server lives in tests/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_result  # noqa: E402
from rewards.judges import JudgeItem, JudgmentCache, OpenAICompatibleJudge  # noqa: E402
from rewards.rubric import load_rubric  # noqa: E402
from tests.fake_openai_server import FakeServerProcess  # noqa: E402

RUBRIC = Path(__file__).resolve().parent.parent / "principles" / "psychocounsel.yaml"
KEY_ENV = "COUNSEL_BENCH_KEY"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the fake endpoint waits per answer")
    parser.add_argument("--quick", action="store_true", help="400 requests")
    args = parser.parse_args(argv)
    count = 400 if args.quick else args.requests

    os.environ.setdefault(KEY_ENV, "sk-bench")
    rubric = load_rubric(RUBRIC)
    items = [JudgeItem(f"client message {i}", f"counselor reply {i}") for i in range(count)]
    with tempfile.TemporaryDirectory() as folder, FakeServerProcess(latency=args.latency) as server:
        cache = JudgmentCache(Path(folder) / "judge.sqlite")

        def judge() -> OpenAICompatibleJudge:
            return OpenAICompatibleJudge(rubric, server.base_url, "fake-judge", api_key_env=KEY_ENV,
                                         concurrency=args.concurrency, timeout=30, cache=cache)

        first = judge()
        started = time.perf_counter()
        results = first.score_with_failures(items)
        first_s = time.perf_counter() - started
        assert all(r.error is None for r in results) and server.requests == count

        rerun = judge()
        # A real rerun is a new process; collect the first run's garbage so a full GC pass is not timed as cache cost.
        gc.collect()
        started = time.perf_counter()
        cached = rerun.score_with_failures(items)
        rerun_s = time.perf_counter() - started
        assert all(r.cached for r in cached) and server.requests == count
        cache.close()

    throughput = count / first_s
    ideal = args.concurrency / args.latency
    write_result("judge_throughput", quick=args.quick, figures={
        "throughput_ratio": round(throughput / ideal, 3), "cache_ratio": round(rerun_s / first_s, 4),
        "requests": count, "concurrency": args.concurrency, "latency_s": args.latency,
        "first_run_s": round(first_s, 3), "rerun_s": round(rerun_s, 4)})
    print(f"requests={count} concurrency={args.concurrency} latency={args.latency}s")
    print(f"first_run_s={first_s:.3f} throughput={throughput:.1f}/s ideal={ideal:.1f}/s rerun_s={rerun_s:.4f}")
    print(f"throughput_ratio={throughput / ideal:.3f}")
    print(f"cache_ratio={rerun_s / first_s:.4f}")


if __name__ == "__main__":
    main()
