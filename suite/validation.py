"""One line from a pydantic ValidationError: the field's dotted path and what is wrong.

Scenario files and target profiles are strict pydantic models; a user who made a mistake in
one reads `load.phases[1].duration: ...`, not pydantic's multi-line report.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError

# (the previous location part, this part) -> whether this part is a tagged union's tag, which
# pydantic puts in the location but is not a field the user wrote.
IsTag = Callable[[object, object], bool]


def first_problem(exc: ValidationError, is_tag: IsTag = lambda previous, part: False) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    # A typo is both an unknown field and a missing one: name the typo.
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    parts: list[str] = []
    loc = list(error["loc"])
    for i, part in enumerate(loc):
        if i > 0 and is_tag(loc[i - 1], part):
            continue
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
    field = "".join(parts) or "the file"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field (a typo?)"
    elif error["type"] == "missing":
        message = "required field is missing"
    return f"{field}: {message}"
