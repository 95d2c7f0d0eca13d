"""What holds a Node.js gateway's memory: V8's sampling heap profile.

**Allocation sites** come from a sampling heap profile: the inspector's
`HeapProfiler.getSamplingProfile` (`{"profile": {...}}`, or the profile itself) or a
`.heapprofile` written by `node --heap-prof`. V8 samples an allocation every so many bytes
(`--heap-prof-interval`, 512 KiB by default) and keeps the sample while its object lives, so by
default the profile is of live memory: a call tree whose nodes' `selfSize` is V8's estimate of
the bytes still held by what each function allocated. A site is a function (name, script,
1-based line where it starts); V8 names a site's script only while the script itself is alive
when the profile is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from analysis.cpu_profile import Frame, Source, app_root, read_profile

STACK_FRAMES = 6


def allocation_sites(
    sampling_profile: Source, top: int = 15, *, root: str | None = None
) -> dict[str, Any]:
    """The sites that hold the most live memory, by the bytes they allocated themselves.

    Returns `total_bytes` (all the profile's), `samples` (its count) and `sites`: the `top`
    sites by bytes, each with `name`, `file` (relative to `root`, by default the app's
    directory as `analysis.cpu_profile.app_root` finds it), `line`, `url`, `bytes`, `share`
    (of `total_bytes`, 0 to 1), `samples`, and `stack`: the site and the callers that led to
    its heaviest call path, innermost first, at most `STACK_FRAMES`, each `name (file:line)`."""
    data = read_profile(sampling_profile)
    if "head" not in data:
        raise ValueError("not a V8 sampling heap profile: it has no head")
    frames: dict[int, Frame] = {}
    parents: dict[int, int | None] = {}
    sizes: dict[int, float] = {}
    pending: list[tuple[Mapping[str, Any], int | None]] = [(data["head"], None)]
    while pending:  # not recursive: a call tree can be deeper than Python's stack
        node, parent = pending.pop()
        nid = int(node["id"])
        frames[nid] = Frame.of(node.get("callFrame") or {})
        parents[nid], sizes[nid] = parent, float(node.get("selfSize", 0))
        pending.extend((child, nid) for child in node.get("children") or ())
    sampled: dict[int, int] = {}
    for sample in data.get("samples") or ():
        sampled[int(sample["nodeId"])] = sampled.get(int(sample["nodeId"]), 0) + 1
    root = app_root(f.url for f in frames.values()) if root is None else root
    sites: dict[Frame, dict[str, Any]] = {}
    for nid, frame in frames.items():
        if parents[nid] is None or not (sizes[nid] or sampled.get(nid)):
            continue
        site = sites.setdefault(frame, {"bytes": 0.0, "samples": 0, "heaviest": nid})
        site["bytes"] += sizes[nid]
        site["samples"] += sampled.get(nid, 0)
        if sizes[nid] > sizes[site["heaviest"]]:
            site["heaviest"] = nid
    total = sum(sizes.values())
    ranked = sorted(sites.items(), key=lambda item: -item[1]["bytes"])[:top]
    return {
        "total_bytes": round(total),
        "samples": sum(sampled.values()),
        "sites": [
            {
                **frame.describe(root),
                "bytes": round(site["bytes"]),
                "share": round(site["bytes"] / total, 4) if total else None,
                "samples": site["samples"],
                "stack": _stack(site["heaviest"], frames, parents, root),
            }
            for frame, site in ranked
        ],
    }


def _stack(
    nid: int, frames: dict[int, Frame], parents: dict[int, int | None], root: str
) -> list[str]:
    stack: list[str] = []
    node: int | None = nid
    while node is not None and parents[node] is not None and len(stack) < STACK_FRAMES:
        stack.append(frames[node].label(root))
        node = parents[node]
    return stack
