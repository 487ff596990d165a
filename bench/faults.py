"""The fault suite, longer: seeds of thousands of jobs through the whole stack while every part
is SIGKILLed in turn (``tests/harness/faults.py``), and a table of what each seed found.

    python bench/faults.py --seeds 3                 # seeds 1..3, 3000 jobs each
    python bench/faults.py --seed 17 --jobs 500      # repeat one seed
    python bench/faults.py --seeds 2 --parts broker,worker

Exits non-zero when any seed lost a job, doubled a run or found a view unequal to its replay.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness.faults import FaultRun, run_faults  # noqa: E402
from tests.harness.faults_stack import PARTS  # noqa: E402


def table(runs: list[FaultRun]) -> str:
    header = [
        "seed",
        *PARTS,
        "unasked",
        "jobs",
        "acked",
        "lost",
        "unfinished",
        "doubled",
        "views=replay",
        "s",
    ]
    rows = [header]
    for run in runs:
        f = run.findings
        rows.append(
            [
                str(run.seed),
                *(str(run.faults.get(p, 0)) for p in PARTS),
                str(sum(run.crashes.values())),
                str(run.jobs),
                str(run.acknowledged),
                str(len(f.lost)),
                str(len(f.unfinished)),
                str(len(f.doubled)),
                "yes" if not f.view_differences else f"no ({len(f.view_differences)})",
                f"{run.seconds:.0f}",
            ]
        )
    total: Counter[str] = Counter()
    for run in runs:
        total.update(run.faults)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.append(f"faults injected per part: {dict(total)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3, help="run seeds 1..N")
    parser.add_argument("--seed", type=int, action="append", help="run this seed (repeatable)")
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per seed")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per seed; each kills every part once")
    parser.add_argument("--rate", type=float, default=12.0, help="jobs submitted per second")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"parts to kill (of {','.join(PARTS)})")
    parser.add_argument("--dir", type=Path, help="keep the logs here (default: a temporary dir)")
    args = parser.parse_args(argv)
    seeds = args.seed or list(range(1, args.seeds + 1))
    parts = tuple(p for p in args.parts.split(",") if p)
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"--parts: {sorted(unknown)} not among {PARTS}")
    root = args.dir or Path(tempfile.mkdtemp(prefix="flotilla-faults-"))
    print(f"faults: logs under {root}", flush=True)
    runs = [
        run_faults(
            seed, root, jobs=args.jobs, rounds=args.rounds, rate=args.rate, parts=parts, settle_timeout=300
        )
        for seed in seeds
    ]
    print(table(runs))
    for run in runs:
        if not run.ok:
            print(run.summary())
    return 0 if all(run.ok for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
