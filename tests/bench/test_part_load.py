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
    script = (
        "import pathlib, sys, time\n"
        f"p = pathlib.Path({str(counter)!r}); n = 0\n"
        "try:\n"
        "    for _ in range(6000):\n"
        "        n += 100; p.write_text(str(n)); time.sleep(0.01)\n"
        "except KeyboardInterrupt:\n"
        "    print('stopped at', n)\n"
    )
    started = time.monotonic()
    measured = g.measure(
        [sys.executable, "-c", script], lambda: int(counter.read_text() or 0), 0.5, settle_s=0.2
    )
    assert time.monotonic() - started < 30
    assert measured.output.startswith("stopped at")
    assert measured.rate > 0
