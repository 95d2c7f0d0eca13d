"""The run history from the command line.

    python -m history [--history-db URL] import DIR                record every run folder in DIR
    python -m history [--history-db URL] record FOLDER [--label L]  record the run in FOLDER
    python -m history [--history-db URL] [--scenario S] [--target T] [--profile P]
                      [--last 30] [--out reports/history.html]    the page and the table

`--history-db` (before or after the subcommand) names the database; without it `HISTORY_DB`,
else SQLite at `reports/history.sqlite`. What was recorded goes to stdout, the folders `import`
skipped (one line each, why) to stderr. Bad input: `error: ...` on one line, exit code 2.

The page: the runs are grouped into series (a scenario on a target, with one profile), the last
`--last` runs of each; one series is drawn on `--out` itself, several each on a page of its own
beside it (`history-<scenario>-<n>.html`) with `--out` their index. The terminal gets each
series' table and its drift.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from history.entry import EntryError, RunEntry, entry_from_folder
from history.page import Series, page_path, render_index, render_page, terminal_table
from history.store import HistoryError, HistoryStore, default_url, import_folders
from history.trend import drift_summary, trends

USAGE_ERROR = 2


def _import(args: argparse.Namespace) -> int:
    with HistoryStore(_url(args)) as store:
        recorded, skipped = import_folders(Path(args.dir), store)
        for reason in skipped:
            print(f"skipped: {reason}", file=sys.stderr)
        print(f"recorded {recorded} run(s) from {args.dir} in {store.url_shown}")
    return 0


def _record(args: argparse.Namespace) -> int:
    entry = entry_from_folder(Path(args.folder), label=args.label)
    with HistoryStore(_url(args)) as store:
        run_id = store.record(entry)
        print(f"recorded {entry.folder} (run {run_id}) in {store.url_shown}")
    return 0


def _page(args: argparse.Namespace) -> int:
    if args.last < 1:
        raise HistoryError(f"--last {args.last}: give at least 1")
    with HistoryStore(_url(args)) as store:
        entries = store.runs(
            scenario=args.scenario, target=args.target, profile=args.profile, last=None
        )
        shown = store.url_shown
    if not entries:
        wanted = ", ".join(
            f"{k} {v}" for k in ("scenario", "target", "profile") if (v := getattr(args, k))
        )
        raise HistoryError(
            f"no run in {shown}{' for ' + wanted if wanted else ''}: runs are recorded at "
            "their end; make history-import DIR=reports/ records those already on disk"
        )
    groups: dict[tuple[str, str, str], list[RunEntry]] = {}
    for entry in entries:
        key = (entry.scenario, entry.target or "?", entry.profile or "?")
        groups.setdefault(key, []).append(entry)
    out = Path(args.out)
    root = out.parent if out.suffix else out
    index: list[Series] = []
    for number, ((scenario, target, profile), runs) in enumerate(sorted(groups.items()), 1):
        runs = runs[-args.last :]
        found = trends(runs)
        title = f"Run history: {scenario} on {target} ({profile})"
        page = out if len(groups) == 1 else root / f"history-{_slug(scenario)}-{number}.html"
        render_page(runs, found, title, page, root)
        print(f"\n== {scenario} on {target} ({profile}): {len(runs)} run(s), {page}")
        print(terminal_table(runs, found))
        index.append(
            Series(
                scenario,
                target,
                profile,
                len(runs),
                runs[-1].verdict,
                drift_summary(found),
                any(t.flagged for t in found),
                page.name,
            )
        )
    if len(groups) > 1:
        render_index(index, "Run history", out)
        print(f"\nhistory: {len(groups)} series, index {page_path(out)}")
    return 0


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-") or "runs"


def _url(args: argparse.Namespace) -> str | None:
    return getattr(args, "history_db", None) or default_url()


def parser() -> argparse.ArgumentParser:
    # SUPPRESS: the option given after the subcommand does not reset the one given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--history-db",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="sqlite:///PATH or postgresql+psycopg://... (default: $HISTORY_DB, else "
        "reports/history.sqlite)",
    )
    main = argparse.ArgumentParser(
        prog="python -m history", description="The run history.", parents=[common]
    )
    main.set_defaults(command=_page)
    main.add_argument("--scenario", help="only this scenario's runs")
    main.add_argument("--target", help="only this target's runs (a URL, or 'embedded')")
    main.add_argument("--profile", help="only this target profile's runs")
    main.add_argument("--last", type=int, default=30, help="the last N runs of each series")
    main.add_argument(
        "--out", default="reports/history.html", help="the page (default %(default)s)"
    )
    commands = main.add_subparsers(title="subcommands", metavar="{import,record}")
    imports = commands.add_parser(
        "import", parents=[common], help="record every run folder directly under DIR"
    )
    imports.add_argument("dir", metavar="DIR")
    imports.set_defaults(command=_import)
    record = commands.add_parser("record", parents=[common], help="record the run in FOLDER")
    record.add_argument("folder", metavar="FOLDER")
    record.add_argument("--label", help="the run's label, e.g. the gateway's version")
    record.set_defaults(command=_record)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.command(args)
    except (HistoryError, EntryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
