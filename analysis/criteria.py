"""Pass/fail criteria as data (`conf/criteria.yaml`), and the verdict they give.

Each criterion names a metric (see `analysis.metrics.METRICS`), a scope (`overall`, a request
such as "POST /api/webhook", `stage:<name or number>`, or `each stage`), one limit (`max` or
`min`), and a severity: `fail` makes the verdict Failed, `degrade` makes it Degraded. A criterion
may name the `scenarios` it applies to, and may `abort_on_fail` (k6's `abortOnFail`): judged
live, after `abort_after` seconds of the run, a violation stops the run.

A metric the run did not measure (no sessions, no gateway metrics) is "not measured": listed in
the report, never counted for or against the verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shapes.scenario import parse_duration

Severity = Literal["fail", "degrade"]
Status = Literal["pass", "fail", "degrade", "not measured"]

APPROVED, DEGRADED, FAILED = "approved", "degraded", "failed"
CRITERIA_COPY = "criteria.yaml"  # the copy kept in each run's folder, judged by again later

# The metrics a criterion can name (computed by `analysis.metrics`, which keeps to this list):
# judged over the run or a request, and those that can also be read per stage.
LATENCY_METRICS = frozenset({"p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms"})
STAGE_METRICS = frozenset({*LATENCY_METRICS, "error_rate_pct", "requests_per_s", "cpu_pct",
                           "queue_growth_per_s"})  # fmt: skip
RUN_METRICS = frozenset({
    *LATENCY_METRICS, "error_rate_pct", "requests_per_s", "session_failure_pct", "cpu_pct",
    "memory_mb", "memory_per_session_mb", "memory_leak", "memory_growth_mb_per_h",
    "max_concurrent_sessions", "messages_per_s_per_session",
})  # fmt: skip


def is_metric(name: str) -> bool:
    return name in RUN_METRICS or name in STAGE_METRICS


EXIT_CODES = {APPROVED: 0, FAILED: 1, DEGRADED: 3}


class CriteriaError(ValueError):
    """A criteria file that cannot be used; the message is one line."""


class Criterion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    metric: str
    scope: str = "overall"
    max: float | None = None
    min: float | None = None
    severity: Severity = "fail"
    scenarios: tuple[str, ...] | None = None
    abort_on_fail: bool = False
    abort_after: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _durations(cls, data: Any) -> Any:
        if isinstance(data, dict) and "abort_after" in data:
            data = {**data, "abort_after": parse_duration(data["abort_after"])}
        return data

    @model_validator(mode="after")
    def _one_limit(self) -> Criterion:
        if (self.max is None) == (self.min is None):
            raise ValueError("give exactly one of max or min")
        return self

    @property
    def limit(self) -> float:
        return self.max if self.max is not None else self.min  # type: ignore[return-value]

    @property
    def op(self) -> str:
        return "max" if self.max is not None else "min"

    def applies_to(self, scenario: str) -> bool:
        return self.scenarios is None or scenario in self.scenarios

    def violated_by(self, value: float, tolerance_pct: float = 0.0) -> bool:
        """Beyond the limit by more than the measurement's own precision (`tolerance_pct`)."""
        margin = abs(self.limit) * tolerance_pct / 100
        if self.max is not None:
            return value > self.max + margin
        return value < self.limit - margin


class AnalysisSettings(BaseModel):
    """How the analysis reads a run (the `analysis:` section of the criteria file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warmup_fraction: float = Field(0.1, ge=0, lt=1)
    leak_mb_per_hour: float = Field(60.0, gt=0)
    cpu_window_s: float = Field(10.0, gt=0)
    min_session_spread: int = Field(20, ge=2)


class CriteriaFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    criteria: tuple[Criterion, ...]
    analysis: AnalysisSettings = AnalysisSettings()
    alerts: dict[str, float] = {}


def load_criteria(path: Path, metrics: Callable[[str], bool] | None = None) -> CriteriaFile:
    """Read and check a criteria file; `metrics(name)` says whether a metric name is known."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CriteriaError(f"{path}: cannot read the criteria file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise CriteriaError(f"{path}: not UTF-8 text") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise CriteriaError(f"{path}: not valid YAML{where}") from exc
    try:
        parsed = CriteriaFile.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "the file"
        raise CriteriaError(f"{path}: {where}: {error['msg']}") from exc
    for criterion in parsed.criteria:
        if metrics is not None and not metrics(criterion.metric):
            raise CriteriaError(f"{path}: criterion {criterion.name!r}: unknown metric")
    return parsed


@dataclass
class Judgement:
    """One criterion judged on one scope: the value, the limit and the outcome."""

    name: str
    metric: str
    scope: str
    op: str
    limit: float
    severity: str
    value: float | None
    status: Status
    unit: str = ""
    approximate: bool = False
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(
    criterion: Criterion, scope: str, value: float | None, tolerance_pct: float = 0.0, **facts: Any
) -> Judgement:
    """`tolerance_pct`: how precise the value is; within it of the limit is not a violation."""
    if value is None:
        status: Status = "not measured"
    elif criterion.violated_by(value, tolerance_pct):
        status = criterion.severity
    else:
        status = "pass"
    return Judgement(
        name=criterion.name,
        metric=criterion.metric,
        scope=scope,
        op=criterion.op,
        limit=criterion.limit,
        severity=criterion.severity,
        value=value,
        status=status,
        **facts,
    )


@dataclass
class Verdict:
    status: str
    reasons: list[Judgement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]


def verdict_of(judgements: list[Judgement], extra_failures: list[str] | None = None) -> Verdict:
    """Failed if a `fail` criterion is violated (or the run could not be judged), Degraded if
    only `degrade` ones are, Approved otherwise. Reasons are the violated criteria."""
    failed = [j for j in judgements if j.status == "fail"]
    degraded = [j for j in judgements if j.status == "degrade"]
    if failed or extra_failures:
        return Verdict(FAILED, failed, list(extra_failures or []))
    if degraded:
        return Verdict(DEGRADED, degraded)
    return Verdict(APPROVED)
