"""The shipped target profiles against the real gateways (real_gateway; ../shared/realgw/).

The suite runs inside the gateways' loopback-only namespace, as every client of theirs must.
No run here sends a message: the sessions are never paired (no WhatsApp servers), and the one
number given is the one the realgw notes allow for a probe of an unpaired session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import Run, locust_command, run_command
from tests.realgw.gateways import RealGateway

pytestmark = pytest.mark.real_gateway

PROBE_NUMBER = "5511999999999"


@pytest.fixture(autouse=True)
def no_made_up_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/conftest.py lets test runs make numbers up (for the embedded gateway): never here."""
    monkeypatch.delenv("SUITE_SYNTHETIC_NUMBERS", raising=False)


def locust_in(
    gateway: RealGateway, scenario: str, report_dir: Path, *extra: str, time_scale: float = 1.0
) -> Run:
    command = locust_command(
        scenario, report_dir, "--target-pid", str(gateway.pid), *extra,
        time_scale=time_scale, host=gateway.url,
    )  # fmt: skip
    return run_command(gateway.command(command), report_dir, timeout=300)


def test_evolution_sessions_compressed(evolution_gateway: RealGateway, tmp_path: Path) -> None:
    """Instances created with qrcode: false; the suite's count against the gateway's own,
    errors under 5 %, memory per instance; then the suite's own cleanup deletes them all."""
    gateway = evolution_gateway
    key = ("--target-profile", "evolution", "--api-key", gateway.api_key)
    run = locust_in(
        gateway, "sessions", tmp_path / "kept", *key, "--keep-sessions", time_scale=0.02
    )
    assert run.returncode in (0, 1, 3), run.explain()  # a verdict: Approved, Failed, Degraded
    summary = run.summary
    created, theirs = summary["sessions"]["created"], gateway.count()
    errors = summary["totals"]["error_rate_pct"]
    estimate = run.report["analysis"]["memory_per_session"]
    print(
        f"evolution: created {created} of {summary['sessions']['attempted']}, gateway counts "
        f"{theirs}; errors {errors} %; memory per instance {estimate.get('mb')} MB "
        f"(95 % {estimate.get('low_mb')} to {estimate.get('high_mb')}, {estimate.get('samples')} "
        f"samples, sessions from {estimate.get('sessions_source')}); p95 create "
        f"{summary['requests']['POST /instance/create']['latency']['p95_ms']} ms"
    )
    assert created >= 100
    assert abs(created - theirs) <= 0.01 * theirs, (created, theirs)
    assert errors < 5.0
    assert estimate["estimated"], estimate
    assert estimate["sessions_source"] == "sessions_active"  # evolution_instances_total
    gateway.delete_all()
    assert gateway.wait_count(0, timeout_s=60) == 0

    run = locust_in(gateway, "sessions", tmp_path / "cleaned", *key, time_scale=0.005)
    assert run.returncode in (0, 1, 3), run.explain()
    created, deleted = run.summary["sessions"]["created"], run.summary["sessions"]["deleted"]
    print(f"evolution cleanup: created {created}, deleted {deleted}, left {gateway.count()}")
    assert created > 0 and deleted == created
    assert gateway.wait_count(0, timeout_s=30) == 0


def test_waha_messages_on_an_unpaired_session(waha_gateway: RealGateway, tmp_path: Path) -> None:
    """The session `default` exists but is not paired: the run ends at once with a reason
    naming its state, no traceback, nothing sent."""
    gateway = waha_gateway
    created = gateway.request("POST", "/api/sessions", {"name": "default", "start": True})
    assert created.status == 201, created.body
    scenario = tmp_path / "messages.yaml"
    conf = Path(__file__).resolve().parents[2] / "conf" / "scenarios" / "messages.yaml"
    text = conf.read_text(encoding="utf-8")
    scenario.write_text(text.replace("delivery_timeout_s: 30", "ready_timeout_s: 10"), "utf-8")
    run = locust_in(
        gateway, str(scenario), tmp_path / "run", "--target-profile", "waha",
        "--api-key", gateway.api_key, "--sessions", "default", "--recipients", PROBE_NUMBER,
    )  # fmt: skip
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    print(f"waha: exit {run.returncode} after {run.elapsed_s:.1f} s; {errors[:1]}")
    assert run.returncode == 1, run.explain()
    assert errors and "'default' is STARTING, not WORKING" in errors[0], run.stderr
    assert "POST /api/sendText" not in run.summary["requests"]
    assert not run.summary["messages"]["accepted"]
    assert run.summary["stopped_because"]["state"] == "STARTING"
