"""Writing a run's files so that a reader (the web UI, `make report`, a crash) never sees half
of one: written beside, then renamed over."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
