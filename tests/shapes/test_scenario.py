"""Scenario files: durations, every load model, time scaling, and one-line errors for bad files."""

from __future__ import annotations

import math
import shutil
import textwrap
from pathlib import Path

import pytest

from shapes.scenario import (
    CONF_DIR,
    MAX_DURATION_S,
    ScenarioError,
    available_scenarios,
    load_scenario,
    parse_duration,
    scenario_path,
)

KNOWN_USERS = ["SessionCreator", "WebhookPoster", "Prober"]


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    """A conf directory with the project's criteria file and an empty scenarios folder."""
    shutil.copy(CONF_DIR / "criteria.yaml", tmp_path / "criteria.yaml")
    (tmp_path / "scenarios").mkdir()
    return tmp_path


def write(conf: Path, name: str, text: str) -> Path:
    path = conf / "scenarios" / f"{name}.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(conf: Path, name: str, text: str, **kwargs):
    write(conf, name, text)
    kwargs.setdefault("known_users", KNOWN_USERS)
    return load_scenario(name, conf_dir=conf, **kwargs)


# --- parse_duration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("60s", 60),
        ("2m", 120),
        ("1h", 3600),
        ("1h30m", 5400),
        ("1h30m15s", 5415),
        ("500ms", 0.5),
        ("1m500ms", 60.5),
        ("1.5s", 1.5),
        (" 90s ", 90),
        ("0s", 0),
        (90, 90),
        (1.5, 1.5),
        (0, 0),
        ("168h", MAX_DURATION_S),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["abc", "", "   ", "10x", "10", "s", "m5", "5s abc", "1h-5m", -1, -0.5, True, False, None,
     [60], math.inf, math.nan, MAX_DURATION_S + 1, "169h", 1e12],
)  # fmt: skip
def test_parse_duration_refuses(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


# --- valid scenarios, one per model --------------------------------------------------------


def test_arrivals_with_ramp(conf: Path) -> None:
    scenario = load(
        conf,
        "ramp",
        """
        name: ramp
        description: warm up, then ramp
        load:
          model: arrivals
          phases:
            - {duration: 60s, arrival_rate: 10, name: warm-up}
            - {duration: 2m, arrival_rate: 50, ramp_to: 100}
        users:
          WebhookPoster: {weight: 3}
          Prober: {}
        """,
    )
    assert scenario.name == "ramp"
    assert scenario.model == "arrivals"
    timetable = scenario.timetable()
    assert [p.duration_s for p in timetable.phases] == [60, 120]
    assert [(p.arrival_rate, p.end_rate) for p in timetable.phases] == [(10, 10), (50, 100)]
    assert timetable.phases[0].name == "warm-up"
    assert timetable.distribution == "uniform"
    assert timetable.expected_arrivals == 600 + 9000
    assert scenario.duration_s() == 180
    assert scenario.max_in_flight() == 200  # two seconds at the peak of 100/s
    assert scenario.users["WebhookPoster"].weight == 3
    assert scenario.users["Prober"].weight == 1
    assert scenario.load.drain_timeout == 30


def test_arrivals_poisson_with_seed(conf: Path) -> None:
    scenario = load(
        conf,
        "poisson",
        """
        name: poisson
        load:
          model: arrivals
          distribution: poisson
          seed: 7
          max_in_flight: 40
          drain_timeout: 5s
          phases: [{duration: 30, arrival_rate: 20}]
        users: {WebhookPoster: {}}
        """,
    )
    timetable = scenario.timetable()
    assert timetable.distribution == "poisson"
    assert timetable.seed == 7
    assert list(timetable.due_times()) == list(scenario.timetable().due_times())
    assert scenario.max_in_flight() == 40
    assert scenario.load.drain_timeout == 5


@pytest.mark.parametrize(("peak", "pool"), [(10, 100), (50, 100), (50.2, 101), (333, 666)])
def test_max_in_flight_default(conf: Path, peak: float, pool: int) -> None:
    scenario = load(
        conf,
        "pool",
        f"""
        name: pool
        load:
          model: arrivals
          phases:
            - {{duration: 10s, arrival_rate: 1, ramp_to: {peak}}}
            - {{duration: 10s, arrival_rate: 2}}
        users: {{Prober: {{}}}}
        """,
    )
    assert scenario.max_in_flight() == pool == max(100, math.ceil(2 * peak))


def test_stages(conf: Path) -> None:
    scenario = load(
        conf,
        "steps",
        """
        name: steps
        load:
          model: stages
          start_users: 5
          stages:
            - {duration: 1m, target: 50}
            - {duration: 5m, target: 50, name: hold}
            - {duration: 30s, target: 0}
        users: {SessionCreator: {weight: 1}}
        think_time: {min: 1, max: 3}
        """,
    )
    assert scenario.model == "stages"
    stages = scenario.stages()
    assert stages.start_users == 5
    assert [(s.duration_s, s.target) for s in stages.stages] == [(60, 50), (300, 50), (30, 0)]
    assert stages.stages[1].name == "hold"
    assert scenario.duration_s() == 390
    assert scenario.think_time is not None
    assert (scenario.think_time.min, scenario.think_time.max) == (1, 3)


def test_burst(conf: Path) -> None:
    scenario = load(
        conf,
        "burst",
        """
        name: burst
        load: {model: burst, users: 200, iterations_per_user: 5, timeout: 2m}
        users: {WebhookPoster: {}}
        """,
    )
    assert scenario.model == "burst"
    assert scenario.load.users == 200
    assert scenario.load.iterations_per_user == 5
    assert scenario.load.timeout == 120
    assert scenario.duration_s() is None


@pytest.mark.parametrize("curve", ["flat", "diurnal"])
def test_endurance_with_users(conf: Path, curve: str) -> None:
    scenario = load(
        conf,
        "soak",
        f"""
        name: soak
        load: {{model: endurance, duration: 1h, users: 100, curve: {curve}, ramp_up: 2m}}
        users: {{SessionCreator: {{}}}}
        """,
    )
    assert scenario.model == "stages"
    stages = scenario.stages()
    assert stages.duration_s == pytest.approx(3600)
    assert scenario.duration_s() == pytest.approx(3600)
    assert stages.stages[0].duration_s == 120
    targets = [s.target for s in stages.stages]
    assert max(targets) == 100
    assert min(targets) == (100 if curve == "flat" else 20)


@pytest.mark.parametrize("curve", ["flat", "diurnal"])
def test_endurance_with_arrival_rate(conf: Path, curve: str) -> None:
    scenario = load(
        conf,
        "soak",
        f"""
        name: soak
        load: {{model: endurance, duration: 24h, arrival_rate: 40, curve: {curve}, night: 0.5}}
        users: {{WebhookPoster: {{}}}}
        """,
    )
    assert scenario.model == "arrivals"
    timetable = scenario.timetable()
    assert timetable.duration_s == pytest.approx(86_400)
    assert scenario.duration_s() == pytest.approx(86_400)
    rates = [r for p in timetable.phases for r in (p.arrival_rate, p.end_rate)]
    assert max(rates) == pytest.approx(40)
    assert min(rates) == pytest.approx(40 if curve == "flat" else 20)
    assert scenario.max_in_flight() == 100


# --- time_scale ----------------------------------------------------------------------------

ARRIVALS = """
    name: scaled
    load:
      model: arrivals
      phases:
        - {duration: 60s, arrival_rate: 10}
        - {duration: 2m, arrival_rate: 50, ramp_to: 100}
    users: {WebhookPoster: {}}
    """


def test_time_scale_scales_arrival_durations_not_rates(conf: Path) -> None:
    scenario = load(conf, "scaled", ARRIVALS, time_scale=0.1)
    timetable = scenario.timetable()
    assert [p.duration_s for p in timetable.phases] == pytest.approx([6, 12])
    assert [(p.arrival_rate, p.end_rate) for p in timetable.phases] == [(10, 10), (50, 100)]
    assert scenario.duration_s() == pytest.approx(18)
    assert scenario.max_in_flight() == 200
    slow = load(conf, "scaled", ARRIVALS, time_scale=2)
    assert slow.duration_s() == pytest.approx(360)


def test_time_scale_scales_stage_durations_not_targets(conf: Path) -> None:
    text = """
        name: steps
        load:
          model: stages
          stages: [{duration: 60s, target: 50}, {duration: 30s, target: 10}]
        users: {Prober: {}}
        """
    stages = load(conf, "steps", text, time_scale=0.1).stages()
    assert [s.duration_s for s in stages.stages] == pytest.approx([6, 3])
    assert [s.target for s in stages.stages] == [50, 10]


def test_time_scale_scales_endurance(conf: Path) -> None:
    text = """
        name: soak
        load: {model: endurance, duration: 1h, users: 100, ramp_up: 60s, curve: diurnal}
        users: {Prober: {}}
        """
    full = load(conf, "soak", text).stages()
    short = load(conf, "soak", text, time_scale=0.01).stages()
    assert short.duration_s == pytest.approx(36)
    assert short.stages[0].duration_s == pytest.approx(0.6)
    assert [s.target for s in short.stages] == [s.target for s in full.stages]
    rate_text = """
        name: soak
        load: {model: endurance, duration: 1h, arrival_rate: 30, curve: diurnal}
        users: {Prober: {}}
        """
    timetable = load(conf, "soak", rate_text, time_scale=0.01).timetable()
    assert timetable.duration_s == pytest.approx(36)
    assert max(p.end_rate for p in timetable.phases) == pytest.approx(30)


def test_time_scale_leaves_the_burst_timeout_alone(conf: Path) -> None:
    from shapes.burst import BurstShape

    text = """
        name: burst
        load: {model: burst, users: 10, iterations_per_user: 1, timeout: 100s}
        users: {Prober: {}}
        """
    scenario = load(conf, "burst", text, time_scale=0.1)
    assert scenario.load.timeout == 100
    shape = scenario.build_shape([])
    assert isinstance(shape, BurstShape)
    # A safety bound, not a plan's duration: a compressed burst must not be cut short.
    assert shape.timeout_s == pytest.approx(100)


# --- bad files: one line, naming the file and the field ------------------------------------

VALID_ARRIVALS = {
    "name": "x",
    "load": {"model": "arrivals", "phases": [{"duration": 10, "arrival_rate": 5}]},
    "users": {"WebhookPoster": {}},
}


def assert_one_line_error(error: ScenarioError, *needles: str) -> str:
    message = str(error)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def bad(conf: Path, text: str, **kwargs) -> ScenarioError:
    with pytest.raises(ScenarioError) as caught:
        load(conf, "x", text, **kwargs)
    return caught.value


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        (
            """
            name: x
            load:
              model: arrivals
              phases:
                - {duration: 10s, arrival_rate: 5}
                - {duration: 10s, arival_rate: 5}
            users: {WebhookPoster: {}}
            """,
            "load.phases[1].arival_rate",
            "unknown field",
        ),
        (
            """
            name: x
            load:
              model: arrivals
              phases:
                - {duration: 10s, arrival_rate: 5}
                - {duration: 10s, arrival_rate: -3}
            users: {WebhookPoster: {}}
            """,
            "load.phases[1].arrival_rate",
            "greater than or equal to 0",
        ),
        (
            """
            name: x
            load:
              model: arrivals
              phases: [{duration: 10s, arrival_rate: 100001}]
            users: {WebhookPoster: {}}
            """,
            "load.phases[0].arrival_rate",
            "less than or equal to 100000",
        ),
        (
            """
            name: x
            load:
              model: arrivals
              phases: [{duration: 10s, arrival_rate: 5, ramp_to: 1000000000}]
            users: {WebhookPoster: {}}
            """,
            "load.phases[0].ramp_to",
            "less than or equal",
        ),
        (
            """
            name: x
            load:
              model: arrivals
              phases: [{duration: 10s, arrival_rate: fast}]
            users: {WebhookPoster: {}}
            """,
            "load.phases[0].arrival_rate",
            "number",
        ),
        (
            """
            name: x
            load:
              model: arrivals
              phases: [{duration: 10s, arrival_rate: .nan}]
            users: {WebhookPoster: {}}
            """,
            "load.phases[0].arrival_rate",
            "finite",
        ),
        (
            """
            name: x
            load:
              model: arrivals
              phases: [{duration: 10x, arrival_rate: 5}]
            users: {WebhookPoster: {}}
            """,
            "load.phases[0].duration",
            "not a duration",
        ),
        (
            """
            name: x
            load:
              model: arrivals
              phases: [{duration: 0s, arrival_rate: 5}]
            users: {WebhookPoster: {}}
            """,
            "load.phases[0].duration",
            "greater than 0",
        ),
        (
            """
            name: x
            load:
              model: arrivals
              phases: [{arrival_rate: 5}]
            users: {WebhookPoster: {}}
            """,
            "load.phases[0].duration",
            "required field is missing",
        ),
        (
            """
            name: x
            load: {model: arrivals, phases: []}
            users: {WebhookPoster: {}}
            """,
            "load.phases",
            "at least 1",
        ),
        (
            """
            name: x
            load: {model: arrivals, phases: [{duration: 1s, arrival_rate: 1}], max_in_flight: 0}
            users: {WebhookPoster: {}}
            """,
            "load.max_in_flight",
            "greater than or equal to 1",
        ),
        (
            """
            name: x
            load: {model: waves, phases: [{duration: 10s, arrival_rate: 5}]}
            users: {WebhookPoster: {}}
            """,
            "load",
            "waves",
        ),
        (
            """
            name: x
            load: {phases: [{duration: 10s, arrival_rate: 5}]}
            users: {WebhookPoster: {}}
            """,
            "load",
            "model",
        ),
        (
            """
            load: {model: arrivals, phases: [{duration: 10s, arrival_rate: 5}]}
            users: {WebhookPoster: {}}
            """,
            "name",
            "required field is missing",
        ),
        (
            """
            name: x
            load: {model: arrivals, phases: [{duration: 10s, arrival_rate: 5}]}
            """,
            "users",
            "required field is missing",
        ),
        (
            """
            name: x
            load: {model: arrivals, phases: [{duration: 10s, arrival_rate: 5}]}
            users: {}
            """,
            "users",
            "at least 1",
        ),
        (
            """
            name: x
            load: {model: arrivals, phases: [{duration: 10s, arrival_rate: 5}]}
            users: {WebhookPoster: {weight: 0}}
            """,
            "users.WebhookPoster.weight",
            "greater than 0",
        ),
        (
            """
            name: x
            load: {model: arrivals, phases: [{duration: 10s, arrival_rate: 5}]}
            users: {WebhookPoster: {}}
            think_time: {min: 1, max: 3, mean: 2}
            """,
            "think_time.mean",
            "unknown field",
        ),
        (
            """
            name: x
            load:
              model: stages
              stages: [{duration: 1m, target: 10}, {duration: 1m, target: -1}]
            users: {WebhookPoster: {}}
            """,
            "load.stages[1].target",
            "greater than or equal to 0",
        ),
        (
            """
            name: x
            load: {model: stages, stages: [{duration: 1m, target: 10}], start_users: 1000001}
            users: {WebhookPoster: {}}
            """,
            "load.start_users",
            "less than or equal to 100000",
        ),
        (
            """
            name: x
            load: {model: burst, users: 0, iterations_per_user: 1}
            users: {WebhookPoster: {}}
            """,
            "load.users",
            "greater than or equal to 1",
        ),
        (
            """
            name: x
            load: {model: burst, users: 10}
            users: {WebhookPoster: {}}
            """,
            "load.iterations_per_user",
            "required field is missing",
        ),
        (
            """
            name: x
            load: {model: endurance, duration: 1h, users: 10, arrival_rate: 5}
            users: {WebhookPoster: {}}
            """,
            "load.arrival_rate",
            "exactly one of users",
        ),
        (
            """
            name: x
            load: {model: endurance, duration: 1h}
            users: {WebhookPoster: {}}
            """,
            "load.arrival_rate",
            "exactly one of users",
        ),
        (
            """
            name: x
            load: {model: endurance, duration: 1h, users: 10, curve: sine}
            users: {WebhookPoster: {}}
            """,
            "load.curve",
            "flat",
        ),
        (
            """
            name: x
            load: {model: endurance, duration: 1h, users: 10, night: 0}
            users: {WebhookPoster: {}}
            """,
            "load.night",
            "greater than 0",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) and "\n" not in value else None,
)
def test_bad_field(conf: Path, text: str, field: str, words: str) -> None:
    error = bad(conf, text)
    path = str(conf / "scenarios" / "x.yaml")
    message = assert_one_line_error(error, words)
    assert message.startswith(f"{path}: {field}: "), message


def test_unknown_user_class(conf: Path) -> None:
    text = """
        name: x
        load: {model: arrivals, phases: [{duration: 10s, arrival_rate: 5}]}
        users: {WebhookPoster: {}, Pober: {}}
        """
    error = bad(conf, text)
    message = assert_one_line_error(error, "x.yaml: users.Pober: unknown user class")
    for known in KNOWN_USERS:
        assert known in message
    # Without known_users, the names are not checked.
    assert load(conf, "x", text, known_users=None).users.keys() == {"WebhookPoster", "Pober"}


def test_missing_criteria_file(conf: Path) -> None:
    error = bad(
        conf,
        """
        name: x
        criteria: strict.yaml
        load: {model: arrivals, phases: [{duration: 10s, arrival_rate: 5}]}
        users: {WebhookPoster: {}}
        """,
    )
    assert_one_line_error(error, "x.yaml: criteria: no such file", "strict.yaml")
    (conf / "criteria.yaml").unlink()
    error = bad(
        conf,
        """
        name: x
        load: {model: arrivals, phases: [{duration: 10s, arrival_rate: 5}]}
        users: {WebhookPoster: {}}
        """,
    )
    assert_one_line_error(error, "x.yaml: criteria: no such file", "criteria.yaml")


def test_unknown_scenario_lists_the_available_ones(conf: Path) -> None:
    write(conf, "alpha", "name: alpha")
    write(conf, "beta", "name: beta")
    with pytest.raises(ScenarioError) as caught:
        load_scenario("gamma", conf_dir=conf, known_users=KNOWN_USERS)
    assert_one_line_error(caught.value, "unknown scenario 'gamma'", "gamma.yaml", "alpha, beta")
    assert available_scenarios(conf) == ["alpha", "beta"]
    with pytest.raises(ScenarioError) as caught:
        load_scenario(str(conf / "elsewhere.yaml"), conf_dir=conf)
    assert_one_line_error(caught.value, "elsewhere.yaml")


def test_malformed_yaml_gives_the_line(conf: Path) -> None:
    error = bad(
        conf,
        """\
        name: x
        load:
          model: arrivals
          phases: [{duration: 10s, arrival_rate: 5}
        users: {WebhookPoster: {}}
        """,
    )
    message = assert_one_line_error(error, "x.yaml", "malformed YAML")
    assert "line 5" in message, message


def test_bad_tab_indentation_gives_the_line(conf: Path) -> None:
    error = bad(conf, "name: x\nload:\n\tmodel: arrivals\n")
    assert_one_line_error(error, "x.yaml: line 3 malformed YAML")


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just words\n", "42\n"])
def test_top_level_must_be_a_mapping(conf: Path, text: str) -> None:
    error = bad(conf, text)
    assert_one_line_error(error, "x.yaml: expected a mapping")


def test_unreadable_file(conf: Path) -> None:
    (conf / "scenarios" / "x.yaml").write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario("x", conf_dir=conf)
    assert_one_line_error(caught.value, "x.yaml: cannot read")


@pytest.mark.parametrize("time_scale", [0.0, -1.0, math.nan, math.inf, 101.0])
def test_bad_time_scale(conf: Path, time_scale: float) -> None:
    error = bad(conf, ARRIVALS, time_scale=time_scale)
    assert_one_line_error(error, "time-scale")


def test_errors_name_the_file_relative_to_the_working_directory(
    conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(conf)
    error = bad(conf, "name: x\nload: {model: arrivals, phases: []}\nusers: {Prober: {}}\n")
    assert str(error).startswith("scenarios/x.yaml: load.phases: "), str(error)


def test_scenario_path() -> None:
    assert scenario_path("sessions") == CONF_DIR / "scenarios" / "sessions.yaml"
    assert scenario_path("x.yaml") == Path("x.yaml")
    assert scenario_path("some/dir/x") == Path("some/dir/x")


# --- the project's own scenarios -----------------------------------------------------------

PROJECT_SCENARIOS = available_scenarios()


@pytest.mark.skipif(not PROJECT_SCENARIOS, reason="no scenario files in conf/scenarios yet")
@pytest.mark.parametrize("name", PROJECT_SCENARIOS or ["none"])
def test_project_scenarios_load(name: str) -> None:
    scenario = load_scenario(name)
    assert scenario.name
    assert (CONF_DIR / scenario.criteria).is_file()
    if scenario.model == "arrivals":
        assert scenario.timetable().expected_arrivals > 0
        assert scenario.max_in_flight() >= 100
    if scenario.model in ("arrivals", "stages"):
        assert scenario.duration_s() > 0
    # Compressed for CI: every duration shrinks, nothing else changes.
    short = load_scenario(name, time_scale=0.01)
    if scenario.model in ("arrivals", "stages"):
        assert short.duration_s() == pytest.approx(scenario.duration_s() * 0.01)
