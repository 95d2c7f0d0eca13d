"""`make all`: every scenario of the plan in sequence, and one summary of them all.

    python -m suite.all [--scenarios sessions,webhooks,...] [--time-scale F] [--pause 30]
                        [--timeout 600] [--target URL] [--lang en|pt-BR] [--out DIR]

Each scenario is one headless Locust run (a process of its own, with its own embedded gateway
unless `--target` is given) writing its report into `<out>/<scenario>/`. Between runs the
runner pauses (`--pause`, 30 s as in the plan) so that the gateway recovers. A run that passes
`--timeout` (600 s as in the plan) is interrupted the way Ctrl-C does it, so that it still writes
its report, marked partial, and is killed if it does not end 30 s later. Endurance runs its
1-hour variant, as the plan's runner does (`--duration 3600`), times `--time-scale`.

`<out>` (default `reports/suite-<UTC timestamp>/`) gets `summary.json` and `summary.md`: each
run's verdict, figures and a link to its report. The exit code is 1 if any run Failed, timed out
or could not run; else 3 if any was Degraded; else 0.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from shapes.scenario import ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parent.parent
PLAN = ("sessions", "webhooks", "messages", "stress", "endurance")
ENDURANCE_VARIANT = 3600 / 86_400  # the plan's runner: endurance --duration 3600
KILL_AFTER_S = 30.0
USAGE_ERROR = 2


def scale_for(scenario: str, time_scale: float) -> float:
    return time_scale * (ENDURANCE_VARIANT if scenario == "endurance" else 1.0)


def run_one(
    scenario: str, folder: Path, time_scale: float, timeout_s: float, target: str, lang: str
) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "locust", "-f", "locustfile.py", "--headless", "--only-summary",
        "--scenario", scenario, "--time-scale", repr(time_scale), "--report-dir", str(folder),
        "--lang", lang,
    ]  # fmt: skip
    if target:
        command += ["-H", target, *(["--allow-remote"] if os.environ.get("ALLOW_REMOTE") else [])]
    started = time.monotonic()
    log = (folder.parent / f"{scenario}.log").open("w", encoding="utf-8")
    proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    timed_out = False
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.send_signal(signal.SIGINT)  # as Ctrl-C: the run writes what it measured
        try:
            proc.wait(KILL_AFTER_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        proc.wait(KILL_AFTER_S)
        raise
    finally:
        log.close()
    return outcome(scenario, folder, proc.returncode, time.monotonic() - started, timed_out)


def outcome(
    scenario: str, folder: Path, code: int, elapsed: float, timed_out: bool
) -> dict[str, Any]:
    report_path = folder / "report.json"
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else {}
    verdict = (report.get("verdict") or {}).get("status")
    latency = report.get("latency") or {}
    totals = {}
    summary_path = folder / "summary.json"
    if summary_path.is_file():
        totals = json.loads(summary_path.read_text(encoding="utf-8")).get("totals") or {}
    status = verdict or ("usage error" if code == USAGE_ERROR else "no report")
    if timed_out:
        status = "timeout"
    return {
        "scenario": scenario,
        "status": status,
        "verdict": verdict,
        "exit_code": code,
        "elapsed_s": round(elapsed, 1),
        "partial": bool((report.get("run") or {}).get("partial")) or timed_out,
        "reasons": [r["name"] for r in (report.get("verdict") or {}).get("reasons", [])],
        "requests": totals.get("requests"),
        "error_rate_pct": totals.get("error_rate_pct"),
        "p95_ms": latency.get("p95_ms"),
        "p99_ms": latency.get("p99_ms"),
        "report": f"{scenario}/report.html" if (folder / "report.html").is_file() else None,
        "log": f"{scenario}.log",
    }


def suite_exit_code(runs: list[dict[str, Any]]) -> int:
    statuses = {r["status"] for r in runs}
    if statuses - {"approved", "degraded"}:
        return 1
    return 3 if "degraded" in statuses else 0


def markdown(suite: dict[str, Any]) -> str:
    lines = [
        "# Performance suite: WhatsApp gateway",
        "",
        f"- **Started**: {suite['started_at']}",
        f"- **Time scale**: {suite['time_scale']:g} (endurance: its 1-hour variant, scaled)",
        f"- **Target**: {suite['target'] or 'embedded reference gateway (one per run)'}",
        f"- **Result**: {suite['result']} (exit code {suite['exit_code']})",
        "",
        "| scenario | status | reasons | time, s | requests | errors % | p95 ms | p99 ms | report"
        " |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in suite["runs"]:
        report = f"[report]({r['report']})" if r["report"] else f"[log]({r['log']})"
        cells = [
            r["scenario"], r["status"] + (" (partial)" if r["partial"] else ""),
            ", ".join(r["reasons"]) or "—", f"{r['elapsed_s']:g}", _cell(r["requests"]),
            _cell(r["error_rate_pct"]), _cell(r["p95_ms"]), _cell(r["p99_ms"]), report,
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    return "—" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def write(out: Path, suite: dict[str, Any]) -> None:
    (out / "summary.json").write_text(json.dumps(suite, indent=2) + "\n", encoding="utf-8")
    (out / "summary.md").write_text(markdown(suite), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suite.all", description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", default=",".join(PLAN))
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--pause", type=float, default=30.0, help="seconds between runs")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    parser.add_argument("--target", default="", help="the gateway (default: embedded, per run)")
    parser.add_argument("--lang", choices=["en", "pt-BR"], default="en")
    parser.add_argument("--out", type=Path, help="default: reports/suite-<UTC timestamp>/")
    args = parser.parse_args(argv)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if args.time_scale <= 0 or args.pause < 0 or args.timeout <= 0:
        parser.error("--time-scale and --timeout must be positive, --pause not negative")
    try:
        planned = {
            s: load_scenario(s, time_scale=scale_for(s, args.time_scale)).duration_s()
            for s in scenarios
        }
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    started = dt.datetime.now(dt.UTC)
    out = args.out or ROOT / "reports" / f"suite-{started:%Y%m%dT%H%M%SZ}"
    out.mkdir(parents=True, exist_ok=True)
    for scenario, seconds in planned.items():
        if seconds is not None and seconds > args.timeout:
            print(
                f"note: {scenario} plans {seconds:.0f} s, more than the {args.timeout:.0f} s "
                "timeout: it will be interrupted and its report marked partial",
                file=sys.stderr,
            )
    suite: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "time_scale": args.time_scale,
        "target": args.target,
        "pause_s": args.pause,
        "timeout_s": args.timeout,
        "runs": [],
    }
    interrupted = False
    try:
        for number, scenario in enumerate(scenarios):
            if number and args.pause:
                print(f"[suite] pause {args.pause:g} s for the gateway to recover", flush=True)
                time.sleep(args.pause)
            print(f"[suite] {number + 1}/{len(scenarios)} {scenario}", flush=True)
            result = run_one(
                scenario,
                out / scenario,
                scale_for(scenario, args.time_scale),
                args.timeout,
                args.target,
                args.lang,
            )
            suite["runs"].append(result)
            print(
                f"[suite] {scenario}: {result['status']} in {result['elapsed_s']:g} s", flush=True
            )
            write(out, {**suite, "result": "running", "exit_code": None})
    except KeyboardInterrupt:
        interrupted = True
    code = suite_exit_code(suite["runs"]) if suite["runs"] and not interrupted else 1
    result = {0: "approved", 3: "degraded", 1: "failed"}[code]
    if interrupted:
        result = "interrupted"
    suite.update(result=result, exit_code=code, ended_at=dt.datetime.now(dt.UTC).isoformat())
    write(out, suite)
    print(f"[suite] {result.upper()}: {out / 'summary.md'}", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
