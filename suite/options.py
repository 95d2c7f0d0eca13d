"""The suite's own command-line options, registered on Locust's parser (and its web UI)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from shapes.scenario import available_scenarios


def quiet_headless_logs(
    parser: Any, argv: Sequence[str] = sys.argv, environ: Mapping[str, str] = os.environ
) -> None:
    """A headless run logs Locust at WARNING by default: its progress is the suite's own line
    every 2 s, and Locust's INFO lines ("Shape test updating to 401 users", "Ramping to...",
    one a second for the length of a ramp) drown it. `--loglevel INFO` (or LOCUST_LOGLEVEL, or
    a config file's loglevel) brings them back: a default yields to anything said."""
    headless = "--headless" in argv or environ.get("LOCUST_HEADLESS", "").lower() in (
        "1",
        "true",
    )
    if headless:
        parser.set_defaults(loglevel="WARNING")


def add_options(parser: Any) -> None:
    quiet_headless_logs(parser)
    scenarios = available_scenarios()
    parser.add_argument(
        "--scenario",
        default="sessions",
        help=f"scenario to run: {', '.join(scenarios) or 'none yet'}, or a YAML file path",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiply every phase and stage duration by this (0.1: ten times shorter)",
    )
    parser.add_argument(
        "--report-dir",
        default="",
        help="folder for this run's files (default: reports/<scenario>-<UTC timestamp>/)",
    )
    parser.add_argument(
        "--target-profile",
        default="plan",
        help="the gateway's API mapping in conf/targets/ (default: plan)",
    )
    parser.add_argument(
        "--api-key",
        default="",
        include_in_web_ui=False,
        env_var="GATEWAY_API_KEY",
        help="the gateway's global key, for a profile that needs one (waha, evolution); never "
        "logged or reported",
    )
    parser.add_argument(
        "--profile-var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        include_in_web_ui=False,
        help="a value the target profile needs (wppconnect: secret_key=...); also SUITE_<NAME>",
    )
    parser.add_argument(
        "--sessions",
        default="",
        include_in_web_ui=False,
        help="sessions you paired on the gateway, for the message scenarios (comma-separated); "
        "the suite neither creates nor deletes them",
    )
    parser.add_argument(
        "--sessions-file",
        default="",
        include_in_web_ui=False,
        help="a file of such session names, one a line",
    )
    parser.add_argument(
        "--session-prefix",
        default="",
        include_in_web_ui=False,
        help="the start of the names of the sessions the suite creates (default: the profile's, "
        "loadtest-), a random part follows",
    )
    parser.add_argument(
        "--webhook-listen",
        default="127.0.0.1:0",
        include_in_web_ui=False,
        help="HOST:PORT of the suite's receiver of ack webhooks (default: a free loopback port)",
    )
    parser.add_argument(
        "--webhook-public-url",
        default="",
        include_in_web_ui=False,
        help="the receiver's URL as the gateway must call it, when not the listen address",
    )
    parser.add_argument(
        "--target-pid",
        type=int,
        default=0,
        include_in_web_ui=False,
        help="PID of the gateway process to sample (found automatically when local)",
    )
    parser.add_argument(
        "--metrics-url",
        default="",
        include_in_web_ui=False,
        help="the target's Prometheus endpoint (default: <target>/metrics; 'off' to skip)",
    )
    parser.add_argument(
        "--monitor-agent",
        default="",
        include_in_web_ui=False,
        help="URL of a `python -m monitors.agent` beside a gateway on another machine",
    )
    parser.add_argument(
        "--monitor-children",
        action=argparse.BooleanOptionalAction,
        default=True,
        include_in_web_ui=False,
        help="count the gateway's child processes (a browser per session, say) in its resource "
        "samples, memory as PSS (default; --no-monitor-children: its own process alone)",
    )
    parser.add_argument(
        "--profile-gateway",
        action="store_true",
        default=False,
        include_in_web_ui=False,
        help="record a py-spy CPU flame graph of the (Python) gateway: gateway-profile.svg",
    )
    parser.add_argument(
        "--node-inspect",
        default="",
        metavar="HOST:PORT",
        include_in_web_ui=False,
        help="a Node.js gateway's V8 inspector (node --inspect=127.0.0.1:9229): heap, GC and "
        "event loop sampled each second, live allocation sites at the end (loopback only "
        "unless --allow-remote)",
    )
    parser.add_argument(
        "--allocation-sampling",
        action=argparse.BooleanOptionalAction,
        default=True,
        include_in_web_ui=False,
        help="with --node-inspect: V8's sampling heap profiler over the run, the sites of the "
        "memory still live at its end (default; --no-allocation-sampling)",
    )
    parser.add_argument(
        "--heap-snapshots",
        action="store_true",
        default=False,
        include_in_web_ui=False,
        help="with --node-inspect: a heap snapshot after the warm-up and one at the end, and "
        "what grew between them by constructor (each pauses the gateway about 1 s per 100 MB "
        "of heap and writes about twice its heap to the run's folder)",
    )
    parser.add_argument(
        "--heap-snapshot-max-mb",
        type=float,
        default=1024.0,
        include_in_web_ui=False,
        help="skip a heap snapshot, with a note, when the gateway's heap is over this (MB)",
    )
    parser.add_argument(
        "--cpu-profile",
        nargs="?",
        const="run",
        default="",
        metavar="FROM:TO",
        include_in_web_ui=False,
        help="with --node-inspect: the gateway's CPU profile (gateway-cpu.cpuprofile, and a "
        "flame graph in the report) for the whole run, or seconds FROM:TO of it (60:120)",
    )
    parser.add_argument(
        "--gateway-args",
        default="",
        include_in_web_ui=False,
        help="flags for the embedded reference gateway, e.g. '--error-rate 0.1'",
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        default=False,
        include_in_web_ui=False,
        env_var="ALLOW_REMOTE",
        help="allow a target that is not on loopback (load goes only where you point it)",
    )
    parser.add_argument(
        "--keep-sessions",
        action="store_true",
        default=False,
        include_in_web_ui=False,
        help="leave the sessions the suite created on the gateway (default: deleted at the end, "
        "the count in summary.json)",
    )
    parser.add_argument(
        "--recipients",
        default="",
        env_var="SUITE_RECIPIENTS",
        help="phone numbers you own that messages may go to (comma-separated, country code "
        "first); needed against any gateway but the embedded one",
    )
    parser.add_argument(
        "--recipients-file",
        default="",
        include_in_web_ui=False,
        env_var="SUITE_RECIPIENTS_FILE",
        help="a file of such numbers, one a line (# starts a comment)",
    )
    parser.add_argument(
        "--synthetic-numbers",
        action="store_true",
        default=False,
        include_in_web_ui=False,
        env_var="SUITE_SYNTHETIC_NUMBERS",
        help="make up phone numbers (the plan's random 55119...) against this target: only for "
        "a gateway with no real phones behind it",
    )
    parser.add_argument(
        "--lang",
        choices=["en", "pt-BR"],
        default="en",
        help="language of the report: en (default) or pt-BR",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=30.0,
        help="seconds without an answer before a request fails as timed out (default 30)",
    )
    parser.add_argument(
        "--label",
        default="",
        env_var="SUITE_LABEL",
        help="a label for this run in the run history (e.g. the gateway's version: v2.3.1)",
    )
    parser.add_argument(
        "--history-db",
        default="",
        env_var="HISTORY_DB",
        include_in_web_ui=False,
        help="the run history's database: a SQLAlchemy URL (postgresql+psycopg://...), "
        "default sqlite at reports/history.sqlite; 'off' records nothing",
    )
    parser.add_argument(
        "--master-timeout",
        type=float,
        default=20.0,
        include_in_web_ui=False,
        help="a worker quits (its users stopped) this many seconds after its master's last sign",
    )
