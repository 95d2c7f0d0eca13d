"""One registry of figures (`monitors.figures`): every figure a source samples is in it, so the
samples file has a column for it and the live view says what it is."""

from __future__ import annotations

import os

from monitors.figures import BY_NAME, COLUMNS, FIGURES, about
from monitors.inspector import NodeInspector
from monitors.process import ProcessSampler
from monitors.prometheus import SELECTED


def test_every_sampled_figure_is_registered_once() -> None:
    assert len(COLUMNS) == len(set(COLUMNS)) == len(FIGURES)
    process = set(ProcessSampler(os.getpid()).sample()) - {"tree"}
    prometheus = {key for _, _, key, _ in SELECTED}
    for figure in (*process, *prometheus, *NodeInspector.figures):
        assert figure in BY_NAME, figure


def test_about_names_the_unit() -> None:
    assert about("heap_used_mb") == "Node.js heap used, MB"
    assert about("threads") == "gateway threads"
    assert about("no_such_figure") == ""
