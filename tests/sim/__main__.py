"""`python -m tests.sim`: one seed with its event log, or many seeds on every core.

    python -m tests.sim --seed 42 --ops 200       # one seed; its report if it fails
    python -m tests.sim --seeds 10000 --ops 200   # seeds 0..9999 on every core (make sim)

The last line printed is a JSON summary: seeds, ops, failures (the failed seeds' count),
failed_seeds (the first 50), known (seeds whose only problems are known findings,
`checks.KNOWN_FINDINGS`), known_seeds (the first 50), elapsed_s. Exit status 1 when a seed
failed. `--strict` counts the known findings as failures. Run from the repository's top.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import multiprocessing.util
import os
import sys
import time

from .run import Runner, SeedResult

#: seeds a worker runs before it is replaced (each server restart leaves an idle thread)
SEEDS_PER_WORKER = 100
#: how many failed or known seeds the summary names
LISTED_SEEDS = 50

_RUNNER: list[Runner] = []


def _start_worker() -> None:
    logging.disable(logging.CRITICAL)  # the production code's own warnings: expected here
    runner = Runner()
    _RUNNER.append(runner)
    multiprocessing.util.Finalize(None, runner.close, exitpriority=10)


def _run(job: tuple[int, int, bool]) -> tuple[int, bool, bool, str]:
    """(seed, failed, known only, report) of one seed in a worker."""
    seed, operations, strict = job
    result = _RUNNER[0].run(seed, operations)
    failed = result.failed(strict)
    return seed, failed, bool(result.problems) and not failed, result.report() if failed else ""


def _many(first: int, count: int, operations: int, jobs: int, strict: bool) -> int:
    started = time.perf_counter()
    failed: list[int] = []
    known: list[int] = []
    work = [(seed, operations, strict) for seed in range(first, first + count)]
    with multiprocessing.Pool(
        jobs, initializer=_start_worker, maxtasksperchild=SEEDS_PER_WORKER
    ) as pool:
        for seed, seed_failed, known_only, report in pool.imap_unordered(_run, work, chunksize=4):
            if seed_failed:
                failed.append(seed)
                print(report, flush=True)
            elif known_only:
                known.append(seed)
        pool.close()  # the workers end normally, so each removes its town (Finalize)
        pool.join()
    summary = {
        "seeds": count,
        "first_seed": first,
        "ops": operations,
        "jobs": jobs,
        "failures": len(failed),
        "failed_seeds": sorted(failed)[:LISTED_SEEDS],
        "known": len(known),
        "known_seeds": sorted(known)[:LISTED_SEEDS],
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(summary), flush=True)
    return 1 if failed else 0


def _one(seed: int, operations: int, strict: bool, events: bool) -> int:
    logging.disable(logging.CRITICAL)
    runner = Runner()
    try:
        result: SeedResult = runner.run(seed, operations)
    finally:
        runner.close()
    if events:
        print("\n".join(result.events))
    if result.problems:
        print(result.report())
    print(
        json.dumps(
            {
                "seed": seed,
                "ops": operations,
                "failed": result.failed(strict),
                "problems": result.problems,
                "events_sha256": result.events_sha256,
            }
        )
    )
    return 1 if result.failed(strict) else 0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.sim", description="the deterministic simulation (docs/simulation.md)"
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--seed", type=int, help="run this one seed and print its report")
    which.add_argument("--seeds", type=int, help="run this many seeds, from --first-seed on")
    parser.add_argument("--first-seed", type=int, default=0, help="the first of --seeds")
    parser.add_argument("--ops", type=int, default=200, help="operations per seed (200)")
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (every core)"
    )
    parser.add_argument(
        "--strict", action="store_true", help="known findings count as failures too"
    )
    parser.add_argument(
        "--events", action="store_true", help="with --seed: print the whole event log"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if args.seed is not None:
        return _one(args.seed, args.ops, args.strict, args.events)
    return _many(args.first_seed, args.seeds, args.ops, args.jobs, args.strict)


if __name__ == "__main__":
    sys.exit(main())
