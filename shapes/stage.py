"""Which stage of its plan a shape is in: the marks the report draws on its charts.

A stage is an arrival phase, a k6 stage, or a part of a burst; `StageMark` says which one and
what load it asks for (arrivals per second or users, from `start` to `end`), so that the
report can label it and judge every stage on its own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Unit = Literal["arrivals/s", "users"]


@dataclass(frozen=True)
class StageMark:
    index: int
    name: str
    unit: Unit
    start: float
    end: float
    into_s: float = field(default=0.0, compare=False)  # how long the stage has been running

    def label(self) -> str:
        load = f"{self.start:g}" if self.start == self.end else f"{self.start:g}→{self.end:g}"
        return f"{self.name}: {load} {self.unit}"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["into_s"]
        return data
