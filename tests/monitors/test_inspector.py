"""The Node inspector client against real Node.js processes (`node --inspect=127.0.0.1:0`).

Each test starts a small script written here, attaches over the Chrome DevTools Protocol and
checks a figure against what the script does: a 200 ms block every second reads as an
event-loop delay of at least 180 ms, garbage made at a known pace reads as collections, the
probe is gone from the process at the end, and the recordings land in the run's folder.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest

from monitors.inspector import (
    CdpSession,
    InspectorError,
    NodeInspector,
    debugger_url,
    evaluate,
    parse_address,
)
from monitors.node_profiling import (
    ALLOCATIONS_FILE,
    CPU_PROFILE_FILE,
    RECORD_FILE,
    SNAPSHOT_FILES,
    NodeProfiling,
    ProfilingError,
    ProfilingPlan,
    cpu_window,
)

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed (apt install nodejs)")
LISTENING = re.compile(r"Debugger listening on ws://([\d.]+:\d+)/")

BLOCKING = """
const keep = [];
function blockEventLoop(ms) { const end = Date.now() + ms; while (Date.now() < end) {} }
function churn() { const a = []; for (let i = 0; i < 20000; i++) a.push({ i, s: 'x' + i }); }
setInterval(() => blockEventLoop(200), 1000);
setInterval(churn, 20);
setInterval(() => keep.push(new Array(10000).fill(keep.length)), 50);  // 1.6 MB/s held
"""


@pytest.fixture
def node_script(tmp_path: Path) -> Iterator:
    started: list[subprocess.Popen[str]] = []

    def start(source: str) -> str:
        script = tmp_path / f"script{len(started)}.js"
        script.write_text(source, encoding="utf-8")
        proc = subprocess.Popen(
            [NODE or "node", "--inspect=127.0.0.1:0", str(script)],
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        assert proc.stderr is not None
        for line in proc.stderr:
            found = LISTENING.search(line)
            if found:
                return found.group(1)
        raise AssertionError("node did not announce its inspector")

    yield start
    for proc in started:
        proc.kill()
        proc.wait(5)


def samples_over(inspector: NodeInspector, seconds: float) -> list[dict]:
    taken = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        gevent.sleep(1.0)
        taken.append(inspector.sample())
    return taken


def test_addresses_are_loopback_unless_allowed() -> None:
    assert parse_address("127.0.0.1:9229") == ("127.0.0.1", 9229)
    assert parse_address("[::1]:9229") == ("::1", 9229)
    with pytest.raises(InspectorError, match="not a loopback address"):
        parse_address("10.1.2.3:9229")
    assert parse_address("10.1.2.3:9229", allow_remote=True) == ("10.1.2.3", 9229)
    for bad in ("9229", "127.0.0.1:", "127.0.0.1:99999", "host:port"):
        with pytest.raises(InspectorError, match="expected HOST:PORT"):
            parse_address(bad)


def test_nothing_listening_is_one_line() -> None:
    from tests.e2e.conftest import free_port

    with pytest.raises(InspectorError, match=r"no Node inspector at 127\.0\.0\.1:.*--inspect="):
        debugger_url("127.0.0.1", free_port(), timeout_s=2)


def test_cpu_windows() -> None:
    assert cpu_window("") == (None, None)
    assert cpu_window("run") == (0.0, None)
    assert cpu_window("60:120") == (60.0, 120.0)
    for bad in ("60", "120:60", "a:b", "-5:10"):
        with pytest.raises(ProfilingError, match="expected FROM:TO"):
            cpu_window(bad)


def test_event_loop_gc_and_heap_figures(node_script) -> None:
    inspector = NodeInspector.attach(node_script(BLOCKING))
    try:
        assert inspector.probe and inspector.notes == []
        taken = samples_over(inspector, 4.5)
    finally:
        inspector.close()
    later = taken[1:]  # the first has no previous sample to count collections from
    assert max(s["eventloop_delay_max_ms"] for s in later) >= 180, later
    assert all(s["gc_count"] > 0 and s["gc_pause_ms"] > 0 for s in later), later
    assert all(0 < s["heap_used_mb"] <= s["heap_total_mb"] for s in taken)
    assert all(s["node_rss_mb"] > s["heap_used_mb"] for s in taken)


def test_the_probe_is_removed_at_the_end(node_script) -> None:
    address = node_script("setInterval(() => {}, 1000);")
    inspector = NodeInspector.attach(address)
    inspector.sample()
    inspector.close()
    session = CdpSession(debugger_url(*parse_address(address)))
    try:
        assert evaluate(session, "typeof globalThis.__loadSuiteProbe") == "undefined"
    finally:
        session.close()


def record_run(address: str, plan: ProfilingPlan, folder: Path, run_s: float, **kw) -> None:
    """A run of `run_s` seconds recorded into `folder` (warm-up after a third of it)."""
    node = NodeProfiling.attach(address, plan, allow_remote=False)
    for name, value in kw.items():
        setattr(node, name, value)
    try:
        node.start(folder, planned_s=run_s, warmup_s=run_s / 3)
        gevent.sleep(run_s)
        node.finish()
    finally:
        node.close()


def test_recordings_land_in_the_run_folder(node_script, tmp_path: Path) -> None:
    plan = ProfilingPlan(allocations=True, cpu_from_s=0.0, heap_snapshots=True)
    folder = tmp_path / "run"
    folder.mkdir()
    record_run(node_script(BLOCKING), plan, folder, 3.0)
    record = json.loads((folder / RECORD_FILE).read_text())
    assert record["notes"] == [] and record["probe"] is True
    cpu = json.loads((folder / CPU_PROFILE_FILE).read_text())
    names = {n["callFrame"]["functionName"] for n in cpu["nodes"]}
    assert "blockEventLoop" in names
    allocations = json.loads((folder / ALLOCATIONS_FILE).read_text())
    assert allocations["head"]["children"] and allocations["samples"]
    for label in ("warm", "end"):
        snapshot = folder / SNAPSHOT_FILES[label]
        assert json.loads(snapshot.read_text())["snapshot"]["node_count"] > 1000
        assert record["recorded"]["snapshots"][label]["bytes"] == snapshot.stat().st_size
    assert record["recorded"]["cpu"]["file"] == CPU_PROFILE_FILE


def test_a_snapshot_over_the_limit_is_skipped_with_a_note(node_script, tmp_path: Path) -> None:
    plan = ProfilingPlan(allocations=False, heap_snapshots=True, heap_snapshot_max_mb=1.0)
    record_run(node_script(BLOCKING), plan, tmp_path, 0.6, heap_used_mb=lambda: 5.0)
    assert not any(tmp_path.glob("*.heapsnapshot"))
    notes = json.loads((tmp_path / RECORD_FILE).read_text())["notes"]
    assert notes == [
        f"heap snapshot {label!r} skipped: the heap was 5 MB, over --heap-snapshot-max-mb 1"
        for label in ("warm", "end")
    ]
