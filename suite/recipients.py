"""The phone numbers a run may use, settled on the master (or local runner) before any load.

- `--recipients` and `--recipients-file` are read and checked here; the master writes the whole
  list back into `--recipients`, which Locust hands to every worker with each start.
- Made-up numbers (`synthetic_numbers`) are allowed for the embedded reference gateway only, or
  when `--synthetic-numbers` (`SUITE_SYNTHETIC_NUMBERS=1`) accepts the risk; the summary says
  which.
- A scenario whose users send to numbers (`ScenarioUser.sends_to_numbers`: messages, inbound
  events) against any other target, without recipients, is refused in one line.

The users hold the last line (`users.numbers`): without a number they may use, they send
nothing, whatever a web UI form pointed them at.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from users.numbers import NumbersError, parse_numbers


def read_recipients(options: Any) -> tuple[str, ...]:
    numbers = parse_numbers(options.recipients, "--recipients") if options.recipients else ()
    if options.recipients_file:
        path = Path(options.recipients_file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise NumbersError(f"--recipients-file {path}: cannot read it ({reason})") from None
        numbers += parse_numbers(text, f"--recipients-file {path}")
    return tuple(dict.fromkeys(numbers))


def settle_numbers(
    options: Any, user_classes: Iterable[type], *, embedded: bool, explicit: bool
) -> dict[str, Any]:
    """Set `options.recipients` (the whole list) and `options.synthetic_numbers` for this run;
    raise `NumbersError` when its users need numbers and none may be used. Returns what the
    summary records: how many recipients (not the numbers), whether numbers were made up and
    whether that was asked for."""
    recipients = read_recipients(options)
    options.recipients = ",".join(recipients)
    options.synthetic_numbers = explicit or embedded
    needing = sorted(c.__name__ for c in user_classes if getattr(c, "sends_to_numbers", False))
    if needing and not recipients and not options.synthetic_numbers:
        raise NumbersError(
            f"{', '.join(needing)} would send to phone numbers, and a gateway other than the "
            "embedded one reaches real phones: give --recipients NUMBER[,NUMBER...] or "
            "--recipients-file FILE (numbers you own), or --synthetic-numbers for a gateway "
            "with no real phones behind it"
        )
    return {
        "needed": bool(needing),
        "recipients": len(recipients),
        "synthetic": bool(needing) and not recipients and options.synthetic_numbers,
        "synthetic_asked": explicit,
    }
