"""What holds a Node.js gateway's memory: V8's sampling heap profile and its heap snapshots.

**Allocation sites** come from a sampling heap profile: the inspector's
`HeapProfiler.getSamplingProfile` (`{"profile": {...}}`, or the profile itself) or a
`.heapprofile` written by `node --heap-prof`. V8 samples an allocation every so many bytes
(`--heap-prof-interval`, 512 KiB by default) and keeps the sample while its object lives, so by
default the profile is of live memory: a call tree whose nodes' `selfSize` is V8's estimate of
the bytes still held by what each function allocated. A site is a function (name, script,
1-based line where it starts); V8 names a site's script only while the script itself is alive
when the profile is written.

**Heap snapshots** (`.heapsnapshot`: `HeapProfiler.takeHeapSnapshot`'s chunks joined, or
`require('v8').writeHeapSnapshot()`) are summarised as DevTools' *Summary* view groups them:
objects by constructor name (`object` and `native` nodes by their name), every other node by
its type, `(string)`, `(array)`, `(closure)`, `(compiled code)` for `code`, `(system)` for
`hidden`...; nodes of no size are left out, as DevTools leaves them out (but for `native`
ones). A snapshot can be hundreds of megabytes: it is read forward in chunks, its nodes parsed
by numpy a chunk at a time, its edges skipped, and only the strings that name a class decoded,
so that memory stays near a few chunks whatever the file's size.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from analysis.cpu_profile import Frame, Source, app_root, read_profile

STACK_FRAMES = 6
CHUNK_CHARS = 1 << 22
HEADER_CHARS = 1 << 16  # a snapshot's header, before its nodes, is under 2,000 characters
NODES, STRINGS = '"nodes":[', '"strings":['
DECODER = json.JSONDecoder()


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


class SnapshotError(ValueError):
    """A file that is not a heap snapshot as V8 writes one; the message is one line."""


class _Forward:
    """A text file read forward, a chunk at a time: what is in memory is the chunk being read
    and what was left of the one before."""

    def __init__(self, file: IO[str], chunk_chars: int) -> None:
        self.file, self.chunk_chars = file, chunk_chars
        self.text, self.at = "", 0

    def more(self) -> bool:
        chunk = self.file.read(self.chunk_chars)
        self.text, self.at = self.text[self.at :] + chunk, 0
        return bool(chunk)

    def until(self, token: str, keep_at_most: int = 0) -> str:
        """Move past the next `token`; the text before it, which may not be longer than
        `keep_at_most` characters; with 0, forgotten as the search goes."""
        kept: list[str] = []
        while (found := self.text.find(token, self.at)) < 0:
            # A token cut in two by the chunk's end is found again once the next chunk is in.
            upto = max(self.at, len(self.text) - len(token) + 1)
            if keep_at_most:
                kept.append(self.text[self.at : upto])
            self.at = upto
            if sum(map(len, kept)) > keep_at_most or not self.more():
                raise SnapshotError(f"not a heap snapshot: no {token} where expected")
        kept.append(self.text[self.at : found] if keep_at_most else "")
        self.at = found + len(token)
        if sum(map(len, kept)) > keep_at_most:
            raise SnapshotError(f"not a heap snapshot: no {token} where expected")
        return "".join(kept)

    def integers(self) -> Iterator[np.ndarray]:
        """The integers up to the next `]`, a chunk's worth at a time."""
        while True:
            end = self.text.find("]", self.at)
            cut = end if end >= 0 else self.text.rfind(",", self.at)
            if cut >= 0:
                part = self.text[self.at : cut]
                self.at = cut + 1
                # numpy reads a blank string as one 0.
                if part and not part.isspace():
                    yield np.fromstring(part, dtype=np.int64, sep=",")
                if end >= 0:
                    return
            if not self.more():
                raise SnapshotError("the snapshot ends inside its nodes")

    def strings(self, wanted: set[int]) -> dict[int, str]:
        """The strings at the indices `wanted` of the array starting here; the rest of the
        array is read only as far as the last of them."""
        found: dict[int, str] = {}
        last = max(wanted, default=-1)
        index = 0
        while index <= last:
            while True:
                while self.at < len(self.text) and self.text[self.at] in ", \t\r\n":
                    self.at += 1
                if self.at < len(self.text) or not self.more():
                    break
            if self.text[self.at : self.at + 1] != '"':
                break
            try:
                value, end = DECODER.raw_decode(self.text, self.at)
            except json.JSONDecodeError:  # the string goes on in the next chunk
                if not self.more():
                    raise SnapshotError("the snapshot ends inside its strings") from None
                continue
            if index in wanted:
                found[index] = value
            self.at, index = end, index + 1
        return found


def _class_name(key: int, names: dict[int, str], types: list[str]) -> str:
    if key >= 0:
        return names.get(key, "")
    kind = types[-1 - key] if -1 - key < len(types) else "unknown"
    return {"hidden": "(system)", "code": "(compiled code)"}.get(kind, f"({kind})")


def snapshot_summary(
    path: str | os.PathLike[str], *, chunk_chars: int = CHUNK_CHARS
) -> dict[str, Any]:
    """A heap snapshot by class, as DevTools' Summary view counts it (see the module's text).

    Returns `nodes` (all the snapshot's), `count` and `self_bytes` (of the nodes counted) and
    `classes`: `{name: {"count": n, "self_bytes": b}}` for every class, largest first. Reads
    `chunk_chars` characters at a time. Raises SnapshotError for a file that is not one."""
    with open(path, encoding="utf-8", errors="replace") as file:
        stream = _Forward(file, chunk_chars)
        try:
            header = json.loads(stream.until(NODES, HEADER_CHARS).rstrip().rstrip(",") + "}")
            meta = header["snapshot"]["meta"]
            fields = list(meta["node_fields"])
            types = list(meta["node_types"][fields.index("type")])
            at_type, at_name = fields.index("type"), fields.index("name")
            at_size = fields.index("self_size")
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise SnapshotError(f"not a heap snapshot: {Path(path).name}'s header") from exc
        named = [types.index(t) for t in ("object", "native") if t in types]
        native = types.index("native") if "native" in types else -1
        tally: dict[int, list[int]] = {}  # class key: count, self bytes
        nodes, carry = 0, np.empty(0, dtype=np.int64)
        for part in stream.integers():
            values = np.concatenate((carry, part)) if carry.size else part
            whole = len(values) - len(values) % len(fields)
            rows, carry = values[:whole].reshape(-1, len(fields)), values[whole:]
            nodes += len(rows)
            kinds, sizes = rows[:, at_type], rows[:, at_size]
            # DevTools' class index: an object's name's string index, else -1 - its type.
            keys = np.where(np.isin(kinds, named), rows[:, at_name], -1 - kinds)
            counted = (sizes != 0) | (kinds == native)
            unique, inverse = np.unique(keys[counted], return_inverse=True)
            counts = np.bincount(inverse, minlength=len(unique))
            totals = np.bincount(inverse, weights=sizes[counted], minlength=len(unique))
            for key, n, size in zip(unique.tolist(), counts.tolist(), totals.tolist(), strict=True):
                entry = tally.setdefault(key, [0, 0])
                entry[0] += n
                entry[1] += round(size)
        if carry.size:
            raise SnapshotError("the snapshot's nodes do not fill whole rows")
        stream.until(STRINGS)
        names = stream.strings({key for key in tally if key >= 0})
    classes: dict[str, dict[str, int]] = {}
    for key, (n, size) in tally.items():
        entry = classes.setdefault(_class_name(key, names, types), {"count": 0, "self_bytes": 0})
        entry["count"] += n
        entry["self_bytes"] += size
    ordered = sorted(classes.items(), key=lambda item: (-item[1]["self_bytes"], item[0]))
    return {
        "nodes": nodes,
        "count": sum(c["count"] for c in classes.values()),
        "self_bytes": sum(c["self_bytes"] for c in classes.values()),
        "classes": dict(ordered),
    }


def snapshot_diff(
    before: Mapping[str, Any] | str | os.PathLike[str],
    after: Mapping[str, Any] | str | os.PathLike[str],
    top: int = 15,
) -> dict[str, Any]:
    """What grew from one snapshot to a later one, by class: each a `snapshot_summary` (or the
    path of its snapshot).

    Returns `count_delta` and `self_bytes_delta` (of all counted nodes) and `grown`: the `top`
    classes that grew, in bytes or else in count, most bytes first, each with `name`,
    `count_before`, `count_after`, `count_delta`, `self_bytes_before`, `self_bytes_after` and
    `self_bytes_delta`."""
    old, new = (s if isinstance(s, Mapping) else snapshot_summary(s) for s in (before, after))
    empty = {"count": 0, "self_bytes": 0}
    rows = []
    for name in old["classes"].keys() | new["classes"].keys():
        was, now = old["classes"].get(name, empty), new["classes"].get(name, empty)
        row = {
            "name": name,
            "count_before": was["count"],
            "count_after": now["count"],
            "count_delta": now["count"] - was["count"],
            "self_bytes_before": was["self_bytes"],
            "self_bytes_after": now["self_bytes"],
            "self_bytes_delta": now["self_bytes"] - was["self_bytes"],
        }
        if row["self_bytes_delta"] > 0 or (row["self_bytes_delta"] == 0 and row["count_delta"] > 0):
            rows.append(row)
    rows.sort(key=lambda r: (-r["self_bytes_delta"], -r["count_delta"], r["name"]))
    return {
        "count_delta": new["count"] - old["count"],
        "self_bytes_delta": new["self_bytes"] - old["self_bytes"],
        "grown": rows[:top],
    }
