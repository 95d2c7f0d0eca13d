"""A start from the web UI's form, checked before Locust starts anything.

Locust's `POST /swarm` copies the form's fields into the options and starts the shape; a
scenario that does not load would then fail inside the shape, as a 500 and a traceback in the
log. The suite checks the form first, as the command line is checked (`suite.run`): the
scenario and its time scale, the target profile and what the scenario's users need of it, the
target (loopback unless `--allow-remote`, and reachable) and the phone numbers the users may
send to. A problem is one line, answered as Locust answers a refused start:
`{"success": false, "message": ...}`.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from shapes.scenario import ScenarioError, load_scenario
from suite.catalog import scenario_needs
from suite.recipients import settle_numbers
from suite.target import TargetError, check_reachable, check_target
from users.numbers import NumbersError
from users.profile import ProfileError, load_profile

FIELDS = ("scenario", "time_scale", "target_profile", "host")


def check_start(
    form: Mapping[str, str],
    options: argparse.Namespace,
    user_classes: Mapping[str, type],
    embedded_url: str | None,
    *,
    profile_now: str,
    synthetic_asked: bool = False,
    sessions_given: bool = False,
    distributed: bool = False,
) -> str | None:
    """What is wrong with starting the form's run, in one line; None when nothing is.
    A distributed run keeps the profile it started with: its workers loaded it then."""
    given = {key: form[key].strip() for key in FIELDS if form.get(key, "").strip()}
    try:
        time_scale = float(given.get("time_scale", options.time_scale))
    except ValueError:
        return f"time scale {given['time_scale']!r} is not a number"
    try:
        scenario = load_scenario(
            given.get("scenario", options.scenario),
            time_scale=time_scale,
            known_users=user_classes,
        )
        profile = load_profile(given.get("target_profile", options.target_profile))
    except (ScenarioError, ProfileError) as exc:
        return str(exc)
    if distributed and profile.name != profile_now:
        return (
            f"the target profile is {profile_now!r} for every worker of this distributed run: "
            "start the master and workers with --target-profile to change it"
        )
    for user, role in scenario_needs(scenario, user_classes, sessions_given=sessions_given):
        if profile.lacks([role]):
            return (
                f"scenario {scenario.name!r}: {user} sends the {role!r} request, which the "
                f"target profile {profile.name!r} does not have"
            )
    host = given.get("host", "")
    if "host" in form and not host:  # Locust would set the target to "", and load nothing
        embedded = f" (the embedded gateway is {embedded_url})" if embedded_url else ""
        return f"the host is empty: give the gateway's URL{embedded}"
    if host:
        try:
            check_target(host, options.allow_remote)
            check_reachable(host)
        except TargetError as exc:
            return str(exc)
    target = host or embedded_url
    trial: Any = argparse.Namespace(**vars(options))  # settle_numbers writes into it
    classes = [user_classes[name] for name in scenario.users]
    try:
        settle_numbers(
            trial,
            classes,
            embedded=target is not None and target == embedded_url,
            explicit=synthetic_asked,
        )
    except NumbersError as exc:
        return str(exc)
    return None
