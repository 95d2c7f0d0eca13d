"""What the user gives a target profile: its key, its variables, the sessions to use.

- `--api-key` (or GATEWAY_API_KEY): the gateway's global key, for a profile whose auth is a
  key header of the user's (WAHA's `X-Api-Key`, Evolution's `apikey`).
- `--profile-var NAME=VALUE` (repeatable, or SUITE_<NAME>): any other value a profile's
  templates name and declare under `variables:` (wppconnect's secret key).
- `--sessions NAME[,NAME...]` or `--sessions-file FILE`: sessions the user paired by hand, for
  the message scenarios; the suite neither creates nor deletes them.

Each problem is one line naming the option that fixes it. The values are secrets for all the
suite knows: they live on the environment for the users and never reach a log, CSV or report.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from users.auth import needs_user_key
from users.profile import TargetProfile

_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_SESSION = re.compile(r"[A-Za-z0-9_.@:-]+")


class TargetValuesError(ValueError):
    """Something the profile needs that the user did not give; one line."""


def profile_values(
    profile: TargetProfile, options: Any, environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """The values the user gives the profile's templates: the global key and its variables."""
    values: dict[str, str] = {}
    for item in getattr(options, "profile_var", None) or []:
        name, sep, value = item.partition("=")
        name = name.strip().lower()
        if not sep or not _NAME.fullmatch(name):
            raise TargetValuesError(f"--profile-var {item.split('=')[0]!r}: expected NAME=VALUE")
        if name not in profile.variables:
            known = ", ".join(sorted(profile.variables)) or "none"
            raise TargetValuesError(
                f"--profile-var {name}: the target profile {profile.name!r} has no such "
                f"variable (it has: {known})"
            )
        values[name] = value
    for name in sorted(profile.variables):
        if name not in values:
            given = environ.get(f"SUITE_{name.upper()}")
            if not given:
                what = profile.model.variables.get(name, "")
                raise TargetValuesError(
                    f"the target profile {profile.name!r} needs {name}"
                    + (f" ({what})" if what else "")
                    + f": give --profile-var {name}=VALUE or set SUITE_{name.upper()}"
                )
            values[name] = given
    key = getattr(options, "api_key", "") or ""
    if needs_user_key(profile):
        if not key:
            raise TargetValuesError(
                f"the target profile {profile.name!r} needs the gateway's key "
                f"(header {profile.auth.header}): give --api-key KEY or set GATEWAY_API_KEY"
            )
        values["api_key"] = key
    return values


def check_session_prefix(options: Any) -> None:
    prefix = getattr(options, "session_prefix", "") or ""
    if prefix and not re.fullmatch(r"[A-Za-z0-9_-]+", prefix):
        raise TargetValuesError(
            f"--session-prefix {prefix!r}: letters, digits, '-' and '_' only (it goes in paths)"
        )


def named_sessions(options: Any) -> list[str]:
    """The sessions the user named (`--sessions`, `--sessions-file`), in order, once each."""
    names = [n.strip() for n in (getattr(options, "sessions", "") or "").split(",")]
    path = getattr(options, "sessions_file", "") or ""
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise TargetValuesError(
                f"--sessions-file {path}: cannot read ({exc.strerror})"
            ) from None
        names += [line.split("#", 1)[0].strip() for line in text.splitlines()]
    kept = list(dict.fromkeys(n for n in names if n))
    for name in kept:
        if not _SESSION.fullmatch(name):
            raise TargetValuesError(f"--sessions: {name!r} is not a session name")
    if path and not kept:
        raise TargetValuesError(f"--sessions-file {path}: no session names in it")
    return kept


def session_cycle(names: list[str]) -> Iterator[str] | None:
    """Hands the named sessions to message senders in turn (None: each creates its own)."""
    return itertools.cycle(names) if names else None
