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
