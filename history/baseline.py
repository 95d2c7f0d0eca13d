"""`make compare RUN=reports/<b> BASE=last:7`: a run against its rolling baseline.

    python -m history.baseline RUN [--last 7] [--threshold-pct 20] [--history-db URL]

The baseline is the last N runs of the history that are comparable with RUN (same scenario,
target profile, target and time scale, complete, started before it): every figure is compared
with their median, and its significance tested on their windows and samples pooled, by the
same rule as against one run (`analysis.compare`). `compare.json` and `compare.md` go into
RUN's folder; the exit code is 1 if there is a regression. Runs of the history whose folder
is gone are left out, and said so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.compare import compare, write_comparison
from analysis.run_data import RunDataError, load_run
from history.entry import EntryError, entry_from_folder
from history.store import HistoryError, HistoryStore, default_url

USAGE_ERROR = 2


def parse_base(text: str) -> int | None:
    """`last:7` -> 7; anything else is not a rolling baseline (None)."""
    if not text.startswith("last:"):
        return None
    try:
        count = int(text.removeprefix("last:"))
    except ValueError:
        return None
    return count if count > 0 else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m history.baseline", description=__doc__)
    parser.add_argument("run", type=Path, help="the run's folder")
    parser.add_argument("--last", type=int, default=7, help="how many runs make the baseline")
    parser.add_argument("--threshold-pct", type=float, default=20.0)
    parser.add_argument("--history-db", default=None, help="default: HISTORY_DB, else SQLite")
    args = parser.parse_args(argv)
    if args.last < 1:
        parser.error("--last must be at least 1")
    try:
        entry = entry_from_folder(args.run)
        run = load_run(args.run)
        store = HistoryStore(args.history_db or default_url())
        try:
            comparable = store.comparable(entry, args.last)
        finally:
            store.close()
    except (EntryError, RunDataError, HistoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    bases, gone = [], []
    for other in comparable:
        try:
            bases.append(load_run(Path(other.folder)))
        except RunDataError:
            gone.append(other.folder)
    for folder in gone:
        print(f"note: {folder} is in the history but no longer on disk: left out", file=sys.stderr)
    if not bases:
        print(
            f"error: no earlier complete run of {entry.scenario} (profile {entry.profile}, "
            f"target {entry.target}, time scale {entry.time_scale:g}) in the history to compare "
            "with: make history-import DIR=reports/ records the runs already on disk",
            file=sys.stderr,
        )
        return USAGE_ERROR
    changes = compare(bases, run, args.threshold_pct)
    heading = f"the median of the last {len(bases)} comparable runs"
    return write_comparison(
        f"last:{args.last}", None, args.run, changes, args.threshold_pct, heading=heading
    )


if __name__ == "__main__":
    raise SystemExit(main())
