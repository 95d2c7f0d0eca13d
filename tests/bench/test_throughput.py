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
