"""Field paths into a JSON answer: `instance.state`, `key.id`, `response[0].id`.

A gateway's answers nest what the suite reads (Evolution's `{"instance": {"state": "open"}}`,
wppconnect's `{"response": [{"id": ...}]}`); a profile names the field by its path, parsed once
into a reader that returns None where the answer does not have it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_STEP = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]")

Reader = Callable[[Any], Any]


class FieldPathError(ValueError):
    pass


def parse(path: str) -> list[str | int]:
    """`response[0].id` -> ["response", 0, "id"]; raises FieldPathError on anything else."""
    steps: list[str | int] = []
    position = 0
    while position < len(path):
        if steps and path[position] == "." and not path.startswith("[", position + 1):
            position += 1
        match = _STEP.match(path, position)
        if match is None:
            raise FieldPathError(f"{path!r} is not a field path (like key.id or response[0].id)")
        key, index = match.groups()
        steps.append(key if key is not None else int(index))
        position = match.end()
    if not steps:
        raise FieldPathError("an empty field path")
    return steps


def compile_path(path: str) -> Reader:
    """A reader of `path`: the value there, or None when the document has no such field."""
    steps = parse(path)
    if len(steps) == 1 and isinstance(steps[0], str):
        only = steps[0]
        return lambda document: document.get(only) if type(document) is dict else None

    def read(document: Any) -> Any:
        for step in steps:
            if isinstance(step, str):
                if type(document) is not dict:
                    return None
                document = document.get(step)
            else:
                if type(document) is not list or not -len(document) <= step < len(document):
                    return None
                document = document[step]
        return document

    return read
