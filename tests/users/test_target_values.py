"""What the user gives a profile (suite.target_values): the key, variables, named sessions."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from suite.target_values import (
    TargetValuesError,
    check_session_prefix,
    named_sessions,
    profile_values,
)
from users.profile import load_profile


def options(**given: object) -> SimpleNamespace:
    defaults = {"api_key": "", "profile_var": [], "sessions": "", "sessions_file": ""}
    return SimpleNamespace(**{**defaults, **given})


def test_a_global_key_is_required_and_kept_as_given() -> None:
    evolution = load_profile("evolution")
    with pytest.raises(TargetValuesError, match=r"needs the gateway's key \(header apikey\)"):
        profile_values(evolution, options(), environ={})
    assert profile_values(evolution, options(api_key="k 1"), environ={}) == {"api_key": "k 1"}
    # The plan's keys are made per session: nothing to give.
    assert profile_values(load_profile("plan"), options(), environ={}) == {}


def test_profile_variables_from_the_option_or_the_environment() -> None:
    wpp = load_profile("wppconnect")
    given = options(profile_var=["secret_key=a=b"])
    assert profile_values(wpp, given, environ={}) == {"secret_key": "a=b"}
    assert profile_values(wpp, options(), environ={"SUITE_SECRET_KEY": "s"}) == {"secret_key": "s"}
    with pytest.raises(TargetValuesError, match=r"needs secret_key \(the server's SECRET_KEY"):
        profile_values(wpp, options(), environ={})
    with pytest.raises(TargetValuesError, match=r"--profile-var secret: .* \(it has: secret_key\)"):
        profile_values(wpp, options(profile_var=["secret=x"]), environ={})
    with pytest.raises(TargetValuesError, match=r"--profile-var 'secret_key': expected NAME=VALUE"):
        profile_values(wpp, options(profile_var=["secret_key"]), environ={})


def test_named_sessions_from_the_option_and_a_file(tmp_path: Path) -> None:
    listed = tmp_path / "sessions.txt"
    listed.write_text("# paired by hand\nsales-1\n\nsales-2  # the second\nsales-1\n", "utf-8")
    given = options(sessions="default, sales-2", sessions_file=str(listed))
    assert named_sessions(given) == ["default", "sales-2", "sales-1"]
    assert named_sessions(options()) == []
    with pytest.raises(TargetValuesError, match=r"'a/b' is not a session name"):
        named_sessions(options(sessions="a/b"))
    empty = tmp_path / "empty.txt"
    empty.write_text("# none yet\n", "utf-8")
    with pytest.raises(TargetValuesError, match=r"no session names in it"):
        named_sessions(options(sessions_file=str(empty)))
    with pytest.raises(TargetValuesError, match=r"cannot read"):
        named_sessions(options(sessions_file=str(tmp_path / "missing.txt")))


def test_a_session_prefix_goes_in_paths() -> None:
    check_session_prefix(SimpleNamespace(session_prefix="team-a_"))
    with pytest.raises(TargetValuesError, match=r"--session-prefix 'a b'"):
        check_session_prefix(SimpleNamespace(session_prefix="a b"))
