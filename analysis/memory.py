"""The gateway's memory: how much each live session costs, and whether it leaks.

- **Memory per session**: the least-squares slope of RSS against the gateway's live sessions
  over the run's samples, with its standard error and 95 % interval. Only estimated when the
  session count moved enough to say anything (`min_session_spread`).
- **Leak**: over the run after its warm-up, RSS is first regressed on what should explain it
  (live sessions, queued messages, WebSocket connections) and the Theil-Sen slope of what is
  left is taken against time, with its 95 % interval (Kendall's S). A leak is growth that is
  both significant (the interval is above zero) and material (above `leak_mb_per_hour`).
  Samples are averaged into at most 200 consecutive groups first: neighbouring seconds are not
  independent, and the interval would otherwise be too narrow.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.criteria import AnalysisSettings
from analysis.run_data import RunData
from monitors.alerts import theil_sen, thinned

Z95 = 1.96
LEAK_GROUPS = 200
MIN_LEAK_SAMPLES = 20
EXPLAINING = ("sessions_active", "queue_depth", "websocket_connections")


def rss_series(run: RunData) -> tuple[str, pd.Series]:
    """The gateway's resident memory in MB: psutil's if sampled, else its own metric."""
    for name in ("rss_mb", "target_rss_mb", "heap_used_mb"):
        series = run.column(name)
        if not series.empty:
            return name, series
    return "", pd.Series(dtype=float)


def memory_per_session(run: RunData, settings: AnalysisSettings) -> dict[str, Any]:
    source, rss = rss_series(run)
    sessions = run.column("sessions_active")
    frame = pd.concat({"rss": rss, "sessions": sessions}, axis=1).dropna()
    if frame.empty:
        return {"estimated": False, "note": "no samples of memory and live sessions"}
    spread = frame["sessions"].max() - frame["sessions"].min()
    if spread < settings.min_session_spread:
        return {
            "estimated": False,
            "note": f"live sessions varied by {spread:g} only (at least "
            f"{settings.min_session_spread} needed to separate them from the baseline)",
        }
    x, y = frame["sessions"].to_numpy(float), frame["rss"].to_numpy(float)
    slope, intercept = np.polyfit(x, y, 1)
    residuals = y - (slope * x + intercept)
    n = len(x)
    sxx = float(((x - x.mean()) ** 2).sum())
    stderr = float(np.sqrt((residuals**2).sum() / max(1, n - 2) / sxx)) if n > 2 else 0.0
    total = float(((y - y.mean()) ** 2).sum())
    return {
        "estimated": True,
        "mb": round(float(slope), 4),
        "stderr_mb": round(stderr, 4),
        "low_mb": round(float(slope) - Z95 * stderr, 4),
        "high_mb": round(float(slope) + Z95 * stderr, 4),
        "baseline_mb": round(float(intercept), 1),
        "r2": round(1 - float((residuals**2).sum()) / total, 3) if total else None,
        "samples": n,
        "sessions_range": [float(frame["sessions"].min()), float(frame["sessions"].max())],
        "memory_source": source,
    }


def leak(run: RunData, settings: AnalysisSettings) -> dict[str, Any]:
    source, rss = rss_series(run)
    if len(rss) < MIN_LEAK_SAMPLES:
        return {"judged": False, "detected": False, "note": "too few memory samples to judge"}
    start, end = float(rss.index.min()), float(rss.index.max())
    after = start + settings.warmup_fraction * (end - start)
    explaining = {name: run.column(name) for name in EXPLAINING}
    frame = pd.concat({"rss": rss, **explaining}, axis=1)
    frame = frame[frame.index >= after].dropna(subset=["rss"]).fillna(0.0)
    if len(frame) < MIN_LEAK_SAMPLES:
        return {"judged": False, "detected": False, "note": "too few samples after the warm-up"}
    t = frame.index.to_numpy(float)
    y = frame["rss"].to_numpy(float)
    used = [n for n in EXPLAINING if frame[n].std() > 0]
    explained = np.zeros_like(y)
    coefficients: dict[str, float] = {}
    if used:
        # RSS = a + b_1 sessions + ... : what these explain is taken out before the trend.
        design = np.column_stack([np.ones_like(y), *(frame[n].to_numpy(float) for n in used)])
        beta, *_ = np.linalg.lstsq(design, y, rcond=None)
        explained = design[:, 1:] @ beta[1:]
        coefficients = {n: round(float(b), 5) for n, b in zip(used, beta[1:], strict=True)}
    points = thinned(list(zip((t - t[0]).tolist(), (y - explained).tolist(), strict=True)), 200)
    slope, low, high = theil_sen(points)
    per_hour, low_h, high_h = slope * 3600, low * 3600, high * 3600
    raw_slope, _, _ = theil_sen(
        thinned(list(zip((t - t[0]).tolist(), y.tolist(), strict=False)), 200)
    )
    detected = low_h > 0 and per_hour > settings.leak_mb_per_hour
    return {
        "judged": True,
        "detected": bool(detected),
        "mb_per_hour": round(per_hour, 2),
        "low_mb_per_hour": round(low_h, 2),
        "high_mb_per_hour": round(high_h, 2),
        "raw_mb_per_hour": round(raw_slope * 3600, 2),
        "threshold_mb_per_hour": settings.leak_mb_per_hour,
        "from_unix": float(t[0]),
        "to_unix": float(t[-1]),
        "samples": len(t),
        "explained_by": coefficients,
        "growth_mb": round(slope * (t[-1] - t[0]), 2),
        "memory_source": source,
    }
