"""Where a Node.js gateway spent its CPU: a V8 CPU profile, its hot functions and flame graph.

The profile is V8's sampling profiler's, as the inspector's `Profiler.stop` returns it
(`{"profile": {...}}`, or the profile itself) and as `node --cpu-prof` writes it
(`.cpuprofile`): a call tree (`nodes`, each a `callFrame` with its `children`), the node each
sample landed in (`samples`) and the microseconds from one sample to the next (`timeDeltas`,
the first from `startTime`). A sample stands for the time from it to the next one (the last
one, to `endTime`): milliseconds are sums of those intervals, not counts times a nominal rate,
since V8 samples late on a busy machine. Percentages are of the samples.

Three frames are not functions and are reported apart: `(idle)`, the event loop waiting for
work; `(garbage collector)`; `(program)`, V8 and Node's own native code outside any JavaScript
function (parsing, compiling, the event loop's bookkeeping). `idle_share` is the share of the
sampled time spent idle; `gc_share`, the share of the busy time (all but idle) spent in GC: a
gateway whose `gc_share` is high spends its CPU managing memory rather than serving.

A function is its name, script and line (1-based; V8's call frames count from 0); scripts
shown as paths relative to the app (`root`): by default the deepest directory common to the
profile's own files, above any `node_modules`. `start_us` and `end_us` (microseconds from the
profile's start) narrow every figure to the samples taken in that window.
"""

from __future__ import annotations

import colorsys
import html
import json
import os
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

IDLE, GC, PROGRAM, ROOT = "(idle)", "(garbage collector)", "(program)", "(root)"
PSEUDO_COLOURS = {IDLE: "#d7dde4", GC: "#b4a7d6", PROGRAM: "#bdbdbd", ROOT: "#e8e8e8"}
Source = str | os.PathLike[str] | Mapping[str, Any]

# The flame graph's geometry, in pixels.
WIDTH, PAD, FRAME_H, FONT_PX, HEADER = 1200, 10, 16, 11, 44
CHAR_PX = FONT_PX * 0.6  # a monospace glyph's advance
MIN_BOX_PX = 0.3  # narrower boxes are left out: invisible, and they would swell the file
FONTS = "ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', monospace"
# Characters XML 1.0 forbids; a function's name is any string the program chose.
FOLDED_APART = re.compile(r"[;\r\n]")  # what separates frames and stacks in the folded format
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def read_profile(source: Source) -> dict[str, Any]:
    """A profile as JSON: read from a path, or given; the inspector's `{"profile": ...}`
    wrapping of it taken off."""
    if isinstance(source, Mapping):
        data = dict(source)
    else:
        data = json.loads(Path(source).read_text(encoding="utf-8"))
    if "profile" in data and isinstance(data["profile"], Mapping):
        data = dict(data["profile"])
    return data


def script_path(url: str) -> str:
    """A script's URL as a file path where it is a file (`file:///app/a.js` and `/app/a.js`
    are both `/app/a.js`); anything else (`node:fs`, `https://...`) as it is."""
    if url.startswith("file://"):
        return unquote(urlparse(url).path)
    return url


def app_root(urls: Iterable[str]) -> str:
    """The deepest directory common to the files among `urls`, cut above any
    `node_modules`: where the app's own files are; "" when there is none."""
    directories = [os.path.dirname(p) for p in map(script_path, urls) if p.startswith("/")]
    if not directories:
        return ""
    root = os.path.commonpath(directories)
    root = root.split("/node_modules", 1)[0]
    return "" if root in ("", "/") else root


@dataclass(frozen=True)
class Frame:
    """A function as V8 names it: its name ("" when anonymous), its script's URL ("" for V8's
    own frames, and for a script already collected when a heap profile was written) and the
    1-based line where the function starts (None when unknown)."""

    name: str
    url: str
    line: int | None

    @classmethod
    def of(cls, call_frame: Mapping[str, Any]) -> Frame:
        line = int(call_frame.get("lineNumber", -1))
        name = str(call_frame.get("functionName") or "")
        return cls(name, str(call_frame.get("url") or ""), line + 1 if line >= 0 else None)

    @property
    def pseudo(self) -> bool:
        """One of V8's own entries, `(program)`, `(idle)`, `(V8 API)`..., not a function."""
        return not self.url and self.name.startswith("(")

    @property
    def display_name(self) -> str:
        return self.name or "(anonymous)"

    def file(self, root: str) -> str:
        """The script as a path relative to `root` when it lies below it."""
        path = script_path(self.url)
        if root and path.startswith(root + "/"):
            return path[len(root) + 1 :]
        return path

    def label(self, root: str) -> str:
        """`name (file:line)`, as a flame graph and a stack show it."""
        file = self.file(root)
        if not file:
            return self.display_name
        return f"{self.display_name} ({file}{'' if self.line is None else f':{self.line}'})"

    def describe(self, root: str) -> dict[str, Any]:
        return {
            "name": self.display_name,
            "file": self.file(root),
            "line": self.line,
            "url": self.url,
        }


@dataclass(frozen=True)
class CpuProfile:
    """A loaded profile: its call tree's nodes by index, and its samples in time order."""

    frames: list[Frame]  # each node's function
    parents: list[int]  # each node's parent, -1 for the tree's root
    samples: np.ndarray  # the node each sample landed in
    times_us: np.ndarray  # when each sample was taken, from the profile's start
    weights_us: np.ndarray  # the time each sample stands for
    duration_us: float
    root: str  # the directory scripts are shown relative to

    def stack(self, node: int) -> list[int]:
        """The nodes from the tree's root (left out) down to `node`."""
        path = []
        while node >= 0 and self.parents[node] >= 0:
            path.append(node)
            node = self.parents[node]
        return path[::-1]

    def window(self, start_us: float | None, end_us: float | None) -> tuple[np.ndarray, ...]:
        """The samples taken from `start_us` (included) to `end_us` (excluded), and their
        weights."""
        keep = np.ones(len(self.samples), dtype=bool)
        if start_us is not None:
            keep &= self.times_us >= start_us
        if end_us is not None:
            keep &= self.times_us < end_us
        return self.samples[keep], self.weights_us[keep]


def load_cpu_profile(source: Source | CpuProfile, root: str | None = None) -> CpuProfile:
    """A `.cpuprofile` (path) or `Profiler.stop` result (dict), ready for the functions below.

    `root` is the directory scripts are shown relative to (default: `app_root` of the
    profile's scripts). Raises ValueError for a profile without nodes or samples."""
    if isinstance(source, CpuProfile):
        return source
    data = read_profile(source)
    nodes = data.get("nodes") or []
    if not nodes or "samples" not in data:
        raise ValueError("not a V8 CPU profile: it has no nodes or no samples")
    index = {int(node["id"]): i for i, node in enumerate(nodes)}
    frames = [Frame.of(node.get("callFrame") or {}) for node in nodes]
    parents = [-1] * len(nodes)
    for i, node in enumerate(nodes):
        for child in node.get("children") or ():
            parents[index[int(child)]] = i
    samples = np.array([index[int(s)] for s in data["samples"]], dtype=np.int64)
    deltas = np.asarray(data.get("timeDeltas") or np.zeros(len(samples)), dtype=np.float64)
    times = np.cumsum(deltas)
    order = np.argsort(times, kind="stable")  # V8 may record a sample out of order
    samples, times = samples[order], times[order]
    duration = max(float(data.get("endTime", 0)) - float(data.get("startTime", 0)), 0.0)
    ends = np.append(times[1:], max([duration, *times[-1:]]))[: len(times)]
    return CpuProfile(
        frames=frames,
        parents=parents,
        samples=samples,
        times_us=times,
        weights_us=np.maximum(ends - times, 0.0),
        duration_us=duration,
        root=app_root(f.url for f in frames) if root is None else root,
    )


def _ms(us: float) -> float:
    return round(float(us) / 1000.0, 3)


def _pct(part: float, whole: float) -> float:
    return round(100.0 * float(part) / float(whole), 3) if whole else 0.0


def _share(part: float, whole: float) -> float | None:
    return round(float(part) / float(whole), 4) if whole else None


def hot_functions(
    profile: Source | CpuProfile,
    top: int = 15,
    *,
    start_us: float | None = None,
    end_us: float | None = None,
) -> dict[str, Any]:
    """The functions that took the most CPU themselves, and what was idle, GC and V8's own.

    Returns `samples` and `duration_ms` (of the window), `sampled_ms` (the time the samples
    stand for), `busy_ms` (all but idle), `idle_ms`, `gc_ms`, `program_ms`, `idle_share`
    (idle / sampled) and `gc_share` (GC / busy), both 0 to 1 (None with nothing to divide), and
    `functions`: the `top` functions by self time, each with `name`, `file`, `line`, `url`,
    `self_ms`, `self_pct`, `self_samples` (in the function itself) and `total_ms`,
    `total_pct`, `total_samples` (with what it called; a recursive function's time once)."""
    p = load_cpu_profile(profile)
    nodes, weights = p.window(start_us, end_us)
    self_us = np.bincount(nodes, weights=weights, minlength=len(p.frames))
    self_n = np.bincount(nodes, minlength=len(p.frames))
    pseudo: dict[str, float] = {}
    rows: dict[Frame, list[float]] = {}  # self µs, self samples, total µs, total samples
    for node in np.flatnonzero(self_n):
        on_stack = {p.frames[n] for n in p.stack(int(node))}
        for frame in on_stack - {f for f in on_stack if f.pseudo}:
            row = rows.setdefault(frame, [0.0, 0, 0.0, 0])
            row[2] += self_us[node]
            row[3] += int(self_n[node])
        frame = p.frames[node]
        if frame.pseudo:
            pseudo[frame.name] = pseudo.get(frame.name, 0.0) + self_us[node]
        else:
            rows[frame][0] += self_us[node]
            rows[frame][1] += int(self_n[node])
    sampled, count = float(weights.sum()), len(nodes)
    idle, gc = pseudo.get(IDLE, 0.0), pseudo.get(GC, 0.0)
    ranked = sorted(rows.items(), key=lambda item: (-item[1][0], -item[1][2]))[:top]
    span_end = p.duration_us if end_us is None else min(end_us, p.duration_us)
    return {
        "samples": count,
        "duration_ms": _ms(max(span_end - (start_us or 0.0), 0.0)),
        "sampled_ms": _ms(sampled),
        "busy_ms": _ms(sampled - idle),
        "idle_ms": _ms(idle),
        "gc_ms": _ms(gc),
        "program_ms": _ms(pseudo.get(PROGRAM, 0.0)),
        "idle_share": _share(idle, sampled),
        "gc_share": _share(gc, sampled - idle),
        "functions": [
            {
                **frame.describe(p.root),
                "self_ms": _ms(row[0]),
                "self_pct": _pct(row[1], count),
                "self_samples": int(row[1]),
                "total_ms": _ms(row[2]),
                "total_pct": _pct(row[3], count),
                "total_samples": int(row[3]),
            }
            for frame, row in ranked
        ],
    }


def _stacks(
    p: CpuProfile, include_idle: bool, start_us: float | None, end_us: float | None
) -> list[tuple[list[Frame], float, int]]:
    """Each call path that samples landed at: its frames (root first), time and samples."""
    nodes, weights = p.window(start_us, end_us)
    self_us = np.bincount(nodes, weights=weights, minlength=len(p.frames))
    self_n = np.bincount(nodes, minlength=len(p.frames))
    return [
        ([p.frames[n] for n in p.stack(int(node))], float(self_us[node]), int(self_n[node]))
        for node in np.flatnonzero(self_n)
        if include_idle or p.frames[node].name != IDLE
    ]


def collapsed_stacks(
    profile: Source | CpuProfile,
    *,
    include_idle: bool = True,
    start_us: float | None = None,
    end_us: float | None = None,
) -> str:
    """The samples in Brendan Gregg's folded format, one line a call path, root first, with
    its number of samples (`(anonymous) (server.js:1);handle (server.js:12) 42`), sorted:
    the input of `flamegraph.pl`, speedscope and most flame graph tools."""
    p = load_cpu_profile(profile)
    counts: dict[str, int] = {}
    for frames, _, samples in _stacks(p, include_idle, start_us, end_us):
        path = ";".join(FOLDED_APART.sub(",", f.label(p.root)) for f in frames)
        counts[path] = counts.get(path, 0) + samples
    return "".join(f"{path} {n}\n" for path, n in sorted(counts.items()))


class _Box:
    """A flame graph's box: a function on one call path, and the time under it."""

    __slots__ = ("children", "frame", "us")

    def __init__(self, frame: Frame) -> None:
        self.frame = frame
        self.us = 0.0
        self.children: dict[Frame, _Box] = {}


def _colour(frame: Frame) -> str:
    """A box's colour, the same for a function in every graph: warm hues for the app's code
    and its packages, cool ones for Node's own (`node:`), grey for V8's entries."""
    if frame.pseudo:
        return PSEUDO_COLOURS.get(frame.name, "#c8c8c8")
    h = zlib.crc32(f"{frame.name}\0{frame.url}\0{frame.line}".encode())
    if frame.url.startswith("node:"):
        hue, saturation, lightness = 185 + h % 45, 0.35 + (h >> 8) % 20 / 100, 0.68
    else:
        hue, saturation, lightness = h % 55, 0.75 + (h >> 8) % 20 / 100, 0.6
    r, g, b = colorsys.hls_to_rgb(hue / 360, lightness + (h >> 16) % 8 / 100, saturation)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def _text(value: str) -> str:
    return html.escape(NOT_XML.sub("?", value))


def _fitted(label: str, width_px: float) -> str:
    fits = int((width_px - 6) / CHAR_PX)
    if fits < 3:
        return ""
    return label if len(label) <= fits else label[: fits - 2] + ".."


def _tree(p: CpuProfile, stacks: list[tuple[list[Frame], float, int]]) -> _Box:
    top = _Box(Frame("all", "", None))
    for frames, us, _ in stacks:
        top.us += us
        box = top
        for frame in frames:
            box = box.children.setdefault(frame, _Box(frame))
            box.us += us
    return top


def _layout(top: _Box, root: str) -> list[tuple[int, float, float, _Box]]:
    """Each box to draw: its depth (0 at the bottom), left edge and width, in pixels."""
    if not top.us:
        return []
    scale = (WIDTH - 2 * PAD) / top.us
    drawn = []
    pending = [(0, float(PAD), top)]
    while pending:
        depth, x, box = pending.pop()
        drawn.append((depth, x, box.us * scale, box))
        for frame in sorted(box.children, key=lambda f: f.label(root)):
            child = box.children[frame]
            if child.us * scale >= MIN_BOX_PX:
                pending.append((depth + 1, x, child))
            x += child.us * scale
    return drawn


def flame_graph_svg(
    profile: Source | CpuProfile,
    title: str = "CPU flame graph",
    *,
    include_idle: bool = True,
    start_us: float | None = None,
    end_us: float | None = None,
) -> str:
    """A flame graph as one self-contained SVG document (no script, font, style sheet or link:
    it opens alone and embeds in an HTML report as it is).

    The callers are at the bottom; a box's width is the time spent in the function and what it
    called, on that call path; siblings are in alphabetical order, as `flamegraph.pl` draws
    them. Hovering a box shows its function, file, line, time and share (its <title>). Boxes
    narrower than `MIN_BOX_PX` are left out (their time stays in their callers'). With
    `include_idle=False` the idle time is left out and the widths are shares of the busy time."""
    p = load_cpu_profile(profile)
    top = _tree(p, _stacks(p, include_idle, start_us, end_us))
    drawn = _layout(top, p.root)
    totals = hot_functions(p, 0, start_us=start_us, end_us=end_us)
    height = HEADER + (max((d for d, *_ in drawn), default=0) + 1) * FRAME_H + PAD
    shown = "all samples" if include_idle else "idle left out"
    subtitle = (
        f"{totals['samples']} samples, {totals['sampled_ms']:.0f} ms sampled ({shown}); "
        f"idle {100 * (totals['idle_share'] or 0):.1f} %, "
        f"GC {100 * (totals['gc_share'] or 0):.1f} % of busy time"
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" style="max-width:100%;height:auto" '
        f'font-family="{FONTS}" font-size="{FONT_PX}">',
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="15" '
        f'fill="#111111">{_text(title)}</text>',
        f'<text x="{WIDTH / 2}" y="36" text-anchor="middle" fill="#555555">'
        f"{_text(subtitle)}</text>",
    ]
    if not drawn:
        parts.append(f'<text x="{PAD}" y="{HEADER + FRAME_H}">no samples</text>')
    for depth, x, width, box in drawn:
        y = height - PAD - (depth + 1) * FRAME_H
        label = box.frame.label(p.root)
        hover = f"{label}: {box.us / 1000:.1f} ms, {100 * box.us / top.us:.2f} %"
        fill = "#e8e8e8" if box is top else _colour(box.frame)
        parts.append(
            f"<g><title>{_text(hover)}</title>"
            f'<rect x="{x:.2f}" y="{y}" width="{width:.2f}" height="{FRAME_H - 1}" '
            f'fill="{fill}" rx="2"/>'
        )
        text = _fitted(label, width)
        if text:
            parts.append(
                f'<text x="{x + 3:.2f}" y="{y + FRAME_H - 4}" fill="#000000">{_text(text)}</text>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
