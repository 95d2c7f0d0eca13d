from bench import part_load


def test_the_cost_is_timed_by_the_cpu_clock_without_the_sleep() -> None:
    # 20 units asleep 5 ms apart take 100 ms of wall time; the CPU of a unit is far less.
    cost_us = part_load.cost_per_unit_us(0.005, 20)
    assert 0 < cost_us < 5000


def test_the_description_gives_each_pause_against_back_to_back() -> None:
    text = part_load.describe({0.0: 150.0, 0.0002: 180.0, 0.001: 195.0, 0.005: 255.0})
    assert text.startswith("the same unit of Python work costs 150 µs of CPU back to back, ")
    assert "180 µs (1.20x) asleep 0.2 ms between" in text
    assert text.endswith("255 µs (1.70x) asleep 5 ms between")


def test_a_generator_is_stopped_as_ctrl_c_once_its_window_is_read(tmp_path) -> None:
    import sys
    import time

    from bench import generators as g

    counter = tmp_path / "served"
    counter.write_text("0")
    # A "generator" planned to run for a minute, serving 100 "requests" every 10 ms.
    # Each count is written whole (a new file renamed over the old): never read half written.
    script = (
        "import os, pathlib, time\n"
        f"p = pathlib.Path({str(counter)!r}); part = p.with_suffix('.part'); n = 0\n"
        "try:\n"
        "    for _ in range(6000):\n"
        "        n += 100; part.write_text(str(n)); os.replace(part, p); time.sleep(0.01)\n"
        "except KeyboardInterrupt:\n"
        "    print('stopped at', n)\n"
    )
    started = time.monotonic()
    measured = g.measure(
        [sys.executable, "-c", script], lambda: int(counter.read_text()), 0.5, settle_s=0.2
    )
    assert time.monotonic() - started < 30
    assert measured.output.startswith("stopped at")
    assert measured.rate > 0


def test_the_ladder_pairs_the_rungs_and_steps_down_from_a_rate_held_once() -> None:
    from bench import throughput as t

    # plain FastHttpUser's median 1,000/s: rungs 600, 750, 900, 1,000. The engine holds up
    # to 900 but 900 only once in three: the 750 below it is run twice more and holds.
    # Locust's pacing holds 600 only, every time.
    outcomes = {
        (t.ENGINE, 600): [True],
        (t.ENGINE, 750): [True, True, True],
        (t.ENGINE, 900): [True, False, False],
        (t.ENGINE, 1000): [False],
        (t.PACED, 600): [True, True, True],
        (t.PACED, 750): [False],
    }
    runs: list[tuple[str, float, bool]] = []

    def attempt(generator: str, rate: float) -> bool:
        runs.append((generator, rate, outcomes[generator, rate].pop(0)))
        return runs[-1][2]

    t.climb(attempt, 1000.0, runs=3)
    assert [(generator, rate) for generator, rate, _ in runs] == [
        (t.ENGINE, 600), (t.PACED, 600), (t.ENGINE, 750), (t.PACED, 750), (t.ENGINE, 900),
        (t.ENGINE, 1000),
        (t.ENGINE, 900), (t.PACED, 600), (t.ENGINE, 900), (t.PACED, 600),
        (t.ENGINE, 750), (t.ENGINE, 750),
    ]  # fmt: skip
    assert all(not left for left in outcomes.values())
    ladder = [t.Rung(generator, rate, rate, held, {"cpu": 1.0}) for generator, rate, held in runs]
    assert t.highest_held(ladder, t.ENGINE) == (750, [True, True, True])
    assert t.highest_held(ladder, t.PACED) == (600, [True, True, True])


def test_a_generator_that_holds_no_rung_goes_down_below_the_ladder() -> None:
    from bench import throughput as t

    order: list[tuple[str, float]] = []

    def attempt(generator: str, rate: float) -> bool:
        order.append((generator, rate))
        return generator == t.PACED or rate <= 300

    t.climb(attempt, 1000.0, runs=2)
    engine = [rate for generator, rate in order if generator == t.ENGINE]
    assert engine == [600, 500, 400, 300, 300]  # down from 0.5 until one holds, then again
