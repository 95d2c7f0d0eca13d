"""Request templates: "{name}" placeholders in paths and JSON bodies, compiled once.

Every request the generator sends fills one; `compile_template` and `compile_json` parse a
template once and return a function of the values. A string that is exactly one placeholder
takes the value as it is (a number stays a number); others are formatted into the string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
Filler = Callable[[Mapping[str, Any]], Any]


def placeholders(template: Any) -> set[str]:
    """The names a template needs, in strings, lists and mappings (keys included)."""
    if isinstance(template, str):
        return set(PLACEHOLDER.findall(template))
    if isinstance(template, dict):
        return set().union(*(placeholders(k) | placeholders(v) for k, v in template.items()))
    if isinstance(template, list):
        return set().union(*(placeholders(item) for item in template))
    return set()


def fill(template: Any, values: Mapping[str, Any]) -> Any:
    """The template with its placeholders replaced by `values`."""
    return compile_template(template)(values)


def compile_template(template: Any) -> Filler:
    """`fill` for one template, with the template parsed once."""
    if isinstance(template, str):
        whole = PLACEHOLDER.fullmatch(template)
        if whole:
            name = whole.group(1)
            return lambda values: values[name]
        parts = PLACEHOLDER.split(template)  # literal, name, literal, name, ..., literal
        if len(parts) == 1:
            return lambda _: template
        first, names, literals = parts[0], parts[1::2], parts[2::2]
        pairs = list(zip(names, literals, strict=True))
        return lambda values: (
            first + "".join([str(values[name]) + literal for name, literal in pairs])
        )
    if isinstance(template, dict):
        items = [(key, compile_template(value)) for key, value in template.items()]
        return lambda values: {key: filler(values) for key, filler in items}
    if isinstance(template, list):
        fillers = [compile_template(item) for item in template]
        return lambda values: [filler(values) for filler in fillers]
    return lambda _: template


_encode_string = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def _json_value(value: Any) -> str:
    if type(value) is str:
        return _encode_string(value)
    if type(value) is int:
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def compile_json(template: Any) -> Filler:
    """`json.dumps(fill(template, values))`, with the template's constant parts encoded once:
    the same JSON text, written for every request the generator sends without building the
    dict and walking it again. The template is flattened into constant text and the values
    between, joined once per request (one join, not one per nested object)."""
    pieces = _merged(_json_pieces(template))
    if len(pieces) == 1:
        text = pieces[0]
        return lambda _: text
    first = pieces[0]
    pairs = list(zip(pieces[1::2], pieces[2::2], strict=True))  # (filler, literal after it)
    return lambda values: first + "".join([filler(values) + text for filler, text in pairs])


def _json_pieces(template: Any) -> list[str | Filler]:
    """The JSON text of `template` as constant strings and fillers of the values."""
    if isinstance(template, str):
        whole = PLACEHOLDER.fullmatch(template)
        if whole:
            name = whole.group(1)
            return [lambda values: _json_value(values[name])]
        if not PLACEHOLDER.search(template):
            return [_json_value(template)]
        filler = compile_template(template)
        return [lambda values: _encode_string(filler(values))]
    if isinstance(template, dict):
        pieces: list[str | Filler] = ["{"]
        for index, (key, value) in enumerate(template.items()):
            pieces += [("," if index else "") + _encode_string(str(key)) + ":"]
            pieces += _json_pieces(value)
        return [*pieces, "}"]
    if isinstance(template, list):
        pieces = ["["]
        for index, item in enumerate(template):
            pieces += [","] if index else []
            pieces += _json_pieces(item)
        return [*pieces, "]"]
    return [_json_value(template)]


def _merged(pieces: list[str | Filler]) -> list[Any]:
    """Adjacent constants joined, so that the list alternates: text, filler, text, ..., text."""
    merged: list[Any] = [""]
    for piece in pieces:
        if isinstance(piece, str):
            merged[-1] += piece
        else:
            merged += [piece, ""]
    return merged
