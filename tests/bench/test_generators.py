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
