"""The endurance profile: hours of moderate load, flat or following a day's traffic curve.

The plan runs 24 hours (`--duration 86400`) and a 1-hour variant. The profile is plain stages
(closed model) or arrival phases (open model), so it runs on the same shapes as every other
scenario; `time_scale` (applied by the scenario loader) compresses it for CI.

The diurnal curve is quiet at night and busy in the afternoon:
    factor(h) = night + (1 - night) * (1 - cos(2π (h - 3) / 24)) / 2
lowest at 03:00 (`night`), highest at 15:00 (1.0), drawn as `segments` straight lines over the
profile's duration, which stands for one day whatever its length.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

from shapes.timetable import ArrivalPhase
from shapes.vu_stages import VUStage

Curve = Literal["flat", "diurnal"]


def diurnal_factor(hour: float, night: float = 0.2) -> float:
    return night + (1 - night) * (1 - math.cos(2 * math.pi * (hour - 3) / 24)) / 2


def _levels(curve: Curve, segments: int, night: float) -> list[float]:
    """The load factor at the end of each segment (for a flat curve, one segment at 1.0)."""
    if curve == "flat":
        return [1.0]
    return [diurnal_factor(24 * (i + 1) / segments, night) for i in range(segments)]


def endurance_stages(
    duration_s: float,
    users: int,
    curve: Curve = "flat",
    ramp_up_s: float = 60.0,
    segments: int = 24,
    night: float = 0.2,
) -> list[VUStage]:
    """Ramp up to the curve's starting level, then follow the curve to the end."""
    ramp_up_s = min(ramp_up_s, duration_s / 10)
    start = 1.0 if curve == "flat" else diurnal_factor(0.0, night)
    stages = [VUStage(ramp_up_s, max(1, round(users * start)), "ramp-up")]
    levels = _levels(curve, segments, night)
    step = (duration_s - ramp_up_s) / len(levels)
    for i, level in enumerate(levels):
        stages.append(VUStage(step, max(1, round(users * level)), f"steady-{i + 1}"))
    return stages


def endurance_phases(
    duration_s: float,
    arrival_rate: float,
    curve: Curve = "flat",
    segments: int = 24,
    night: float = 0.2,
) -> list[ArrivalPhase]:
    """Arrival phases following the curve (an open model needs no ramp-up)."""
    if curve == "flat":
        return [ArrivalPhase(duration_s, arrival_rate, name="steady")]
    levels = [diurnal_factor(0.0, night), *_levels(curve, segments, night)]
    step = duration_s / segments
    return [
        ArrivalPhase(step, arrival_rate * a, arrival_rate * b, name=f"segment-{i + 1}")
        for i, (a, b) in enumerate(itertools.pairwise(levels))
    ]
