"""The phone numbers a user puts in the messages it sends and the inbound events it posts.

A real gateway is connected to real phones, so a made-up number there is a real person's: the
plan's random Brazilian mobiles (55119 and 9 digits) are used only where the run allows made-up
numbers (`synthetic_numbers`: the embedded reference gateway, or `--synthetic-numbers` given);
elsewhere only the numbers the user gave (`--recipients`), spread over them at random. With
neither, there is no number to use: `NoNumbers`, and the user sends nothing.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

NUMBER = re.compile(r"\+?[1-9]\d{7,14}")  # E.164: country code first, 8 to 15 digits


class NoNumbers(LookupError):
    """No number may be used: none given, and made-up ones are not allowed here."""


class NumbersError(ValueError):
    """A number list that cannot be used; the message is one line."""


def parse_numbers(text: str, where: str) -> tuple[str, ...]:
    """Numbers separated by commas, spaces or lines (`#` starts a comment), each once."""
    items = [
        item
        for line in text.splitlines()
        for item in re.split(r"[,\s]+", line.split("#", 1)[0])
        if item
    ]
    bad = next((item for item in items if not NUMBER.fullmatch(item)), None)
    if bad is not None:
        raise NumbersError(
            f"{where}: {bad!r} is not a phone number (country code first, 8 to 15 digits, "
            "e.g. 5511999990001)"
        )
    return tuple(dict.fromkeys(item.lstrip("+") for item in items))


class PhoneNumbers:
    """Where a user's messages go, and whom its inbound events come from."""

    def __init__(self, recipients: Sequence[str], synthetic: bool) -> None:
        self.recipients = tuple(recipients)
        self.synthetic = synthetic

    @classmethod
    def from_options(cls, options: Any) -> PhoneNumbers:
        """From the run's options: `recipients` (as the master wrote them, comma-separated)
        and `synthetic_numbers`. Options a process lacks (a test's) allow nothing."""
        text = str(getattr(options, "recipients", "") or "")
        recipients = parse_numbers(text, "--recipients") if text else ()
        return cls(recipients, bool(getattr(options, "synthetic_numbers", False)))

    @property
    def usable(self) -> bool:
        return bool(self.recipients) or self.synthetic

    def pick(self) -> str:
        if self.recipients:
            return random.choice(self.recipients)
        if self.synthetic:
            return f"55119{random.randrange(10**9):09d}"
        raise NoNumbers("no --recipients, and made-up numbers are not allowed for this target")
