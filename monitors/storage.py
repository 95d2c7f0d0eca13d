"""Samples streamed to a CSV file as they arrive: memory stays flat, nothing is lost on a crash.

Each row is one sample: `t` (seconds since the run started), `time` (UTC, ISO 8601), `source`
(gateway, generator:<id>...) and the sample's fields. Columns are fixed by the first rows of
each source's fields seen; a field that appears later goes to an `extra` JSON column rather
than reshaping the file. Every row is flushed, so a killed run keeps all but the row in flight.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any, TextIO

BASE_COLUMNS = ("t", "time", "source")


class SampleWriter:
    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = [*BASE_COLUMNS, *columns, "extra"]
        self._known = set(columns)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO | None = path.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(self.columns)
        self._file.flush()

    def write(self, t: float, source: str, sample: dict[str, Any]) -> None:
        if self._file is None:
            return
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        extra = {k: v for k, v in sample.items() if k not in self._known}
        row = [round(t, 3), now, source]
        row += [sample.get(c, "") for c in self.columns[len(BASE_COLUMNS) : -1]]
        row.append(json.dumps(extra, separators=(",", ":")) if extra else "")
        self._writer.writerow(row)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_samples(path: Path) -> list[dict[str, Any]]:
    """The rows of a samples file, numbers as floats, `extra` merged back in."""
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            sample: dict[str, Any] = {}
            for key, value in row.items():
                if key == "extra":
                    if value:
                        sample.update(json.loads(value))
                elif key in ("time", "source"):
                    sample[key] = value
                elif value not in ("", None):
                    try:
                        sample[key] = float(value)
                    except ValueError:
                        sample[key] = value
            rows.append(sample)
    return rows
