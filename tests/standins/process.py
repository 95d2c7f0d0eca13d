"""Start a stand-in as a child process: `start_standin("evolution", paired=True)`.

Keyword options become the stand-in's flags (`pair_delay_s=0.1` -> `--pair-delay-s 0.1`,
`paired=True` -> `--paired`, False or None -> left out).
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from gateway.process import GatewayProcess
from tests.standins import KINDS


class StandinProcess(GatewayProcess):
    """A running `python -m tests.standins.<kind>` on a free loopback port."""

    health_path = "/_standin/record"

    def __init__(self, kind: str, args: list[str] | None = None, **kwargs: Any) -> None:
        if kind not in KINDS:
            raise ValueError(f"no stand-in {kind!r}: one of {', '.join(KINDS)}")
        self.kind = kind
        self.module = f"tests.standins.{kind}"
        super().__init__(args, **kwargs)

    def record(self, clear: bool = False) -> dict[str, Any]:
        """What the stand-in did so far (`GET /_standin/record`)."""
        url = self.url + self.health_path + ("?clear" if clear else "")
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())


def flags(options: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is not None and value is not False:
            args += [flag, str(value)]
    return args


def start_standin(kind: str, **options: Any) -> StandinProcess:
    """Start the stand-in `kind` (waha, evolution, wppconnect) with these flags; stop() it."""
    return StandinProcess(kind, flags(options)).start()
