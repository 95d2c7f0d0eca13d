"""bench.inspector: its figures read against the A around them, its verdicts, and a tiny run."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

import pytest

from bench import inspector
from bench.gateway import Run
from tests.nodegw import unavailable


def measured(requests: int, cpu_s: float, samples: int = 0) -> inspector.Measured:
    return inspector.Measured(Run(requests, 0, 0, 1.0, 1.0, 2.0, 4.0), cpu_s, samples)


def test_each_condition_is_read_against_the_a_before_and_after_it() -> None:
    # The machine speeds up by a tenth a round: A 1,000, 1,100, 1,210 requests a CPU-second.
    # B, in the middle of each round, costs nothing: it sits on the mean of its two A's.
    results = {
        "A": [measured(1000, 1.0), measured(1100, 1.0), measured(1210, 1.0)],
        "B": [measured(1050, 1.0), measured(1155, 1.0)],
        "C": [measured(945, 1.0), measured(1039, 1.0)],  # 10 % under
        "D": [measured(840, 1.0), measured(924, 1.0)],
    }
    assert inspector.paired(results, "B", inspector.capacity) == pytest.approx([1.0, 1.0])
    assert inspector.paired(results, "C", inspector.capacity) == pytest.approx([0.9, 0.9], 1e-3)
    assert inspector.paired(results, "A", inspector.rate) == pytest.approx([1.1, 1.1])
    # Half the requests in the same CPU time: the capacity halves, whatever the rate did.
    slow = measured(500, 1.0)
    assert slow.per_cpu_second == 500 and inspector.capacity(slow) == 500


def test_a_verdict_says_whether_the_spread_shows_it() -> None:
    met = inspector.verdict([0.998, 0.995, 1.001, 0.997, 0.999], 0.01)
    assert met.startswith("**met** (cost +0.2%, interval -0.1% to +0.5%)")
    assert inspector.verdict([0.90, 0.92, 0.88, 0.9, 0.91], 0.05).startswith(
        "**not met** (cost +10.0%"
    )
    spans = inspector.verdict([0.97, 1.02, 0.995, 0.99, 1.0], 0.01)
    assert spans.startswith("**met at the median**, not shown by this run (cost +0.5%")
    assert spans.endswith("interval -2.0% to +3.0%: it spans the target)")
    spans = inspector.verdict([0.97, 1.02, 0.98, 0.98, 0.99], 0.01)
    assert spans.startswith("**not met at the median**")
    # Fewer than five rounds bound the median too loosely to show anything.
    few = inspector.verdict([0.998, 0.995, 1.001], 0.01)
    assert few.endswith("(cost +0.2%, interval -0.1% to +0.5%: 3 rounds, too few to show it)")
    assert inspector.confidence(5) == pytest.approx(0.9375)


def test_the_table_has_a_row_per_condition_and_the_targets() -> None:
    results = {
        "A": [measured(20000, 1.0), measured(20000, 1.0)],
        "B": [measured(19900, 1.0, 1)],
        "C": [measured(18500, 1.0, 1)],
        "D": [measured(17000, 1.0, 1)],
    }
    results["D"][0].probe_share = 0.0005
    snapshot = {"held_s": 1.8, "bytes": 7 * 2**20, "heap_used_mb": 13.5, "load_rate": 19000.0,
                "loop_held_ms": 290.0}  # fmt: skip
    args = argparse.Namespace(window=4, rounds=1)
    text = inspector.render(results, snapshot, args, "v20.0.0")
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(rows) == 5 and all(row.count(" | ") == 10 for row in rows)
    assert rows[2].startswith("| B: 1 Hz sampling (NodeInspector) | 19,900 (19,900-19,900) ")
    assert "| 0.995 (0.995-0.995) | +0.5% |" in rows[2] and rows[2].endswith("| 1.00/s | 0 |")
    assert "1 Hz sampling (B) under 1% of the gateway's throughput: **met at the median**" in text
    assert "under 5%: **not met at the median**, not shown by this run (cost +7.5%" in text
    assert "0.050 (0.050-0.050) % of the gateway's time, 0.50 ms a second" in text
    assert "7.0 MB written, the call held 1.80 s" in text and "stopped 290 ms" in text


@pytest.mark.slow  # ~20 s
@pytest.mark.skipif(unavailable() is not None, reason=unavailable() or "")
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores")
def test_a_tiny_run_prints_every_condition_and_the_snapshot() -> None:
    command = [sys.executable, "-m", "bench.inspector", "--rounds", "1", "--window", "1",
               "--warm-up", "1", "--no-write"]  # fmt: skip
    done = subprocess.run(command, cwd=inspector.ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    for name in ("A", "B", "C", "D"):
        assert f"  round 1, {name}: " in out
    assert "  round 2, A: " in out  # the closing A
    rows = [line for line in out.splitlines() if line.startswith("| ") and ": " in line[:5]]
    assert [row[2] for row in rows] == ["A", "B", "C", "D"]
    assert all(row.endswith(" | 0 |") for row in rows), rows  # every request answered 202
    assert "Targets: 1 Hz sampling (B) under 1% of the gateway's throughput: **" in out
    assert "% of the gateway's time" in out  # D's profile was read
    assert "One heap snapshot under the same load" in out
