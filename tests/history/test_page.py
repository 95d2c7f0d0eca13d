"""The history page from synthetic runs: self-contained, each dot a link to its run's report
relative to the page, the flagged drift first, verdict colours and labels shown; then opened in
headless Chromium, offline (every request but file: and data: refused), a screenshot kept."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from playwright.sync_api import Route, sync_playwright

from history.entry import RunEntry
from history.page import VERDICT_COLORS, render_page, terminal_table
from history.trend import trends
from tests.e2e.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

START = 1_780_000_000.0
NIGHT_S = 86_400.0
REQUEST = "p95_ms POST /api/sendText"
# An escaping check rides along: a label with markup in it.
LABELS = ["v2.3.0"] * 7 + ["v2.3.1"] * 6 + ["v2.4.0-rc<1>"] * 7
VERDICTS = {4: "degraded", 11: "failed", 15: "degraded", 18: "failed"}
PARTIAL = 9
SEED = 12  # with 11, the steady request p95 drifts up by chance (p = 0.04): flagged


def synthetic_runs(tmp_path: Path) -> list[RunEntry]:
    """20 nights: latency drifting up across the gateway's versions, the rest steady. Every
    other run's folder is recorded relative to the current dir (tmp_path), as a store may."""
    rng = np.random.default_rng(SEED)
    entries = []
    for night in range(20):
        name = f"stress-night-{night:02d}" + (" (rerun)" if night == 6 else "")
        folder = tmp_path / "runs" / name
        folder.mkdir(parents=True)
        (folder / "report.html").write_text(
            f"<!doctype html><title>run report {night}</title><h1 id='run'>night {night}</h1>",
            encoding="utf-8",
        )
        entries.append(
            RunEntry(
                folder=str(folder if night % 2 else folder.relative_to(tmp_path)),
                scenario="stress",
                started_at=START + night * NIGHT_S + 120 * night,
                verdict=VERDICTS.get(night, "approved"),
                partial=night == PARTIAL,
                target="waha",
                profile="nightly",
                label=LABELS[night],
                duration_s=300.0 if night != PARTIAL else 131.0,
                figures={
                    "latency_p95_ms": 20 + rng.normal(0, 0.8) + 0.6 * night,
                    "latency_p99_ms": 35 + rng.normal(0, 2.0),
                    "error_rate_pct": abs(rng.normal(0.2, 0.1)),
                    "requests_per_s": 120 + rng.normal(0, 3.0),
                    "memory_per_session_mb": 0.42 + rng.normal(0, 0.01),
                    REQUEST: 14 + rng.normal(0, 0.5),
                },
            )
        )
    return entries


class Links(HTMLParser):
    """Every href and src of the page, with the tag it is on."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("href", "src", "xlink:href") and value is not None:
                self.found.append((tag, key, value))


@pytest.fixture
def page_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[RunEntry]]:
    monkeypatch.chdir(tmp_path)
    entries = synthetic_runs(tmp_path)
    site = tmp_path / "site"
    path = render_page(entries, trends(entries), "Run history: stress on waha", site, site)
    return path, entries


def test_page_is_self_contained_and_links_every_report(page_file):
    path, entries = page_file
    assert path.name == "history.html" and path.parent.name == "site"
    html = path.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html and "<link" not in html and "<img" not in html
    parser = Links()
    parser.feed(html)
    for _tag, _key, value in parser.found:
        assert not value.startswith("//") and not urlsplit(value).scheme, value
    # Every dot (one per run and figure held) and every row links to a report that exists.
    links = [v for t, _, v in parser.found if t == "a" and v.endswith("report.html")]
    reports = {(path.parent / unquote(v)).resolve() for v in links}
    assert reports == {(Path(e.folder) / "report.html").resolve() for e in entries}
    assert all(report.is_file() for report in reports)
    charts = html.count('class="chart-figure')
    assert charts == 6  # five key figures and the request's p95
    assert len(links) == charts * len(entries) + len(entries)  # the dots, then the table
    assert "../runs/stress-night-06%20%28rerun%29/report.html" in html  # quoted, relative


def test_page_shows_drift_verdicts_and_labels(page_file):
    path, _ = page_file
    html = path.read_text(encoding="utf-8")
    banners = html.split('id="drifts"')[1].split("</section>")[0]
    assert banners.count('class="banner"') == 1 and 'data-figure="latency_p95_ms"' in banners
    assert "latency_p95_ms rising over 19 runs" in banners
    assert html.index('class="banner"') < html.index('id="charts"')  # drifts come first
    assert 'id="chart-latency_p95_ms"' not in html  # anchors are slugs
    assert 'id="chart-latency-p95-ms"' in html and 'href="#chart-latency-p95-ms"' in html
    for color in VERDICT_COLORS.values():
        assert f'fill="{color}"' in html
    assert 'class="run partial"' in html and 'fill="#fff"' in html
    for label in ("v2.3.0", "v2.3.1", "v2.4.0-rc&lt;1&gt;"):
        assert f">{label}</text>" in html
    assert "rc<1>" not in html  # escaped everywhere
    assert html.count('class="run-row"') == 20
    assert "Flagged: worsening" in html and "Not flagged" in html


def test_terminal_table(page_file):
    _, entries = page_file
    text = terminal_table(entries, trends(entries))
    print("\n" + text)
    lines = text.splitlines()
    assert lines[0].startswith("start (UTC)") and "p95 ms" in lines[0]
    assert sum("v2.3.1" in line for line in lines) == 6
    assert any("failed" in line for line in lines) and "degraded" in text
    assert sum("(partial)" in line for line in lines) == 1
    assert "! latency_p95_ms rising over 19 runs" in text
    assert lines[-1].startswith("drift: 1 figure worsening")


def test_page_in_headless_chromium(page_file):
    path, _ = page_file
    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: apt-get install -y chromium"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "history-page.png"
    errors: list[str] = []
    outside: list[str] = []

    def local(url: str) -> bool:
        return url.startswith(("file:", "data:"))

    def offline(route: Route) -> None:
        if local(route.request.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 900})
            context.route("**/*", offline)
            page = context.new_page()
            page.set_default_timeout(20_000)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            # Beside the route: a request the route would not see is counted too.
            page.on("request", lambda r: None if local(r.url) else outside.append(r.url))
            page.goto(path.as_uri())
            assert page.locator("a.banner").first.is_visible()
            charts = page.eval_on_selector_all(
                "figure.chart-figure",
                """figs => figs.map(f => ({figure: f.dataset.figure,
                    dots: f.querySelectorAll('circle.run').length,
                    height: f.querySelector('svg').getBoundingClientRect().height}))""",
            )
            assert len(charts) == 6 and all(c["dots"] == 20 and c["height"] > 150 for c in charts)
            page.screenshot(path=str(shot), full_page=True)
            # A dot opens its run's report: the relative link resolves from the page.
            page.locator("#chart-latency-p95-ms a").last.click()
            page.wait_for_load_state()
            assert page.url.endswith("/runs/stress-night-19/report.html"), page.url
            assert page.locator("#run").inner_text() == "night 19"
        finally:
            browser.close()
    print(f"\nscreenshot: {shot}")
    assert not errors, errors
    assert not outside, outside
    assert shot.stat().st_size > 20_000


def test_a_history_of_several_series_gets_an_index_and_a_page_each(tmp_path, capsys):
    """Trends across unlike runs mean nothing: `python -m history` draws each series (a
    scenario on a target, one profile) on its own page, `history.html` their index."""
    from history.__main__ import main
    from history.store import HistoryStore

    url = f"sqlite:///{tmp_path / 'history.sqlite'}"
    with HistoryStore(url) as store:
        for night in range(10):
            for scenario, p95 in (("stress", 20.0 + night), ("webhooks", 5.0)):
                folder = tmp_path / "reports" / f"{scenario}-{night}"
                folder.mkdir(parents=True)
                store.record(
                    RunEntry(
                        folder=str(folder), scenario=scenario, started_at=1e9 + night * 86400,
                        verdict="approved", target="embedded", profile="plan",
                        figures={"latency_p95_ms": p95},
                    )
                )  # fmt: skip
    out = tmp_path / "reports" / "history.html"
    assert main(["--history-db", url, "--out", str(out), "--last", "8"]) == 0
    index = out.read_text(encoding="utf-8")
    pages = sorted(p.name for p in out.parent.glob("history-*.html"))
    assert pages == ["history-stress-1.html", "history-webhooks-2.html"]
    assert all(f'href="{name}"' in index for name in pages)
    stress = (out.parent / pages[0]).read_text(encoding="utf-8")
    assert "latency_p95_ms rising over 8 runs" in stress  # the last 8 of each series
    printed = capsys.readouterr().out
    assert "== stress on embedded (plan): 8 run(s)" in printed and "drift" in printed
    assert main(["--history-db", url, "--scenario", "messages"]) == 2  # nothing: one line
