"""`make compare BASE=reports/<a> RUN=reports/<b>`: one run against a baseline.

    python -m analysis.compare BASE RUN [--threshold-pct 20]

Every figure of the two runs side by side (latency percentiles overall and per request, error
rate, throughput, gateway CPU and memory, memory per session) with its change. A change is
*flagged* when it is both material and unlikely to be noise:

- latency, throughput, CPU: more than `--threshold-pct` (20 %) and, for latency, more than
  `MIN_LATENCY_MS`; and significant, by a Mann-Whitney U test (p < 0.01) on the per-window
  values of the two runs (the p95 of each time window, the requests of each window, the CPU of
  each sample): a shift of the whole distribution, not of one lucky percentile. A percentile
  is taken over consecutive windows merged into blocks that hold at least `TAIL_SAMPLES`
  requests above it: the p99 of a 10-request window is its maximum, and two runs' maxima
  differ "significantly" on a machine a little busier in one run than in the other;
- error rate: more than one point, and significant by a two-proportion z-test (p < 0.01);
- memory (peak, memory per session): more than `--threshold-pct`; one value per run, so no
  test: marked as such. The peak of RSS against that of PSS (one run counted the gateway's
  children, the other did not) is not comparable.

Flagged changes for the worse are regressions: the exit code is 1 if there is any, else 0.
`compare.json` and `compare.md` are written into the RUN folder.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.latency import percentile
from analysis.memory import memory_series
from analysis.run_data import RunData, RunDataError, load_run
from analysis.timeline import new_window_histogram

ALPHA = 0.01
MIN_LATENCY_MS = 2.0
MIN_ERROR_POINTS = 1.0
MIN_WINDOW_REQUESTS = 5
TAIL_SAMPLES = 5  # requests above a block's percentile, at least: p50 10, p95 100, p99 500


@dataclass
class Change:
    metric: str
    base: float | None
    run: float | None
    unit: str
    worse_when: str  # "higher" or "lower"
    change_pct: float | None = None
    p_value: float | None = None
    tested: bool = True
    flagged: bool = False
    verdict: str = "same"  # same | regression | improvement | not comparable


def mann_whitney_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided p of the Mann-Whitney U test (normal approximation, tie-averaged ranks)."""
    if len(a) < 3 or len(b) < 3:
        return None
    ranks = pd.Series([*a, *b]).rank()
    n1, n2 = len(a), len(b)
    u = float(ranks.iloc[:n1].sum()) - n1 * (n1 + 1) / 2
    sd = math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    if sd == 0:
        return 1.0
    z = (u - n1 * n2 / 2) / sd
    return math.erfc(abs(z) / math.sqrt(2))


def two_proportions_p(f1: int, n1: int, f2: int, n2: int) -> float | None:
    if not n1 or not n2:
        return None
    pooled = (f1 + f2) / (n1 + n2)
    sd = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if sd == 0:
        return 1.0
    return math.erfc(abs(f1 / n1 - f2 / n2) / sd / math.sqrt(2))


def window_values(run: RunData, what: str) -> list[float]:
    """Per-window requests/s, or the percentile `what` ("95") of blocks of windows."""
    windows = [run.windows.windows[i] for i in sorted(run.windows.windows)]
    if what == "requests":
        return [
            w.requests / run.windows.width_s for w in windows if w.requests >= MIN_WINDOW_REQUESTS
        ]
    p = float(what)
    block_requests = max(MIN_WINDOW_REQUESTS, math.ceil(TAIL_SAMPLES * 100 / (100 - p)))
    values, block, count = [], new_window_histogram(), 0
    for window in windows:
        if not window.requests:
            continue
        block.add(window.histogram)
        count += window.requests
        if count >= block_requests:
            values.append(percentile(block, p) / 1000)
            block, count = new_window_histogram(), 0
    return values


def judge_change(change: Change, threshold_pct: float, min_abs: float = 0.0) -> Change:
    if change.base is None or change.run is None:
        change.verdict = "not comparable"
        return change
    delta = change.run - change.base
    change.change_pct = round(100 * delta / change.base, 1) if change.base else None
    material = abs(delta) > min_abs and (
        change.change_pct is None or abs(change.change_pct) > threshold_pct
    )
    significant = not change.tested or (change.p_value is not None and change.p_value < ALPHA)
    change.flagged = bool(material and significant)
    if change.flagged:
        worse = delta > 0 if change.worse_when == "higher" else delta < 0
        change.verdict = "regression" if worse else "improvement"
    return change


def _latency(summary: dict[str, Any], key: str | None, p: str) -> float | None:
    entry = summary.get("totals") if key is None else (summary.get("requests") or {}).get(key)
    return ((entry or {}).get("latency") or {}).get(p)


def _median(values: list[float | None]) -> float | None:
    known = sorted(v for v in values if v is not None)
    if not known:
        return None
    middle = len(known) // 2
    return known[middle] if len(known) % 2 else (known[middle - 1] + known[middle]) / 2


def compare(
    base: RunData | Sequence[RunData], run: RunData, threshold_pct: float = 20.0
) -> list[Change]:
    """`run` against a baseline: one run, or several (`make compare BASE=last:7`: the last
    comparable runs of the history), whose figure is then the median of theirs and whose
    windows, samples and requests are pooled for the same tests: a shift from what those runs
    did together, by the same rule as against one."""
    bases = [base] if isinstance(base, RunData) else list(base)

    def median_of(value: Callable[[RunData], float | None]) -> float | None:
        return _median([value(b) for b in bases])

    def pooled(values: Callable[[RunData], list[float]]) -> list[float]:
        return [v for b in bases for v in values(b)]

    changes: list[Change] = []
    for p in ("50", "95", "99"):
        change = Change(
            f"latency p{p} (overall)",
            median_of(lambda b, p=p: _latency(b.summary, None, f"p{p}_ms")),
            _latency(run.summary, None, f"p{p}_ms"),
            "ms",
            "higher",
            p_value=mann_whitney_p(
                pooled(lambda b, p=p: window_values(b, p)), window_values(run, p)
            ),
        )
        changes.append(judge_change(change, threshold_pct, MIN_LATENCY_MS))
    shared = set(run.summary.get("requests") or {})
    for b in bases:
        shared &= set(b.summary.get("requests") or {})
    overall_p95 = changes[1]
    for key in sorted(shared):
        if key.startswith("WS "):
            continue
        # The windows mix every request: a request's change is tested by the overall one.
        change = Change(
            f"latency p95 ({key})",
            median_of(lambda b, key=key: _latency(b.summary, key, "p95_ms")),
            _latency(run.summary, key, "p95_ms"),
            "ms",
            "higher",
            p_value=overall_p95.p_value,
        )
        changes.append(judge_change(change, threshold_pct, MIN_LATENCY_MS))

    def totals(r: RunData) -> dict[str, Any]:
        return r.summary.get("totals") or {}

    rt = totals(run)
    errors = Change(
        "error rate (overall)",
        median_of(lambda b: totals(b).get("error_rate_pct")),
        rt.get("error_rate_pct"),
        "%",
        "higher",
        p_value=two_proportions_p(
            sum(totals(b).get("failures", 0) for b in bases),
            sum(totals(b).get("requests", 0) for b in bases),
            rt.get("failures", 0),
            rt.get("requests", 0),
        ),
    )
    changes.append(judge_change(errors, 0.0, MIN_ERROR_POINTS))
    throughput = Change(
        "throughput (requests/s)",
        median_of(lambda b: totals(b).get("requests_per_s")),
        rt.get("requests_per_s"),
        "/s",
        "lower",
        p_value=mann_whitney_p(
            pooled(lambda b: window_values(b, "requests")), window_values(run, "requests")
        ),
    )
    changes.append(judge_change(throughput, threshold_pct))

    def mean_cpu(r: RunData) -> float | None:
        cpu = r.column("cpu_pct")
        return round(float(cpu.mean()), 2) if not cpu.empty else None

    cpu = Change(
        "gateway CPU, mean (%)",
        median_of(mean_cpu),
        mean_cpu(run),
        "%",
        "higher",
        p_value=mann_whitney_p(
            pooled(lambda b: list(b.column("cpu_pct"))), list(run.column("cpu_pct"))
        ),
    )
    changes.append(judge_change(cpu, threshold_pct, 2.0))

    def peak(r: RunData) -> float | None:
        memory = memory_series(r)[1]
        return round(float(memory.max()), 1) if not memory.empty else None

    base_figures = {memory_series(b)[0] for b in bases}
    run_figure = memory_series(run)[0]
    memory = Change(
        "gateway memory, peak (MB)", median_of(peak), peak(run), "MB", "higher", tested=False
    )
    if base_figures != {run_figure}:
        # RSS of one process against PSS of a tree (children counted in one run only, say).
        shown = "/".join(sorted(f or "-" for f in base_figures))
        memory.metric = f"gateway memory, peak (MB; {shown} against {run_figure or '-'})"
        memory.verdict = "not comparable"
        changes.append(memory)
    else:
        changes.append(judge_change(memory, threshold_pct, 5.0))
    return changes


def _report(folder: Path) -> dict[str, Any]:
    path = folder / "report.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def markdown(base: Path | str, run: Path, changes: list[Change], threshold_pct: float) -> str:
    """`base`: the baseline's folder, or what stands for several (`median of the last 7 ...`)."""
    against = base.name if isinstance(base, Path) else base
    lines = [
        f"# {run.name} against {against}",
        "",
        f"Flagged: a change over {threshold_pct:g} % (latency: and over {MIN_LATENCY_MS:g} ms; "
        f"errors: over {MIN_ERROR_POINTS:g} point) that is significant (p < {ALPHA}); "
        'p "too few": the runs hold too few requests to test it, so it is not flagged.',
        "",
        "| metric | baseline | run | change | p | result |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for c in changes:
        shown = "—" if c.change_pct is None else f"{c.change_pct:+g} %"
        p = "no test" if not c.tested else ("too few" if c.p_value is None else f"{c.p_value:.2g}")
        mark = {"regression": "❌ regression", "improvement": "✅ improvement"}.get(
            c.verdict, c.verdict
        )
        base, run = f"{_num(c.base)} {c.unit}", f"{_num(c.run)} {c.unit}"
        lines.append(f"| {c.metric} | {base} | {run} | {shown} | {p} | {mark} |")
    return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.compare", description=__doc__.split("\n")[0]
    )
    parser.add_argument("base", type=Path, help="the baseline run's folder")
    parser.add_argument("run", type=Path, help="the run to compare with it")
    parser.add_argument("--threshold-pct", type=float, default=20.0)
    args = parser.parse_args(argv)
    try:
        base, run = load_run(args.base), load_run(args.run)
    except RunDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if base.scenario != run.scenario:
        print(f"note: comparing {run.scenario} against a {base.scenario} baseline", file=sys.stderr)
    changes = compare(base, run, args.threshold_pct)
    base_verdict = (_report(args.base).get("verdict") or {}).get("status")
    return write_comparison(str(args.base), base_verdict, args.run, changes, args.threshold_pct)


def write_comparison(
    base: str,
    base_verdict: str | None,
    run: Path,
    changes: list[Change],
    threshold_pct: float,
    heading: Path | str | None = None,
) -> int:
    """`compare.json` and `compare.md` into the run's folder, the table on stdout; the exit
    code: 1 if any change is a regression, else 0. `base` names the baseline (a folder, or
    `last:7`); `heading` what the title calls it (default: the folder's name)."""
    regressions = [c for c in changes if c.verdict == "regression"]
    result = {
        "base": base,
        "run": str(run),
        "threshold_pct": threshold_pct,
        "alpha": ALPHA,
        "verdicts": {
            "base": base_verdict,
            "run": (_report(run).get("verdict") or {}).get("status"),
        },
        "changes": [asdict(c) for c in changes],
        "regressions": [c.metric for c in regressions],
    }
    (run / "compare.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    text = markdown(heading if heading is not None else Path(base), run, changes, threshold_pct)
    (run / "compare.md").write_text(text, encoding="utf-8")
    print(text)
    print(f"{len(regressions)} regression(s): {', '.join(result['regressions']) or 'none'}")
    return 1 if regressions else 0


if __name__ == "__main__":
    raise SystemExit(main())
