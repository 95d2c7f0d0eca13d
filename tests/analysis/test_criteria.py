"""Criteria as data: loading `conf/criteria.yaml`, judging a value, and the run's verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.criteria import (
    APPROVED,
    DEGRADED,
    EXIT_CODES,
    FAILED,
    AnalysisSettings,
    CriteriaError,
    Criterion,
    Judgement,
    judge,
    load_criteria,
    verdict_of,
)
from analysis.metrics import is_metric

ROOT = Path(__file__).resolve().parents[2]
CRITERIA = ROOT / "conf" / "criteria.yaml"


def criterion(**fields) -> Criterion:
    return Criterion.model_validate({"name": "c", "metric": "p99_ms", **fields})


def judged(status: str, name: str = "c", severity: str = "fail") -> Judgement:
    return Judgement(name, "p99_ms", "overall", "max", 1.0, severity, 2.0, status)  # type: ignore[arg-type]


# --- the real criteria file ----------------------------------------------------------------


def test_the_plans_criteria_file_loads_with_known_metrics() -> None:
    loaded = load_criteria(CRITERIA, is_metric)
    by_name = {c.name: c for c in loaded.criteria}
    assert list(by_name) == [
        "error rate",
        "response time p99",
        "webhook p95",
        "session creation failures",
        "memory per session",
        "CPU per instance",
        "memory leak",
        "concurrent sessions",
        "messages per second per session",
    ]
    assert all(is_metric(c.metric) for c in loaded.criteria)
    # The plan's limits, as written in the file.
    error_rate = by_name["error rate"]
    assert (error_rate.metric, error_rate.scope, error_rate.op, error_rate.limit) == (
        "error_rate_pct",
        "overall",
        "max",
        5.0,
    )
    assert error_rate.severity == "fail"
    assert by_name["response time p99"].max == 5000
    webhook = by_name["webhook p95"]
    assert (webhook.scope, webhook.max, webhook.severity) == ("POST /api/webhook", 100, "degrade")
    sessions = by_name["concurrent sessions"]
    assert (sessions.op, sessions.limit, sessions.max) == ("min", 100.0, None)
    assert sessions.scenarios == ("sessions", "stress")
    assert by_name["memory leak"].max == 0
    assert by_name["messages per second per session"].scenarios == ("messages",)
    assert loaded.analysis == AnalysisSettings(
        warmup_fraction=0.1, leak_mb_per_hour=60, cpu_window_s=10, min_session_spread=20
    )
    assert loaded.alerts == {"memory_mb": 1024, "cpu_pct": 80, "leak_mb_per_min": 1.0}


def test_is_metric_knows_the_metrics_the_criteria_file_documents() -> None:
    documented = {
        "error_rate_pct",
        "p50_ms",
        "p90_ms",
        "p95_ms",
        "p99_ms",
        "max_ms",
        "requests_per_s",
        "session_failure_pct",
        "memory_per_session_mb",
        "cpu_pct",
        "memory_mb",
        "memory_leak",
        "memory_growth_mb_per_h",
        "max_concurrent_sessions",
        "messages_per_s_per_session",
        "queue_growth_per_s",
    }
    assert all(is_metric(name) for name in documented)
    assert not is_metric("p98_ms")
    assert not is_metric("error_rate")


def test_optional_fields_and_durations(tmp_path: Path) -> None:
    path = tmp_path / "criteria.yaml"
    path.write_text(
        "criteria:\n"
        "  - {name: p95, metric: p95_ms, max: 250, abort_on_fail: true, abort_after: 2m}\n"
        "  - {name: rate, metric: requests_per_s, scope: 'stage:2', min: 50.5}\n"
        "analysis: {warmup_fraction: 0.25}\n",
        encoding="utf-8",
    )
    loaded = load_criteria(path, is_metric)
    p95, rate = loaded.criteria
    assert p95.abort_on_fail and p95.abort_after == 120.0
    assert (p95.scope, p95.severity, p95.scenarios) == ("overall", "fail", None)
    assert (rate.scope, rate.op, rate.limit) == ("stage:2", "min", 50.5)
    assert loaded.analysis.warmup_fraction == 0.25
    assert loaded.analysis.leak_mb_per_hour == 60.0  # the rest keep their defaults
    assert loaded.alerts == {}


# --- files that cannot be used -------------------------------------------------------------

BAD_FILES = {
    "malformed_yaml": ("criteria:\n  - {name: x, metric: p99_ms\n", "not valid YAML (line 3)"),
    "tab_indent": ("criteria:\n\t- x\n", "not valid YAML (line 2)"),
    "unknown_metric": (
        "criteria:\n  - {name: slow, metric: p98_ms, max: 1}\n",
        "criterion 'slow': unknown metric",
    ),
    "both_limits": (
        "criteria:\n  - {name: x, metric: p99_ms, max: 1, min: 0}\n",
        "criteria.0: Value error, give exactly one of max or min",
    ),
    "no_limit": (
        "criteria:\n  - {name: x, metric: p99_ms}\n",
        "criteria.0: Value error, give exactly one of max or min",
    ),
    "wrong_type": (
        "criteria:\n"
        "  - {name: x, metric: p99_ms, max: 1}\n"
        "  - {name: y, metric: p95_ms, max: lots}\n",
        "criteria.1.max: Input should be a valid number",
    ),
    "unknown_key": (
        "criteria:\n  - {name: x, metric: p99_ms, max: 1, colour: red}\n",
        "criteria.0.colour: Extra inputs are not permitted",
    ),
    "unknown_top_level_key": ("criteria: []\nverdicts: {}\n", "verdicts: Extra inputs"),
    "unknown_severity": (
        "criteria:\n  - {name: x, metric: p99_ms, max: 1, severity: warn}\n",
        "criteria.0.severity: Input should be 'fail' or 'degrade'",
    ),
    "bad_duration": (
        "criteria:\n  - {name: x, metric: p99_ms, max: 1, abort_after: soon}\n",
        "'soon' is not a duration",
    ),
    "bad_analysis": (
        "criteria: []\nanalysis: {warmup_fraction: 1.5}\n",
        "analysis.warmup_fraction: Input should be less than 1",
    ),
    "no_criteria": ("analysis: {}\n", "criteria: Field required"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_file_is_one_line_naming_the_file(tmp_path: Path, case: str) -> None:
    text, expected = BAD_FILES[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CriteriaError) as raised:
        load_criteria(path, is_metric)
    message = str(raised.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    assert expected in message


def test_a_missing_file_is_a_criteria_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(CriteriaError, match=r"cannot read the criteria file") as raised:
        load_criteria(path, is_metric)
    assert str(raised.value).startswith(str(path))
    assert "\n" not in str(raised.value)


def test_metric_names_are_only_checked_with_a_checker(tmp_path: Path) -> None:
    path = tmp_path / "criteria.yaml"
    path.write_text("criteria:\n  - {name: x, metric: anything, max: 1}\n", encoding="utf-8")
    assert load_criteria(path).criteria[0].metric == "anything"
    with pytest.raises(CriteriaError, match="unknown metric"):
        load_criteria(path, is_metric)


def test_a_file_that_is_not_utf8_is_a_criteria_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("criteria:\n  - {name: latência, metric: p99_ms, max: 1}\n".encode("latin-1"))
    with pytest.raises(CriteriaError) as raised:
        load_criteria(path, is_metric)
    assert str(raised.value).startswith(str(path))


# --- judging one value ---------------------------------------------------------------------


def test_judge_a_max_limit() -> None:
    p99 = criterion(max=5000, severity="fail")
    assert judge(p99, "overall", 4999.0).status == "pass"
    assert judge(p99, "overall", 5000.0).status == "pass"  # at the limit is within it
    assert judge(p99, "overall", 5000.5).status == "fail"
    assert judge(p99, "overall", None).status == "not measured"
    slow = criterion(max=100, severity="degrade")
    assert judge(slow, "POST /api/webhook", 101.0).status == "degrade"


def test_a_judgement_carries_the_criterion_and_facts() -> None:
    p95 = criterion(name="webhook p95", metric="p95_ms", max=100, severity="degrade")
    result = judge(p95, "stage 2", 150.0, 1.0, unit="ms", approximate=True, note="windows")
    assert result.as_dict() == {
        "name": "webhook p95",
        "metric": "p95_ms",
        "scope": "stage 2",
        "op": "max",
        "limit": 100.0,
        "severity": "degrade",
        "value": 150.0,
        "status": "degrade",
        "unit": "ms",
        "approximate": True,
        "note": "windows",
    }


@pytest.mark.parametrize(
    ("value", "tolerance_pct", "status"),
    [
        (5049.0, 1.0, "pass"),  # 0.98 % beyond: within the value's own precision
        (5050.0, 1.0, "pass"),  # exactly 1 % beyond
        (5051.0, 1.0, "fail"),  # 1.02 % beyond
        (5049.0, 0.0, "fail"),  # an exact value has no tolerance
        (5400.0, 1.0, "fail"),
    ],
)
def test_tolerance_around_a_max(value: float, tolerance_pct: float, status: str) -> None:
    assert judge(criterion(max=5000), "overall", value, tolerance_pct).status == status


@pytest.mark.parametrize(
    ("value", "tolerance_pct", "status"),
    [
        (100.0, 0.0, "pass"),
        (250.0, 0.0, "pass"),
        (99.99, 0.0, "degrade"),
        (99.2, 1.0, "pass"),  # 0.8 % short: within 1 %
        (98.9, 1.0, "degrade"),  # 1.1 % short
        (0.0, 1.0, "degrade"),
    ],
)
def test_a_min_limit(value: float, tolerance_pct: float, status: str) -> None:
    sessions = criterion(metric="max_concurrent_sessions", min=100, severity="degrade")
    assert sessions.op == "min" and sessions.limit == 100
    result = judge(sessions, "overall", value, tolerance_pct)
    assert (result.status, result.op, result.limit) == (status, "min", 100.0)


def test_a_limit_of_zero_has_no_tolerance() -> None:
    leak = criterion(metric="memory_leak", max=0)
    assert judge(leak, "overall", 0.0, 1.0).status == "pass"
    assert judge(leak, "overall", 1.0, 1.0).status == "fail"


# --- the verdict ---------------------------------------------------------------------------


def test_verdict_of_nothing_violated_is_approved() -> None:
    verdict = verdict_of([judged("pass"), judged("not measured"), judged("pass")])
    assert (verdict.status, verdict.exit_code, verdict.reasons, verdict.notes) == (
        APPROVED,
        0,
        [],
        [],
    )
    assert verdict_of([]).status == APPROVED


def test_degraded_when_only_degrade_criteria_are_violated() -> None:
    slow = judged("degrade", "webhook p95", "degrade")
    verdict = verdict_of([judged("pass"), slow, judged("not measured")])
    assert (verdict.status, verdict.exit_code) == (DEGRADED, 3)
    assert verdict.reasons == [slow]


def test_failed_beats_degraded() -> None:
    slow = judged("degrade", "webhook p95", "degrade")
    errors = judged("fail", "error rate")
    p99 = judged("fail", "response time p99")
    verdict = verdict_of([slow, errors, judged("pass"), p99])
    assert (verdict.status, verdict.exit_code) == (FAILED, 1)
    assert [j.name for j in verdict.reasons] == ["error rate", "response time p99"]


def test_extra_failures_make_the_run_failed() -> None:
    verdict = verdict_of([judged("pass"), judged("degrade", severity="degrade")], ["no_requests"])
    assert (verdict.status, verdict.exit_code) == (FAILED, 1)
    assert verdict.reasons == []
    assert verdict.notes == ["no_requests"]
    assert verdict_of([judged("pass")], []).status == APPROVED


def test_exit_codes() -> None:
    assert EXIT_CODES == {"approved": 0, "failed": 1, "degraded": 3}


# --- scenarios -----------------------------------------------------------------------------


def test_applies_to_the_named_scenarios_only() -> None:
    anywhere = criterion(max=1)
    assert anywhere.applies_to("stress") and anywhere.applies_to("anything")
    capacity = criterion(
        metric="max_concurrent_sessions", min=100, scenarios=["sessions", "stress"]
    )
    assert capacity.scenarios == ("sessions", "stress")
    assert capacity.applies_to("sessions")
    assert capacity.applies_to("stress")
    assert not capacity.applies_to("messages")
    assert not capacity.applies_to("stres")
    loaded = {c.name: c for c in load_criteria(CRITERIA, is_metric).criteria}
    rate = loaded["messages per second per session"]
    assert rate.applies_to("messages") and not rate.applies_to("sessions")
