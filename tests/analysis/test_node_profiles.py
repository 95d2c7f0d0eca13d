"""V8's profiles of real Node.js scripts, whose hot function, leak and retained objects are
known by construction: the analysis must find what each script does."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from analysis.allocations import (
    SnapshotError,
    allocation_sites,
    snapshot_diff,
    snapshot_summary,
)
from analysis.cpu_profile import (
    PAD,
    WIDTH,
    collapsed_stacks,
    flame_graph_svg,
    hot_functions,
    load_cpu_profile,
)

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")
SVG = "{http://www.w3.org/2000/svg}"

HOT = """\
function spinHotLoop(ms) {
  const end = Date.now() + ms;
  let x = 0;
  while (Date.now() < end) for (let i = 0; i < 1000; i++) x += Math.sqrt(i);
  return x;
}
function runWork() { return spinHotLoop(400); }
setTimeout(runWork, 300);  // idle first, then busy: a window can tell the two apart
"""
RETAIN = """\
const kept = [];
function retainForever(n) {
  for (let i = 0; i < n; i++) kept.push({ id: i, values: [i, i + 1, i + 2, i + 3] });
}
function churnGarbage(n) {
  let last = null;
  for (let i = 0; i < n; i++) last = { id: i, values: new Array(16).fill(i) };
  return last;
}
churnGarbage(400000);  // allocates more than retainForever does, and keeps none of it
retainForever(200000);
globalThis.kept = kept;
// V8 names a site's script only while the script lives: a gateway's modules do.
module.exports = { retainForever, churnGarbage };
"""
SNAPSHOTS = """\
const v8 = require('v8');
class LeakyEntry { constructor(i) { this.id = i; this.a = i * 2; this.b = i * 3; } }
class Ünïcode名 { constructor() { this.note = 'a "quoted" \\\\ name\\n'; } }
globalThis.kept = [];
v8.writeHeapSnapshot(process.argv[2]);
for (let i = 0; i < 50000; i++) globalThis.kept.push(new LeakyEntry(i));
for (let i = 0; i < 7; i++) globalThis.kept.push(new Ünïcode名());
v8.writeHeapSnapshot(process.argv[3]);
"""


def run_node(folder: Path, script: str, *flags: str, args: tuple[str, ...] = ()) -> Path:
    """Run `script` with node in `folder`; the script's path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "script.js"
    path.write_text(script, encoding="utf-8")
    subprocess.run(
        [str(NODE), *flags, path.name, *args],
        cwd=folder,
        check=True,
        timeout=60,
        capture_output=True,
    )
    return path


def only(folder: Path, pattern: str) -> Path:
    (found,) = folder.glob(pattern)
    return found


def line_of(script: str, text: str) -> int:
    return next(i for i, line in enumerate(script.splitlines(), 1) if text in line)


def defined(script: str, name: str) -> tuple[str, str, int]:
    """Where the script defines the function `name`: name, file and line."""
    return name, "script.js", line_of(script, f"function {name}")


def where(entry: dict[str, Any]) -> tuple[str, str, int]:
    return entry["name"], entry["file"], entry["line"]


def label(script: str, name: str) -> str:
    """The function as stacks and flame graphs name it."""
    return f"{name} (script.js:{line_of(script, f'function {name}')})"


def cpu_profile_of(folder: Path, script: str) -> Path:
    run_node(folder, script, "--cpu-prof", "--cpu-prof-dir", "prof")
    return only(folder / "prof", "*.cpuprofile")


@pytest.fixture(scope="module")
def hot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cpu_profile_of(tmp_path_factory.mktemp("hot"), HOT)


def function(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in report["functions"] if f["name"] == name)


# --- CPU ------------------------------------------------------------------------------------


def test_the_spinning_function_is_the_hot_one(hot: Path) -> None:
    report = hot_functions(hot)
    top = report["functions"][0]
    assert where(top) == defined(HOT, "spinHotLoop")
    assert top["url"].startswith("file://")
    assert top["self_ms"] / report["busy_ms"] > 0.5
    # The loop ran 400 ms by the clock; on a busy machine V8 takes fewer of its samples.
    assert 200 <= top["self_ms"] <= 500
    # Its caller did next to nothing itself (a sample taken as a call begins lands in the
    # caller); its total holds every sample of the loop.
    caller = function(report, "runWork")
    assert caller["self_ms"] < 0.05 * top["self_ms"]
    assert caller["total_samples"] >= top["self_samples"]
    assert report["sampled_ms"] <= report["duration_ms"]
    assert report["busy_ms"] + report["idle_ms"] == pytest.approx(report["sampled_ms"], abs=0.01)
    # The 300 ms before the timer fired were idle.
    assert report["idle_ms"] >= 250
    # A `Profiler.stop` result is the same profile, wrapped.
    assert hot_functions({"profile": json.loads(hot.read_text())}) == report


def test_a_window_holds_only_its_own_samples(hot: Path) -> None:
    before = hot_functions(hot, start_us=0, end_us=250_000)
    assert "spinHotLoop" not in [f["name"] for f in before["functions"]]
    assert before["samples"] > 0 and before["idle_ms"] > 0
    after = hot_functions(hot, start_us=250_000)
    assert after["functions"][0]["name"] == "spinHotLoop"
    whole = hot_functions(hot, top=1000)
    assert before["samples"] + after["samples"] == whole["samples"]


def test_an_idle_script_is_idle(tmp_path: Path) -> None:
    report = hot_functions(cpu_profile_of(tmp_path, "setTimeout(() => {}, 800);\n"))
    assert report["idle_ms"] >= 700
    assert report["idle_share"] > 0.6  # node's start, busy, is slower on a busy machine


def test_gc_share_is_high_where_garbage_churns(tmp_path: Path, hot: Path) -> None:
    churn = """\
function churnGarbage(ms) {
  const end = Date.now() + ms;
  let last = null;
  while (Date.now() < end) for (let i = 0; i < 1000; i++) last = { i, a: [i, i, i], s: 'x' + i };
  return last;
}
churnGarbage(400);
"""
    churned = hot_functions(cpu_profile_of(tmp_path, churn))
    spun = hot_functions(hot)
    assert churned["gc_share"] > 0.1
    assert churned["gc_share"] > 3 * spun["gc_share"]
    assert churned["gc_ms"] / churned["busy_ms"] == pytest.approx(churned["gc_share"], abs=1e-3)


def test_collapsed_stacks_fold_every_sample(hot: Path) -> None:
    report = hot_functions(hot, top=1000)
    lines = collapsed_stacks(hot).splitlines()
    counts = {path: int(n) for path, n in (line.rsplit(" ", 1) for line in lines)}
    assert sum(counts.values()) == report["samples"]
    (path,) = [p for p in counts if p.endswith(label(HOT, "spinHotLoop"))]
    assert f";{label(HOT, 'runWork')};" in path
    assert counts[path] == function(report, "spinHotLoop")["self_samples"]
    assert "(idle)" in counts
    assert "(idle)" not in collapsed_stacks(hot, include_idle=False).split()


def boxes(svg: str) -> dict[str, float]:
    """Each box's hover text's function, with its width as a share of the graph's."""
    found = {}
    for group in ET.fromstring(svg).iter(f"{SVG}g"):
        title, rect = group.find(f"{SVG}title"), group.find(f"{SVG}rect")
        assert title is not None and rect is not None and title.text
        label = re.sub(r": [\d.]+ ms, [\d.]+ %$", "", title.text)
        found[label] = float(rect.get("width", 0)) / (WIDTH - 2 * PAD)
    return found


def test_flame_graph_is_self_contained_and_sized_by_time(hot: Path) -> None:
    svg = flame_graph_svg(hot, "a <hot> graph")
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("viewBox")
    for element in root.iter():
        assert element.tag.removeprefix(SVG) not in {"script", "image", "use", "style", "a"}
        assert not [name for name in element.attrib if name.endswith("href")]
    assert "url(" not in svg and "@import" not in svg and "file://" not in svg
    assert "a &lt;hot&gt; graph" in svg
    spin = label(HOT, "spinHotLoop")
    widths = boxes(svg)
    report = hot_functions(hot)
    top = report["functions"][0]
    assert widths[spin] == pytest.approx(top["total_ms"] / report["sampled_ms"], abs=0.005)
    assert widths["(idle)"] == pytest.approx(report["idle_share"], abs=0.005)
    busy = boxes(flame_graph_svg(hot, include_idle=False))
    assert "(idle)" not in busy
    assert busy[spin] == pytest.approx(top["total_ms"] / report["busy_ms"], abs=0.005)


def test_a_flame_graph_of_no_samples_says_so(hot: Path) -> None:
    svg = flame_graph_svg(hot, start_us=10**12)
    assert "no samples" in svg
    ET.fromstring(svg)


def test_a_file_that_is_not_a_profile_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"nodes": []}')
    with pytest.raises(ValueError, match="not a V8 CPU profile"):
        load_cpu_profile(tmp_path / "x.json")


# --- memory ---------------------------------------------------------------------------------


def test_the_retaining_function_holds_the_live_memory(tmp_path: Path) -> None:
    run_node(tmp_path, RETAIN, "--heap-prof", "--heap-prof-dir", "heap")
    profile = only(tmp_path / "heap", "*.heapprofile")
    report = allocation_sites(profile)
    top = report["sites"][0]
    assert where(top) == defined(RETAIN, "retainForever")
    assert top["bytes"] > 15 * 2**20
    assert top["share"] > 0.5
    assert top["samples"] > 10
    assert top["stack"][:2] == [label(RETAIN, "retainForever"), "(anonymous) (script.js:1)"]
    # It allocated more than retainForever, but none of it was live when the profile was taken.
    churn = [s for s in report["sites"] if s["name"] == "churnGarbage"]
    assert not churn or churn[0]["bytes"] < top["bytes"] / 10
    assert allocation_sites({"profile": json.loads(profile.read_text())}) == report


def summary_in_memory(path: Path) -> dict[str, dict[str, int]]:
    """DevTools' grouping, node by node over the snapshot loaded whole: what streaming must
    agree with."""
    data = json.loads(path.read_text(encoding="utf-8"))
    fields = data["snapshot"]["meta"]["node_fields"]
    types = data["snapshot"]["meta"]["node_types"][fields.index("type")]
    nodes, width = data["nodes"], len(fields)
    classes: dict[str, dict[str, int]] = {}
    for row in range(0, len(nodes), width):
        kind = types[nodes[row + fields.index("type")]]
        size = nodes[row + fields.index("self_size")]
        if size or kind == "native":
            name = data["strings"][nodes[row + fields.index("name")]]
            if kind not in ("object", "native"):
                name = {"hidden": "(system)", "code": "(compiled code)"}.get(kind, f"({kind})")
            entry = classes.setdefault(name, {})
            entry["count"] = entry.get("count", 0) + 1
            entry["self_bytes"] = entry.get("self_bytes", 0) + size
    return classes


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("snapshots")
    run_node(folder, SNAPSHOTS, args=("before.heapsnapshot", "after.heapsnapshot"))
    return folder / "before.heapsnapshot", folder / "after.heapsnapshot"


def test_snapshot_summary_groups_as_devtools_does(snapshots: tuple[Path, Path]) -> None:
    _, after = snapshots
    summary = snapshot_summary(after)
    assert summary["classes"] == summary_in_memory(after)
    assert summary["classes"]["LeakyEntry"]["count"] == 50000
    assert summary["classes"]["Ünïcode名"]["count"] == 7
    assert summary["count"] == sum(c["count"] for c in summary["classes"].values())
    assert summary["nodes"] >= summary["count"] > 50000
    sizes = [c["self_bytes"] for c in summary["classes"].values()]
    assert sizes == sorted(sizes, reverse=True)
    # Chunks of a few kB cut numbers, strings and escapes anywhere: nothing changes.
    assert snapshot_summary(after, chunk_chars=4093) == summary


def test_snapshot_diff_finds_the_leaked_class(snapshots: tuple[Path, Path]) -> None:
    before, after = snapshots
    diff = snapshot_diff(snapshot_summary(before), snapshot_summary(after))
    top = diff["grown"][0]
    assert top["name"] == "LeakyEntry"
    assert top["count_delta"] == pytest.approx(50000, rel=0.01)
    assert top["self_bytes_delta"] == top["self_bytes_after"] > 50000 * 16
    assert diff["self_bytes_delta"] >= top["self_bytes_delta"] * 0.9
    deltas = [row["self_bytes_delta"] for row in diff["grown"]]
    assert deltas == sorted(deltas, reverse=True) and min(deltas) >= 0
    assert snapshot_diff(before, after) == diff


def test_a_file_that_is_not_a_snapshot_is_refused(hot: Path) -> None:
    with pytest.raises(SnapshotError, match="not a heap snapshot"):
        snapshot_summary(hot)
