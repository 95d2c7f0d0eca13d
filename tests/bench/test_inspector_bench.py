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


def measured(requests: int, cpu_s: float, samples: int = 0, at: float = 0.0) -> inspector.Measured:
    return inspector.Measured(Run(requests, 0, 0, 1.0, 1.0, 2.0, 4.0), cpu_s, samples, at=at)


def test_each_condition_is_read_against_a_at_its_moment() -> None:
    # The machine speeds up by 400 requests a CPU-second a round (a window every second):
    # A 1,000 at 0 s, 1,400 at 4 s, 1,800 at 8 s. B, a second after each A, costs nothing:
    # it sits on the line between them; C is 10 % under it.
    results = {
        "A": [measured(1000, 1.0, at=0), measured(1400, 1.0, at=4), measured(1800, 1.0, at=8)],
        "B": [measured(1100, 1.0, at=1), measured(1500, 1.0, at=5)],
        "C": [measured(1080, 1.0, at=2), measured(1440, 1.0, at=6)],
        "D": [measured(1000, 1.0, at=3), measured(1000, 1.0, at=7)],
    }
    assert inspector.paired(results, "B", inspector.capacity) == pytest.approx([1.0, 1.0])
    assert inspector.paired(results, "C", inspector.capacity) == pytest.approx([0.9, 0.9])
    assert inspector.paired(results, "A", inspector.rate) == pytest.approx([1.4, 1800 / 1400])
    # Half the requests in the same CPU time: the capacity halves, whatever the rate did.
    slow = measured(500, 1.0)
    assert slow.per_cpu_second == 500 and inspector.capacity(slow) == 500


def test_a_verdict_says_whether_the_spread_shows_it() -> None:
    met = inspector.verdict([0.998, 0.995, 1.001, 0.997, 0.999], 0.01)
    assert met == "**met** (cost +0.2%, 94% interval -0.1% to +0.5%)"
    assert inspector.verdict([0.90, 0.92, 0.88, 0.9, 0.91], 0.05).startswith(
        "**not met** (cost +10.0%"
    )
    spans = inspector.verdict([0.97, 1.02, 0.995, 0.99, 1.0], 0.01)
    assert spans.startswith("**met at the median**, not shown by this run (cost +0.5%")
    assert spans.endswith("94% interval -2.0% to +3.0%: it spans the target)")
    spans = inspector.verdict([0.97, 1.02, 0.98, 0.98, 0.99], 0.01)
    assert spans.startswith("**not met at the median**")
    # Fewer than five rounds bound the median too loosely to show anything.
    few = inspector.verdict([0.998, 0.995, 1.001], 0.01)
    assert few.endswith("(cost +0.2%, 75% interval -0.1% to +0.5%: 3 rounds, too few to show it)")


def test_the_interval_for_the_median_narrows_with_the_rounds() -> None:
    assert inspector.interval([3.0, 1.0, 2.0, 5.0, 4.0]) == (1.0, 5.0, pytest.approx(0.9375))
    # 9 rounds: the 2nd lowest and 2nd highest hold the median 96 % of the time.
    low, high, level = inspector.interval([float(x) for x in range(9)])
    assert (low, high) == (1.0, 7.0) and level == pytest.approx(1 - 2 * 10 / 512)
    # 20 rounds: the 6th of each end (95.9 %; the 7th would be 88.5 %).
    assert inspector.interval([float(x) for x in range(20)])[:2] == (5.0, 14.0)


def test_the_table_has_a_row_per_condition_and_the_targets() -> None:
    results = {
        "A": [measured(20000, 1.0, at=0), measured(20000, 1.0, at=4)],
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
    assert "7.0 MB written; the call held 1.80 s" in text and "longest stop 290 ms" in text
    assert "19,000 requests/s against 20,000 in the A just before: 0.20 s of its service" in text


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
