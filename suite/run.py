"""What the locustfile's `init` hook does on each kind of process.

- every process: load the target profile; the request recorder and the business counters;
- processes that run users (local runner, workers): the scenario's pacing at every start;
- the master or local runner: the target (the embedded gateway when none is given), the
  scenario's shape, the run's folder and summary, the progress line of headless runs.

The scenario is loaded and checked here, before any load starts, so that a mistake is one line
on stderr and exit code 2 (`UsageError`), not a traceback in the middle of a run.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import gevent
import greenlet
import locust.runners
from flask import Response, jsonify, request
from locust.event import EventHook
from locust.runners import STATE_RUNNING, STATE_SPAWNING, MasterRunner, WorkerRunner

from analysis.counters import RunCounters
from analysis.criteria import CriteriaError, CriteriaFile, is_metric, load_criteria
from analysis.live_judge import LiveJudge
from analysis.live_report import LiveReport
from analysis.recorder import RequestRecorder
from analysis.run_record import RunRecord, default_report_dir
from analysis.timeline import StageTimeline, window_width_for
from monitors.alerts import AlertRules, load_alert_rules
from monitors.generator import GeneratorHealth
from monitors.inspector import InspectorError
from monitors.live import LiveView, install_live_view, install_suite_page
from monitors.node_profiling import NodeProfiling, ProfilingError, ProfilingPlan, cpu_window
from monitors.process import pid_listening_on
from monitors.profile import ProfilerProcess
from monitors.progress import print_progress, quiet_spawn_rate_warning
from monitors.recovery import probe_recovery
from monitors.resources import ResourceMonitor
from shapes.arrivals import ArrivalShape
from shapes.scenario import CONF_DIR, ScenarioError
from shapes.scenario_shape import ScenarioPacing, ScenarioShape, scenario_from_options
from suite.catalog import catalog, scenario_needs
from suite.live_run import RunLive
from suite.pauses import FrozenAtStart
from suite.recipients import settle_numbers
from suite.start_form import check_start
from suite.stats_trim import keep_trimmed
from suite.target import (
    TargetError,
    check_reachable,
    check_target,
    is_loopback_url,
    start_embedded_gateway,
)
from suite.target_values import (
    TargetValuesError,
    check_session_prefix,
    named_sessions,
    profile_values,
    session_cycle,
)
from suite.workers import WorkerWatch
from users.ack_channels import WebhookReceiver
from users.auth import auth_of
from users.messages import UNREADY_EVENT
from users.numbers import NumbersError
from users.profile import ProfileError, load_profile

if TYPE_CHECKING:
    from locust.env import Environment
    from locust.user import User

    from gateway.process import GatewayProcess

USAGE_ERROR = 2


def fail(message: str) -> None:
    """One line on stderr, exit code 2: for anything wrong before the load starts."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(USAGE_ERROR)


class SuiteRun:
    """The suite installed on one Locust process."""

    def __init__(self, environment: Environment, user_classes: Mapping[str, type[User]]) -> None:
        self.environment = environment
        self.classes = user_classes
        self.options = environment.parsed_options
        self.runner = environment.runner
        # The live verdict's process, started first: its imports run while this process loads
        # the scenario and prepares the target (see `ready()` below). Workers do not judge.
        judging = None if isinstance(self.runner, WorkerRunner) else LiveReport()
        if judging is not None:
            judging.start()
        self.gateway: GatewayProcess | None = None
        self.shape: ScenarioShape | None = None
        self.profiler: ProfilerProcess | None = None
        self.peak_workers = 0  # the summary is written again at quitting, workers gone by then
        self.partial = False  # the process quit while the load was still on (Ctrl-C, SIGTERM)
        self.recovery: gevent.Greenlet | None = None
        quiet_spawn_rate_warning()
        try:
            self.scenario = self.load_scenario()
            self.prepare_profile()
            self.check_profile_has_what_the_users_need()
            self.criteria = self.load_criteria()
        except (ScenarioError, ProfileError, CriteriaError, TargetValuesError) as exc:
            fail(str(exc))
        self.receiver = self.start_webhook_receiver()
        self.unready: dict[str, Any] | None = None
        setattr(environment.events, UNREADY_EVENT, EventHook())
        getattr(environment.events, UNREADY_EVENT).add_listener(self.on_session_unready)
        self.recorder = RequestRecorder(environment, self.window_width)
        self.counters = RunCounters(environment)
        if not isinstance(self.runner, MasterRunner):
            ScenarioPacing(environment, self.load_scenario, user_classes)
            FrozenAtStart(environment)
        if isinstance(self.runner, WorkerRunner):
            GeneratorHealth(environment, record=lambda source, sample: None)
            # Locust's worker quits when its master is silent this long (60 s by default, a
            # module constant read at each check): a dead master must not leave its workers
            # loading the target for a minute.
            locust.runners.MASTER_HEARTBEAT_TIMEOUT = self.options.master_timeout
            return
        assert judging is not None  # not a worker
        if environment.web_ui is not None:
            self.check_web_port()  # before the embedded gateway starts
        self.prepare_target()
        self.synthetic_asked = bool(self.options.synthetic_numbers)
        try:
            self.numbers = self.settle_numbers()
        except NumbersError as exc:
            fail(str(exc))
        # Before the run's record: its recordings are written at test_stop before the report.
        self.node = self.attach_node_inspector()
        self.shape = ScenarioShape(self.load_scenario, user_classes)
        self.shape.runner = self.runner
        environment.shape_class = self.shape
        self.record = RunRecord(
            environment,
            self.recorder,
            self.counters,
            self.describe,
            self.report_dir,
            stages=StageTimeline(self.shape.current_stage),
            criteria_path=self.criteria_path,
            lang=lambda: self.options.lang,
        )
        self.worker_watch = (
            WorkerWatch(self.runner) if isinstance(self.runner, MasterRunner) else None
        )
        self.judge = LiveJudge(
            lambda: self.runner.stats, self.recorder.book, self.counters, self.shape.stop_now
        )
        self.monitor = self.build_monitor()
        self.live = RunLive(
            environment,
            self.shape,
            lambda: self.scenario,
            self.record,
            self.recorder.book,
            lambda: self.monitor,
            lambda: self.judge.criteria,
            partial=lambda: self.partial,
            lang=lambda: self.options.lang,
            report=judging,
        )
        self.record.checkpointed.append(self.live.judge_soon)
        self.history_unrecorded: Path | None = None  # the run whose failure to record was said
        self.record.written.append(self.record_history)
        self.view = LiveView(self.live.build)
        self.view.start()
        self._catalog: dict[str, Any] | None = None
        if environment.web_ui is not None:
            install_live_view(environment, lambda: self.monitor)
            install_suite_page(environment, self.view, self.form_options)
            self.install_report_view()
            self.install_start_check()
        self.health = GeneratorHealth(
            environment, record=lambda source, sample: self.monitor.record(source, sample)
        )
        keep_trimmed(lambda: self.runner.stats)
        environment.events.test_start.add_listener(self.on_test_start)
        environment.events.test_stop.add_listener(self.on_test_stop)
        environment.events.quitting.add_listener(self.on_quitting)
        if getattr(self.options, "headless", False):
            # Locust's own SIGTERM handler does not get to run in these headless runs (the
            # process dies of the signal, nothing written): SIGTERM is made a Ctrl-C instead,
            # a KeyboardInterrupt in the main greenlet, whose path (Locust's shutdown) writes
            # the partial report. So is Ctrl-C itself: Python raises it in whichever greenlet
            # happens to run, and one raised in a user's or in a listener of test_start (busy
            # in the garbage collector) stopped that greenlet only, and the run went on.
            main = greenlet.getcurrent()  # the init hook runs in Locust's main greenlet
            for signum in (signal.SIGTERM, signal.SIGINT):
                gevent.signal_handler(signum, lambda: main.throw(KeyboardInterrupt))
            print_progress(environment, self.shape.describe, self.view)
            # The load begins when this hook returns: the live verdict's process is started by
            # then, its imports' CPU not taken from the load's first seconds.
            if not judging.ready():
                logging.getLogger("report").info(
                    "the live verdict's process is not ready (still starting, or ended): "
                    "the load begins anyway"
                )

    def check_web_port(self) -> None:
        """The web UI binds after this hook: a busy port is a usage error now, not a traceback
        in a greenlet later."""
        web_ui = self.environment.web_ui
        host = "" if web_ui.host in ("", "*", "0.0.0.0") else web_ui.host
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, web_ui.port))
            except OSError as exc:
                fail(f"the web UI's port {web_ui.port} is not free ({exc.strerror}): --web-port")

    def install_start_check(self) -> None:
        """A start from the form is checked before Locust starts it (`suite.start_form`)."""
        app = self.environment.web_ui.app

        @app.before_request
        def _check_start() -> Response | None:
            if request.endpoint != "locust.swarm" or request.method != "POST":
                return None
            problem = check_start(
                request.form,
                self.options,
                self.classes,
                self.gateway.url if self.gateway is not None else None,
                profile_now=self.environment.target_profile.name,
                synthetic_asked=self.synthetic_asked,
                sessions_given=bool(self.named_sessions),
                distributed=isinstance(self.runner, MasterRunner),
            )
            if problem is None:
                return None
            return jsonify({"success": False, "message": problem, "host": self.environment.host})

    def follow_form(self) -> None:
        """At a start: a profile or target the form changed is the one loaded and watched."""
        if self.options.target_profile != self.environment.target_profile.name:
            try:
                self.prepare_profile()
            except (ProfileError, TargetValuesError) as exc:
                print(f"error: {exc}", file=sys.stderr)
            if self.receiver is None and not isinstance(self.runner, MasterRunner):
                self.receiver = self.start_webhook_receiver()
        if self.environment.host != self.monitored_host:
            old, self.monitor = self.monitor, self.build_monitor()
            old.stop()
            for source in old.sources:
                if source not in self.monitor.sources:  # the Node inspector's stays
                    source.close()

    def install_report_view(self) -> None:
        """`GET /report`: the last run's report.html in the web UI (404 before the first)."""
        web_ui = self.environment.web_ui
        base = (getattr(self.options, "web_base_path", "") or "").rstrip("/")

        @web_ui.app.route(f"{base}/report")
        @web_ui.auth_required_if_enabled
        def report() -> Response:
            folder = self.record.folder
            if folder is None:
                return Response("no report yet: start a run\n", status=404, mimetype="text/plain")
            page, summary = folder / "report.html", folder / "summary.json"
            if self.record.ended_at is None:
                # The run goes on: its data now, and the report drawn by the live report's
                # process, off the load's event loop.
                self.record.checkpoint()
                self.live.render(folder)
            # Rendered now if the run's data is newer (just stopped, its final write to come).
            elif not page.is_file() or summary.stat().st_mtime > page.stat().st_mtime:
                self.record.write()
            if not page.is_file():
                return Response("no report: see the log\n", status=500, mimetype="text/plain")
            return Response(page.read_text(encoding="utf-8"), mimetype="text/html")

    def record_history(self, folder: Path) -> None:
        """The ended run into the run history (`history/`), as its report was written; a
        history that cannot be written is said in one line and costs the run nothing.

        An ended run's report can be written twice (a second after it stops, once more at
        exit, when stopping took longer than that): each write records the run again, replacing
        its row with the newer data, and a failure is said once a run."""
        if self.options.history_db == "off":
            return
        from history.entry import EntryError, entry_from_folder
        from history.store import HistoryError, HistoryStore

        try:
            store = HistoryStore(self.options.history_db or None)
            try:
                store.record(entry_from_folder(folder))
            finally:
                store.close()
        except (EntryError, HistoryError, OSError) as exc:
            if self.history_unrecorded != folder:
                self.history_unrecorded = folder
                print(f"history: this run was not recorded: {exc}", file=sys.stderr, flush=True)

    def form_options(self) -> dict[str, Any]:
        """The web UI form's choices (`GET /suite/options`): read once, the defaults now."""
        if self._catalog is None:
            self._catalog = catalog(self.classes)
        embedded = self.gateway.url if self.gateway is not None else None
        return {
            **self._catalog,
            "defaults": {
                "scenario": Path(self.options.scenario).stem,
                "target_profile": self.environment.target_profile.name,
                "time_scale": float(self.options.time_scale),
                "host": self.environment.host or embedded or "",
            },
            "embedded_host": embedded,
        }

    def load_scenario(self):
        self.scenario = scenario_from_options(self.environment, self.classes)
        return self.scenario

    def criteria_path(self) -> Path:
        return CONF_DIR / self.scenario.criteria

    def load_criteria(self) -> CriteriaFile:
        return load_criteria(self.criteria_path(), is_metric)

    def window_width(self) -> float:
        """The width of the run's time windows, from the scenario's planned length."""
        return window_width_for(self.load_scenario().duration_s())

    def prepare_target(self) -> None:
        try:
            if self.environment.host:
                check_target(self.environment.host, self.options.allow_remote)
                check_reachable(self.environment.host)
            else:
                self.gateway = start_embedded_gateway(self.options.gateway_args)
                self.environment.host = self.gateway.url
                print(f"embedded reference gateway at {self.gateway.url}", file=sys.stderr)
        except TargetError as exc:
            fail(str(exc))

    def prepare_profile(self) -> None:
        """The target profile, its auth, the values the user gives it and the sessions the
        user named, on the environment for the users (`suite.target_values`)."""
        environment = self.environment
        profile = environment.target_profile = load_profile(self.options.target_profile)
        environment.target_auth = auth_of(profile)
        environment.target_values = profile_values(profile, self.options)
        check_session_prefix(self.options)
        self.named_sessions = named_sessions(self.options)
        environment.named_sessions = session_cycle(self.named_sessions)

    def start_webhook_receiver(self) -> WebhookReceiver | None:
        """The receiver of ack webhooks, on the processes that run users, when the profile
        has a webhook channel."""
        profile = self.environment.target_profile
        if profile.webhook_channel() is None or isinstance(self.runner, MasterRunner):
            return None
        listen = self.options.webhook_listen
        try:
            receiver = WebhookReceiver(
                listen,
                public_url=self.options.webhook_public_url or None,
                count=lambda name, value=1: self.environment.events.suite_counter.fire(
                    name=name, value=value
                ),
                # Only an address the user gave: the default is a free loopback port.
                allow_non_loopback=listen != "127.0.0.1:0",
            )
            receiver.start()
        except (OSError, ValueError) as exc:
            fail(f"--webhook-listen {listen}: {exc}")
        self.environment.webhook_receiver = receiver
        return receiver

    def on_session_unready(self, session: str, state: Any, ready: list[Any], **_: Any) -> None:
        """A session the user named is not ready: nothing can be sent, the run stops now with
        that reason (once, for the first such session); the report's verdict is Failed,
        `session_not_ready`, and so is the exit code."""
        if self.unready is not None:
            return
        self.unready = {"session": session, "state": state, "ready": ", ".join(map(str, ready))}
        print(
            f"error: session {session!r} is {state}, not {', '.join(map(str, ready))}: pair it "
            "on the gateway first; the run stops, nothing was sent",
            file=sys.stderr,
            flush=True,
        )
        if self.shape is not None:
            self.shape.stop_now()

    def check_profile_has_what_the_users_need(self) -> None:
        """A scenario whose users send a request the gateway's profile lacks (the webhooks
        scenario against WAHA) is refused before any load, naming the request. Message senders
        create their sessions unless the user named some (`--sessions`)."""
        profile = self.environment.target_profile
        needs = scenario_needs(
            self.scenario, self.classes, sessions_given=bool(self.named_sessions)
        )
        for user, role in needs:
            if profile.lacks([role]):
                raise ProfileError(
                    f"scenario {self.scenario.name!r}: {user} sends the {role!r} request, "
                    f"which the target profile {profile.name!r} does not have"
                )

    def settle_numbers(self) -> dict[str, Any]:
        """Which numbers this run's users may send to (`suite.recipients`): made-up ones only
        while the target is the embedded gateway (a web UI form may point elsewhere)."""
        scenario = self.load_scenario()
        classes = [self.classes[name] for name in scenario.users if name in self.classes]
        embedded = self.gateway is not None and self.environment.host == self.gateway.url
        return settle_numbers(
            self.options, classes, embedded=embedded, explicit=self.synthetic_asked
        )

    def build_monitor(self) -> ResourceMonitor:
        options = self.options
        host = self.environment.host or ""
        self.monitored_host = self.environment.host
        pid = self.gateway.pid if self.gateway else options.target_pid or None
        if pid is None and is_loopback_url(host):
            pid = pid_listening_on(urlsplit(host).port or 80)
        metrics_url = None if options.metrics_url == "off" else options.metrics_url
        return ResourceMonitor(
            pid=pid,
            metrics_url=metrics_url or host.rstrip("/") + "/metrics",
            agent_url=options.monitor_agent or None,
            include_children=options.monitor_children,
            rules=self.alert_rules(),
            users=lambda: self.runner.user_count,
            sessions=self.sessions_held,
            metric_names=self.environment.target_profile.metrics.model_dump(exclude_none=True),
            sources=[self.node.sampler] if self.node is not None else [],
            watch_leak=False,  # the report's own leak analysis alerts (suite.live_run)
        )

    def attach_node_inspector(self) -> NodeProfiling | None:
        """`--node-inspect`: the gateway's V8 inspector, its samples and recordings."""
        options = self.options
        if not options.node_inspect:
            if options.cpu_profile or options.heap_snapshots:
                fail("--cpu-profile and --heap-snapshots need --node-inspect HOST:PORT")
            return None
        try:
            cpu_from, cpu_to = cpu_window(options.cpu_profile)
            plan = ProfilingPlan(
                allocations=options.allocation_sampling,
                cpu_from_s=cpu_from,
                cpu_to_s=cpu_to,
                heap_snapshots=options.heap_snapshots,
                heap_snapshot_max_mb=options.heap_snapshot_max_mb,
            )
            node = NodeProfiling.attach(
                options.node_inspect, plan, allow_remote=options.allow_remote
            )
        except (InspectorError, ProfilingError) as exc:
            fail(str(exc))
            raise  # unreachable: fail() exits
        node.heap_used_mb = lambda: self.monitor.latest.get("heap_used_mb")
        self.environment.events.test_stop.add_listener(lambda **_: node.finish())
        return node

    def sessions_held(self) -> float:
        """The sessions the suite created and has not deleted, and the ones it was given."""
        counters = self.counters
        created = counters.get("sessions_created") - counters.get("sessions_deleted")
        return max(0.0, created) + len(self.named_sessions)

    def alert_rules(self) -> AlertRules:
        """The criteria file's `alerts:`; the leak window follows the scenario's planned length."""
        try:
            return load_alert_rules(CONF_DIR / self.scenario.criteria, self.scenario.duration_s())
        except ValueError as exc:
            fail(str(exc))
            raise  # unreachable: fail() exits

    def on_test_start(self, **_: Any) -> None:
        self.follow_form()
        self.peak_workers = 0
        self.partial = False
        # After RunRecord's own test_start listener: the run's folder exists by now.
        try:
            self.criteria = self.load_criteria()  # the scenario may have changed (web UI)
        except CriteriaError as exc:
            print(f"error: {exc}", file=sys.stderr)
        try:
            self.numbers = self.settle_numbers()  # before the users start, on every worker too
        except NumbersError as exc:
            print(f"error: {exc}; the users that need numbers will send nothing", file=sys.stderr)
        self.judge.start(list(self.criteria.criteria))
        self.live.reset()
        if self.worker_watch is not None:
            self.worker_watch.start()
        if self.record.folder is not None:
            self.monitor.rules = self.alert_rules()
            self.monitor.start(self.record.folder / "samples.csv")
            self.start_profiler(self.record.folder / "gateway-profile.svg")
            if self.node is not None:
                planned = self.scenario.duration_s()
                warmup = self.criteria.analysis.warmup_fraction * planned if planned else None
                self.node.start(self.record.folder, planned, warmup)

    def start_profiler(self, out: Path) -> None:
        """`--profile-gateway`: py-spy records the gateway's flame graph for the run."""
        if not self.options.profile_gateway:
            return
        if self.profiler is not None:
            self.profiler.stop()
        if self.monitor.process is None:
            print(
                "profile: the gateway's pid is unknown (--target-pid): not profiled",
                file=sys.stderr,
            )
            return
        planned = self.scenario.duration_s()  # None for a burst: bounded by its timeout
        if planned is None:
            planned = getattr(self.scenario.load, "timeout", 600.0)
        self.profiler = ProfilerProcess(self.monitor.process.process.pid, planned + 5, out)

    def on_test_stop(self, **_: Any) -> None:
        self.partial = self.shape is not None and not self.shape.finished
        self.judge.stop()
        if self.worker_watch is not None:
            self.worker_watch.stop()
            self.record.extra["workers"] = self.worker_watch.as_dict()
        if self.judge.aborted is not None:
            self.record.extra["aborted"] = self.judge.aborted
        url = self.health_url()
        if url is not None and not self.partial:  # interrupted: no time to wait for it
            self.recovery = gevent.spawn(self.probe, url)

    def health_url(self) -> str | None:
        spec = self.environment.target_profile.requests.get("health")
        if spec is None or not self.environment.host:
            return None
        return self.environment.host.rstrip("/") + spec.path

    def probe(self, url: str) -> None:
        self.record.extra["recovery"] = probe_recovery(url)

    def report_dir(self, started: float) -> Path:
        if self.options.report_dir:
            return Path(self.options.report_dir)
        return default_report_dir(self.options.scenario, started)

    def workers(self) -> int:
        if not isinstance(self.runner, MasterRunner):
            return 1
        self.peak_workers = max(self.peak_workers, len(self.runner.clients))
        return self.peak_workers

    def describe(self) -> dict[str, Any]:
        scenario = self.scenario
        shape = self.shape.delegate if self.shape else None
        run: dict[str, Any] = {
            "scenario": scenario.name,
            "description": scenario.description,
            "model": scenario.model,
            "time_scale": scenario.time_scale,
            "target": self.environment.host,
            "embedded_target": self.gateway is not None,
            "workers": self.workers(),
            "partial": self.partial,
        }
        if isinstance(shape, ArrivalShape):
            run["arrivals"] = shape.counters().as_dict()
            run["arrivals"]["lost_workers"] = shape.lost_workers
        run["numbers"] = self.numbers
        run["profile"] = self.environment.target_profile.name
        run["named_sessions"] = len(self.named_sessions)
        run["label"] = self.options.label or None
        if self.unready is not None:
            run["stopped_because"] = {"reason": "session_not_ready", **self.unready}
        run["resources"] = self.monitor.summary()
        run["generators"] = self.health.summary()
        return run

    def on_quitting(self, **_: Any) -> None:
        # Before RunRecord's own quitting listener (Locust calls them in reverse): the last
        # summary says whether the run was cut short (Ctrl-C, SIGTERM, the UI's stop button).
        self.partial = self.shape is not None and not self.shape.finished
        if self.runner.state in (STATE_RUNNING, STATE_SPAWNING):
            # Interrupted: the users stop before the gateway does (a gateway still being sent
            # requests takes its whole grace period to shut down), and their last results
            # are in the report.
            self.runner.stop()
        if self.recovery is not None:
            self.recovery.join(timeout=15)  # before the gateway stops: the probe needs it
        if self.profiler is not None:
            self.profiler.stop()  # before the gateway: py-spy writes the graph on SIGINT
        self.monitor.close()
        self.view.stop()
        self.live.close()
        if self.node is not None:
            self.node.finish()  # interrupted before test_stop: what was recorded so far
            self.node.close()
        if self.receiver is not None:
            self.receiver.stop()
        if self.gateway is not None:
            self.gateway.stop()
