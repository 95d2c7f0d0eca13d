"""Scenario files (`conf/scenarios/*.yaml`): the load model, the users and the criteria, as data.

    name: sessions
    criteria: criteria.yaml
    load:
      model: arrivals      # arrivals (open, Artillery), stages (closed, k6), burst, endurance
      phases:
        - {duration: 60s, arrival_rate: 10}
        - {duration: 60s, arrival_rate: 50, ramp_to: 100}
    users:
      SessionCreator: {weight: 1}

A scenario is validated when it is loaded, before any load starts: a typo, a negative rate or
an unknown user class is a `ScenarioError` whose message is one line naming the file and the
field (`conf/scenarios/x.yaml: load.phases[1].arrival_rate: ...`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shapes.endurance import endurance_phases, endurance_stages
from shapes.timetable import ArrivalPhase, Timetable
from shapes.vu_stages import VUStage, VUStages
from suite.validation import first_problem

if TYPE_CHECKING:
    from locust import LoadTestShape
    from locust.env import Environment
    from locust.user import User

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
MAX_RATE = 100_000.0  # arrivals/s: far above what one Locust process can generate
MAX_USERS = 100_000
MAX_DURATION_S = 7 * 86_400.0
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)(ms|h|m|s))")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class ScenarioError(ValueError):
    """A scenario that cannot run; the message is one line naming the file and field."""


def parse_duration(value: Any) -> float:
    """Seconds from 90, 90.5, "90s", "2m", "1h30m" or "500ms"."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 60s, 2m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip().replace(" ", "")
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"{value!r} is not a duration such as 60s, 2m or 1h")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise ValueError("expected a duration such as 60s, 2m or 1h")
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_DURATION_S:
        raise ValueError(f"a duration must be between 0 and {MAX_DURATION_S:.0f} s")
    return seconds


Duration = Annotated[float, Field(description="seconds, or text such as 60s, 2m, 1h")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Durations(_Strict):
    @field_validator(
        "duration", "timeout", "ramp_up", "drain_timeout", mode="before", check_fields=False
    )
    @classmethod
    def _seconds(cls, value: Any) -> float:
        return parse_duration(value)


class PhaseSpec(_Durations):
    duration: Duration = Field(gt=0)
    arrival_rate: float = Field(ge=0, le=MAX_RATE, allow_inf_nan=False)
    ramp_to: float | None = Field(default=None, ge=0, le=MAX_RATE, allow_inf_nan=False)
    name: str | None = None


class StageSpec(_Durations):
    duration: Duration = Field(ge=0)
    target: int = Field(ge=0, le=MAX_USERS)
    name: str | None = None


class ArrivalsLoad(_Durations):
    model: Literal["arrivals"]
    phases: list[PhaseSpec] = Field(min_length=1)
    distribution: Literal["uniform", "poisson"] = "uniform"
    seed: int | None = None
    max_in_flight: int | None = Field(default=None, ge=1, le=MAX_USERS)
    drain_timeout: Duration = 30.0


class StagesLoad(_Durations):
    model: Literal["stages"]
    stages: list[StageSpec] = Field(min_length=1)
    start_users: int = Field(default=0, ge=0, le=MAX_USERS)


class BurstLoad(_Durations):
    model: Literal["burst"]
    users: int = Field(ge=1, le=MAX_USERS)
    iterations_per_user: int = Field(ge=1, le=100_000)
    timeout: Duration = 300.0


class EnduranceLoad(_Durations):
    model: Literal["endurance"]
    duration: Duration = Field(gt=0)
    users: int | None = Field(default=None, ge=1, le=MAX_USERS)
    arrival_rate: float | None = Field(
        default=None, gt=0, le=MAX_RATE, allow_inf_nan=False, validate_default=True
    )
    curve: Literal["flat", "diurnal"] = "flat"
    ramp_up: Duration = 60.0
    night: float = Field(default=0.2, gt=0, le=1)

    @field_validator("arrival_rate")
    @classmethod
    def _one_kind(cls, value: float | None, info: Any) -> float | None:
        if (value is None) == (info.data.get("users") is None):
            raise ValueError("give exactly one of users (closed model) or arrival_rate (open)")
        return value


class UserSpec(_Strict):
    weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    options: dict[str, Any] = Field(default_factory=dict)


class ThinkTime(_Strict):
    min: float = Field(ge=0, le=3600, allow_inf_nan=False)
    max: float = Field(ge=0, le=3600, allow_inf_nan=False)


Load = Annotated[
    ArrivalsLoad | StagesLoad | BurstLoad | EnduranceLoad, Field(discriminator="model")
]


class Scenario(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    criteria: str = "criteria.yaml"
    target: str = "plan"
    load: Load
    users: dict[str, UserSpec] = Field(min_length=1)
    think_time: ThinkTime | None = None
    time_scale: float = 1.0

    # --- what the load model becomes --------------------------------------------------------

    @property
    def model(self) -> str:
        if isinstance(self.load, EnduranceLoad):
            return "arrivals" if self.load.arrival_rate is not None else "stages"
        return self.load.model

    def timetable(self) -> Timetable:
        load = self.load
        scale = self.time_scale
        if isinstance(load, EnduranceLoad):
            assert load.arrival_rate is not None
            phases = endurance_phases(
                load.duration * scale, load.arrival_rate, load.curve, night=load.night
            )
            return Timetable(phases)
        assert isinstance(load, ArrivalsLoad)
        return Timetable(
            [
                ArrivalPhase(p.duration * scale, p.arrival_rate, p.ramp_to, p.name)
                for p in load.phases
            ],
            load.distribution,
            load.seed,
        )

    def stages(self) -> VUStages:
        load = self.load
        scale = self.time_scale
        if isinstance(load, EnduranceLoad):
            assert load.users is not None
            stages = endurance_stages(
                load.duration * scale,
                load.users,
                load.curve,
                load.ramp_up * scale,
                night=load.night,
            )
            return VUStages(stages)
        assert isinstance(load, StagesLoad)
        return VUStages(
            [VUStage(s.duration * scale, s.target, s.name) for s in load.stages], load.start_users
        )

    def max_in_flight(self) -> int:
        """The arrival pool: as given, else two seconds of arrivals at the peak rate (min 100)."""
        if isinstance(self.load, ArrivalsLoad) and self.load.max_in_flight:
            return self.load.max_in_flight
        timetable = self.timetable()
        peak = max(max(p.arrival_rate, p.end_rate) for p in timetable.phases)
        return max(100, math.ceil(2 * peak))

    def duration_s(self) -> float | None:
        """Planned length of the load (None for a burst, which ends when all have answered)."""
        if self.model == "arrivals":
            return self.timetable().duration_s
        if self.model == "stages":
            return self.stages().duration_s
        return None

    def build_shape(self, user_classes: list[type[User]]) -> LoadTestShape:
        from shapes.arrivals import ArrivalShape
        from shapes.burst import BurstShape
        from shapes.stages import StagesShape

        if self.model == "arrivals":
            drain = self.load.drain_timeout if isinstance(self.load, ArrivalsLoad) else 30.0
            return ArrivalShape(
                self.timetable(), user_classes, self.max_in_flight(), drain_timeout_s=drain
            )
        if self.model == "stages":
            return StagesShape(self.stages(), user_classes)
        assert isinstance(self.load, BurstLoad)
        # A burst's timeout bounds a run that has no durations to compress: never scaled (a
        # scaled one cut `make all TIME_SCALE=0.003` short, its sessions deleted mid-burst).
        return BurstShape(self.load.users, user_classes, timeout_s=self.load.timeout)

    def install_pacing(self, environment: Environment) -> object:
        """Give this process's users the scenario's pacing (call from the `init` event)."""
        from shapes.arrivals import install_arrivals
        from shapes.burst import install_burst
        from shapes.pacing import ClosedLoop, install_pacing

        if self.model == "arrivals":
            drain = self.load.drain_timeout if isinstance(self.load, ArrivalsLoad) else 30.0
            return install_arrivals(environment, drain)
        if self.model == "burst":
            assert isinstance(self.load, BurstLoad)
            return install_burst(environment, self.load.iterations_per_user)
        pacing = ClosedLoop()
        install_pacing(environment, pacing)
        return pacing


def scenario_path(name_or_path: str, conf_dir: Path = CONF_DIR) -> Path:
    """`sessions` -> conf/scenarios/sessions.yaml; a path is taken as it is."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.parent != Path("."):
        return candidate
    return conf_dir / "scenarios" / f"{name_or_path}.yaml"


def available_scenarios(conf_dir: Path = CONF_DIR) -> list[str]:
    return sorted(p.stem for p in (conf_dir / "scenarios").glob("*.yaml"))


def load_scenario(
    name_or_path: str,
    *,
    time_scale: float = 1.0,
    known_users: Iterable[str] | None = None,
    conf_dir: Path = CONF_DIR,
) -> Scenario:
    path = scenario_path(name_or_path, conf_dir)
    shown = _shown(path)
    if not path.is_file():
        names = ", ".join(available_scenarios(conf_dir)) or "none"
        raise ScenarioError(f"unknown scenario {name_or_path!r} (no {shown}; available: {names})")
    if not (math.isfinite(time_scale) and 0 < time_scale <= 100):
        raise ScenarioError(f"--time-scale must be a number in (0, 100], not {time_scale}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ScenarioError(f"{shown}:{where} malformed YAML: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{shown}: cannot read: {exc}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{shown}: expected a mapping of scenario fields at the top level")
    if "time_scale" in data:
        raise ScenarioError(f"{shown}: time_scale: not a file field; use --time-scale")
    try:
        scenario = Scenario.model_validate({**data, "time_scale": time_scale})
    except ValidationError as exc:
        raise ScenarioError(f"{shown}: {_first_problem(exc)}") from None
    if known_users is not None:
        known = set(known_users)
        for name in scenario.users:
            if name not in known:
                raise ScenarioError(
                    f"{shown}: users.{name}: unknown user class (known: {', '.join(sorted(known))})"
                )
    criteria = conf_dir / scenario.criteria
    if known_users is not None and not criteria.is_file():
        raise ScenarioError(f"{shown}: criteria: no such file {_shown(criteria)}")
    return scenario


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


_MODELS = {"arrivals", "stages", "burst", "endurance"}


def _first_problem(exc: ValidationError) -> str:
    return first_problem(exc, lambda previous, part: previous == "load" and part in _MODELS)
