"""The suite's Node inspector (`--node-inspect`) against the real gateways (real_gateway).

Each gateway runs with V8's inspector on loopback inside the namespace (the `*_inspected`
fixtures), and a short Locust run of the suite, inside the namespace too, samples its heap,
collections and event loop every second, records a CPU profile and the live allocation sites,
and removes its probe at the end. What is sent is what a real gateway answers here, where no
session can pair: Evolution creates a few dozen instances (the sessions scenario, its rates
lowered so that the run lasts long enough to be sampled); WAHA core runs one session only,
`default`, which never pairs: its load is the messages scenario's users waiting for that
session to be ready, each polling its status once a second, with a wait longer than the run
(a shorter one would end the run, as test_profiles shows). No message is ever sent: the one
number given is the one the realgw notes allow for a probe of an unpaired session.

`SUITE_LONG_REAL=1` adds a 10-minute run against Evolution with a steady number of instances,
whose leak analysis must not find a leak.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from analysis.cpu_profile import hot_functions
from monitors.node_profiling import CPU_PROFILE_FILE, RECORD_FILE
from monitors.storage import read_samples
from tests.e2e.conftest import ROOT, Run, locust_command, run_command
from tests.realgw.gateways import BUILD, RealGateway
from tests.realgw.test_profiles import PROBE_NUMBER, no_made_up_numbers  # noqa: F401

pytestmark = pytest.mark.real_gateway

SCENARIOS = ROOT / "conf" / "scenarios"
LONG = os.environ.get("SUITE_LONG_REAL") == "1"
LONG_S = 610.0
# Each user waits this long for its session to be ready: longer than any run here.
NEVER_READY_S = 3600


def scenario_file(path: Path, base: str, **changes: Any) -> str:
    """`conf/scenarios/<base>.yaml` with top-level fields replaced, written to `path`."""
    data = yaml.safe_load((SCENARIOS / f"{base}.yaml").read_text(encoding="utf-8"))
    data.pop("criteria", None)  # the shipped criteria, found by name from conf/
    path.write_text(yaml.safe_dump({**data, **changes}), encoding="utf-8")
    return str(path)


def inspected_run(
    gateway: RealGateway, scenario: str, report_dir: Path, *extra: str,
    time_scale: float = 1.0, timeout: float = 300.0,
) -> Run:  # fmt: skip
    """A Locust run of the suite inside the namespace, with the gateway's inspector."""
    command = locust_command(
        scenario, report_dir, "--target-pid", str(gateway.pid),
        "--node-inspect", gateway.inspect_address, *extra,
        time_scale=time_scale, host=gateway.url,
    )  # fmt: skip
    return run_command(gateway.command(command), report_dir, timeout=timeout)


def probe_left(gateway: RealGateway) -> str:
    """`typeof globalThis.__loadSuiteProbe` in the gateway, from a CdpSession of our own
    attached inside the namespace after the run."""
    code = (
        "from monitors.inspector import CdpSession, debugger_url, evaluate\n"
        f"session = CdpSession(debugger_url('127.0.0.1', {gateway.inspect_port}))\n"
        "print(evaluate(session, 'typeof globalThis.__loadSuiteProbe'))\n"
        "session.close()\n"
    )
    done = gateway.run([str(ROOT / ".venv" / "bin" / "python"), "-c", code], cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def gateway_samples(run: Run) -> list[dict[str, Any]]:
    rows = read_samples(run.report_dir / "samples.csv")
    return [row for row in rows if row.get("source") == "gateway"]


def assert_every_second(rows: list[dict[str, Any]], figure: str) -> int:
    """The figure is in (nearly) every gateway sample, and the samples are a second apart."""
    times = [row["t"] for row in rows if row.get(figure) is not None]
    assert len(times) >= 10, (figure, len(times))
    span = times[-1] - times[0]
    assert len(times) >= 0.9 * span, (figure, len(times), span)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) <= 2.5, (figure, max(gaps))
    return len(times)


def where(entry: dict[str, Any]) -> str:
    line = entry.get("line")
    return f"{entry.get('file') or '(native)'}{'' if line is None else f':{line}'}"


def describe(kind: str, run: Run) -> None:
    """The figures the issue asks about, printed for the report."""
    node, leak = run.report["node"], run.report["analysis"]["leak"]
    heap, gc, loop = node["heap"], node["gc"], node["event_loop"]
    print(
        f"\n{kind}: exit {run.returncode} ({run.verdict}) after {run.elapsed_s:.0f} s; "
        f"heap used peak {heap['used_peak_mb']} MB, floor first {heap.get('floor_first_mb')} "
        f"last {heap.get('floor_last_mb')} MB ({heap.get('floors', 0)} floors); GC pause share "
        f"{gc['pause_share']:.2%} ({gc['major']} major, {gc['per_s']}/s); event-loop delay "
        f"p50 {loop['p50_ms']} ms, p99 peak {loop['p99_ms_peak']} ms, max {loop['max_ms']} ms"
    )
    if node.get("cpu"):
        print(f"  hot functions (CPU, idle {node['cpu']['idle_share']:.0%}):")
        for f in node["cpu"]["functions"][:5]:
            print(f"    {f['name']}  {where(f)}  self {f['self_ms']:.1f} ms")
    print("  allocation sites (live at the end):")
    for site in node["allocations"]["sites"][:5]:
        print(f"    {site['name']}  {where(site)}  {site['bytes'] / 2**20:.2f} MB")
    shown = ("mb_per_hour", "judged", "detected", "reason", "memory_source", "note")
    print("  leak:", {key: leak.get(key) for key in shown})


def assert_inside_recorded(run: Run, gateway: RealGateway, *, cpu: bool = True) -> None:
    """What the inspector gave the run: figures each second, the profiles, no notes but the
    CPU profiler's hold, and the probe gone from the gateway afterwards."""
    rows = gateway_samples(run)
    for figure in ("heap_used_mb", "gc_count", "gc_pause_ms", "eventloop_delay_p99_ms"):
        assert_every_second(rows, figure)
    record = json.loads((run.report_dir / RECORD_FILE).read_text(encoding="utf-8"))
    assert record["notes"] == [] and record["probe"], record
    node = run.report["node"]
    # Only what the suite's own recording cost the gateway: its CPU profiler's start.
    held = "starting the CPU profiler held the gateway"
    assert all(note.startswith(held) for note in node["notes"]), node["notes"]
    assert len(node["notes"]) == int(cpu), node["notes"]
    assert node["allocations"]["sites"], node["allocations"]
    if cpu:
        functions = node["cpu"]["functions"]
        assert functions, node["cpu"]
        # Files of the gateway's own tree are shown relative to it (dist/..., node_modules/...).
        home = f"file://{BUILD}/src/{gateway.kind}/"
        own = [f for f in functions if f["url"].startswith(home)]
        assert own and all(not f["file"].startswith("/") for f in own), functions
        # Its own compiled code (dist/) is in the profile, if not always among the top ten
        # by self time (Evolution spends its time in Prisma's query compiler).
        ranked = hot_functions(run.report_dir / CPU_PROFILE_FILE, 10_000)["functions"]
        dist = [(i + 1, f) for i, f in enumerate(ranked) if f["file"].startswith("dist/")]
        assert dist, "no function of the gateway's dist/ in its CPU profile"
        print(f"  {gateway.kind}'s own dist/ functions by self time (rank):")
        for rank, f in dist[:3]:
            print(f"    {rank}. {f['name']}  {where(f)}  self {f['self_ms']:.1f} ms")
    assert probe_left(gateway) == "undefined"


@pytest.mark.timeout(300)
def test_evolution_inside_while_creating_instances(
    evolution_gateway_inspected: RealGateway, tmp_path: Path
) -> None:
    """The sessions scenario's three phases, a fiftieth of its rates at a quarter of its
    length: 48 instances over 45 s, deleted by the suite at the end."""
    gateway = evolution_gateway_inspected
    phases = [
        {"duration": "60s", "arrival_rate": 0.2},
        {"duration": "60s", "arrival_rate": 1},
        {"duration": "60s", "arrival_rate": 2},
    ]
    scenario = scenario_file(
        tmp_path / "sessions.yaml", "sessions", load={"model": "arrivals", "phases": phases}
    )
    run = inspected_run(
        gateway, scenario, tmp_path / "run", "--target-profile", "evolution",
        "--api-key", gateway.api_key, "--cpu-profile", time_scale=0.25,
    )  # fmt: skip
    assert run.returncode in (0, 1, 3), run.explain()
    describe("evolution", run)
    created = run.summary["sessions"]["created"]
    assert created >= 40 and run.summary["totals"]["error_rate_pct"] < 5.0, run.summary["totals"]
    assert run.summary["sessions"]["deleted"] == created
    assert_inside_recorded(run, gateway)
    assert gateway.wait_count(0, timeout_s=30) == 0


@pytest.mark.timeout(300)
def test_waha_inside_while_its_session_waits(
    waha_gateway_inspected: RealGateway, tmp_path: Path
) -> None:
    """20 message senders on `default`, which stays STARTING: each polls its status once a
    second for the 40 s of the run, and sends nothing."""
    gateway = waha_gateway_inspected
    created = gateway.request("POST", "/api/sessions", {"name": "default", "start": True})
    assert created.status == 201, created.body
    stages = [{"duration": "5s", "target": 20}, {"duration": "35s", "target": 20}]
    users = {"MessageSender": {"options": {"ready_timeout_s": NEVER_READY_S}}}
    scenario = scenario_file(
        tmp_path / "messages.yaml", "messages",
        load={"model": "stages", "stages": stages}, users=users,
    )  # fmt: skip
    try:
        run = inspected_run(
            gateway, scenario, tmp_path / "run", "--target-profile", "waha",
            "--api-key", gateway.api_key, "--sessions", "default",
            "--recipients", PROBE_NUMBER, "--cpu-profile",
        )  # fmt: skip
        assert run.returncode in (0, 1, 3), run.explain()
        describe("waha", run)
        polls = run.summary["requests"]["GET /api/sessions/{session_id}"]
        print(f"  waha: {polls['requests']} status polls, {polls['failures']} failed")
        assert polls["requests"] >= 400 and run.summary["totals"]["error_rate_pct"] < 5.0
        assert "POST /api/sendText" not in run.summary["requests"]
        assert not run.summary["messages"]["accepted"]
        assert not run.summary["stopped_because"], run.summary["stopped_because"]
        assert_inside_recorded(run, gateway)
    finally:
        gateway.delete("default")


@pytest.mark.skipif(not LONG, reason="a 10-minute run: set SUITE_LONG_REAL=1")
@pytest.mark.timeout(LONG_S + 300)
def test_evolution_ten_minutes_steady_is_no_leak(
    evolution_gateway_inspected: RealGateway, tmp_path: Path
) -> None:
    """The endurance scenario's message senders, flat, scaled to just over 10 minutes: 20
    instances created at the start and held, each polled for its state once a second (never
    ready, so nothing is sent). The heap floor is no leak."""
    gateway = evolution_gateway_inspected
    users = {"MessageSender": {"options": {"ready_timeout_s": NEVER_READY_S}}}
    load = {"model": "endurance", "duration": "24h", "users": 20, "curve": "flat"}
    scenario = scenario_file(tmp_path / "endurance.yaml", "endurance", load=load, users=users)
    run = inspected_run(
        gateway, scenario, tmp_path / "run", "--target-profile", "evolution",
        "--api-key", gateway.api_key, "--recipients", PROBE_NUMBER,
        time_scale=LONG_S / 86_400, timeout=LONG_S + 240,
    )  # fmt: skip
    assert run.returncode in (0, 1, 3), run.explain()
    describe("evolution, 10 min", run)
    leak = run.report["analysis"]["leak"]
    print("  leak:", json.dumps(leak, indent=None))
    summary = run.summary
    assert summary["duration_s"] >= 600, summary["duration_s"]
    assert summary["sessions"]["created"] == 20 and summary["totals"]["error_rate_pct"] < 1.0
    assert "POST /message/sendText/{session_id}" not in summary["requests"]
    assert not leak["detected"], leak
    assert leak["judged"] or leak.get("reason") == "too_short", leak
    assert_inside_recorded(run, gateway, cpu=False)
    assert gateway.wait_count(0, timeout_s=60) == 0
