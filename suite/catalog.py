"""What a run can be started with: the scenarios of `conf/scenarios/` and the target profiles
of `conf/targets/`, described for the web UI's form (`GET /suite/options`).

Each scenario is read as the run would read it (at time scale 1: the form scales its durations
as the user types), and said in steps: an arrival phase, a stage of users, a burst, or an
endurance curve, with what the scenario's users need of a profile, so that the form can say
which profile cannot run it before anyone presses Start.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shapes.scenario import (
    CONF_DIR,
    ArrivalsLoad,
    BurstLoad,
    EnduranceLoad,
    Scenario,
    ScenarioError,
    available_scenarios,
    load_scenario,
)
from users.profile import ProfileError, available_profiles, load_profile


def scenario_steps(scenario: Scenario) -> list[dict[str, Any]]:
    """The scenario's load as steps: {name, duration_s, unit, from, to}, unscaled."""
    load = scenario.load
    if isinstance(load, ArrivalsLoad):
        return [
            {
                "name": phase.name or f"phase {index + 1}",
                "duration_s": phase.duration,
                "unit": "arrivals/s",
                "from": phase.arrival_rate,
                "to": phase.ramp_to if phase.ramp_to is not None else phase.arrival_rate,
            }
            for index, phase in enumerate(load.phases)
        ]
    if isinstance(load, EnduranceLoad):
        unit = "users" if load.users is not None else "arrivals/s"
        peak = float(load.users if load.users is not None else load.arrival_rate or 0)
        low = peak * load.night if load.curve == "diurnal" else peak
        return [
            {
                "name": f"endurance ({load.curve})",
                "duration_s": load.duration,
                "unit": unit,
                "from": low,
                "to": peak,
            }
        ]
    if isinstance(load, BurstLoad):
        return []
    steps, before = [], float(load.start_users)
    for index, stage in enumerate(load.stages):
        steps.append(
            {
                "name": stage.name or f"stage {index + 1}",
                "duration_s": stage.duration,
                "unit": "users",
                "from": before,
                "to": float(stage.target),
            }
        )
        before = float(stage.target)
    return steps


def scenario_needs(
    scenario: Scenario, user_classes: Mapping[str, type], *, sessions_given: bool = False
) -> list[tuple[str, str]]:
    """(user class, request role) for every request the scenario's users send. Message
    senders create their sessions unless the user named some (`sessions_given`)."""
    needs = []
    for user in scenario.users:
        cls = user_classes.get(user)
        if getattr(cls, "creates_sessions", False) and not sessions_given:
            needs.append((user, "create_session"))
        needs.extend((user, role) for role in getattr(cls, "needs", ()))
    return needs


def describe_scenario(
    name: str, user_classes: Mapping[str, type], profiles: Mapping[str, Any]
) -> dict[str, Any]:
    """One scenario for the form; `problem` says why it cannot be loaded at all, and
    `lacks_by_profile` which profiles lack a request its users send."""
    try:
        scenario = load_scenario(name, known_users=user_classes)
    except ScenarioError as exc:
        return {"name": name, "description": "", "steps": [], "problem": str(exc)}
    needs = [role for _, role in scenario_needs(scenario, user_classes)]
    lacks = {
        profile_name: f"{name} sends the {missing[0]!r} request, which {profile_name} does not have"
        for profile_name, profile in profiles.items()
        if (missing := profile.lacks(needs))
    }
    burst = scenario.load if isinstance(scenario.load, BurstLoad) else None
    return {
        "name": name,
        "description": scenario.description,
        "model": scenario.model,
        "open_model": scenario.model == "arrivals",
        "users": list(scenario.users),
        "steps": scenario_steps(scenario),
        "duration_s": scenario.duration_s(),
        "burst": {"users": burst.users, "iterations_per_user": burst.iterations_per_user}
        if burst
        else None,
        "problem": "",
        "lacks_by_profile": lacks,
    }


def catalog(
    user_classes: Mapping[str, type], scenarios: Iterable[str] | None = None
) -> dict[str, Any]:
    """Every scenario and target profile of `conf/`, for the form."""
    profiles: dict[str, Any] = {}
    targets = []
    for name in available_profiles(CONF_DIR):
        try:
            profile = profiles[name] = load_profile(name)
            targets.append({"name": name, "description": profile.model.description})
        except ProfileError as exc:
            targets.append({"name": name, "description": "", "problem": str(exc)})
    names = list(scenarios) if scenarios is not None else available_scenarios(CONF_DIR)
    return {
        "scenarios": [describe_scenario(n, user_classes, profiles) for n in names],
        "targets": targets,
    }
