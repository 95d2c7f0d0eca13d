def test_throughput_ratios_are_paired_run_by_run() -> None:
    import argparse

    from bench import generators as g
    from bench import throughput

    def runs(*rates: float) -> list[g.Measured]:
        return [g.Measured(rate, 1.0, 80.0) for rate in rates]

    # The machine's speed drifts between rotations: each suite run is read against its own.
    results = {
        "plain Locust FastHttpUser": runs(1000, 2000, 1500),
        throughput.CLOSED: runs(950, 1900, 1350),
        throughput.OVERLOADED: runs(800, 1700, 1200),
    }
    ok = {"dropped": 0, "max_lateness_ms": 1.0, "cpu": 0.5}
    ladder = [
        throughput.Rung(throughput.ENGINE, 600.0, 600.0, True, ok),
        throughput.Rung(throughput.PACED, 600.0, 590.0, True, {"cpu": 0.4}),
    ]
    idle = {0.0: 150.0, 0.0002: 180.0, 0.001: 195.0, 0.005: 255.0}
    args = argparse.Namespace(window=4, runs=3)
    text = throughput.render(results, ladder, 1500, [], args, idle)
    assert "Part load on this machine (`python -m bench.part_load`, CPU 1): the same" in text
    assert "| 0.95 (0.90-0.95) |" in text  # paired: 0.95, 0.95, 0.90
    assert "**met** (0.95)" in text and "**not met** (0.40" in text
    assert "| 0.80 (0.80-0.85) |" in text  # the engine's capacity, paired the same way
    assert "overloaded, 0.80 of plain FastHttpUser" in text
    assert "Locust's own pacing, on the same rungs: 0.40 (held in 1 of its 1 runs)" in text
    assert "| plain FastHttpUser, constant_throughput | 600 | 590 | - | - | 0.40 | yes |" in text
    failed = {"dropped": 40, "max_lateness_ms": 90.0, "cpu": 1.0}
    ladder = [
        throughput.Rung(throughput.ENGINE, 750.0, 700.0, False, failed),
        throughput.Rung(throughput.ENGINE, 300.0, 290.0, False, failed),
    ]
    text = throughput.render(results, ladder, 1500, [], argparse.Namespace(window=4, runs=3))
    assert "| suite, arrival engine: highest offered rate held | none (down to 300/s) | | | - " \
        "| below 0.20 |" in text, text  # fmt: skip
    assert "**not met** (0.00" in text
    held = {"dropped": 0, "max_lateness_ms": 5.0, "cpu": 0.9}
    ladder = [
        throughput.Rung(throughput.ENGINE, 1500.0, 1500.0, True, held),
        throughput.Rung(throughput.ENGINE, 1500.0, 900.0, False, failed),
        throughput.Rung(throughput.ENGINE, 1500, 0, False, failed),
    ]
    text = throughput.render(results, ladder, 1500, [], argparse.Namespace(window=4, runs=3))
    assert "**not shown: held in 1 of its 3 runs** (1.00" in text, text


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
