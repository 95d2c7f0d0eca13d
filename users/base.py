"""The base of the suite's users: one iteration of a scenario, paced by the load model."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import gevent
from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser

from shapes.pacing import pacing_of
from users.auth import Auth, AuthError, Headers, auth_of
from users.cleanup import SessionCleanup
from users.numbers import PhoneNumbers
from users.profile import Request, TargetProfile, load_profile

COUNTER_EVENT = "suite_counter"
JSON = "application/json"


class ScenarioUser(FastHttpUser):
    """A FastHttpUser whose single task is one paced iteration of `iteration()`.

    - `options`: the scenario's options for this class (`users: {Class: {options: ...}}`).
    - `profile`: the target profile (paths, payloads), from the environment; `call(role,
      values, headers)` sends one of its requests, `answer(response)` decodes what came back.
    - `session_values()`: the values a new session's requests are filled with (its name, the
      key, the user's profile variables); `authenticate(values)` runs the profile's auth flow
      and returns the headers of that session's requests.
    - `count(name)`: a business counter (sessions created, messages throttled, ...), fired on
      the environment's `suite_counter` event for whoever collects them.

    When an arrival-paced iteration starts late (its due time has passed), the lateness rides
    along in the request context of every request of that iteration, so that the recorder can
    measure latency from the due time.
    """

    abstract = True
    wait_time = constant(0)
    options: ClassVar[dict[str, Any]] = {}
    # Whether it puts phone numbers in what it sends: the suite refuses such a scenario
    # against a real gateway without recipients (`suite.recipients`).
    sends_to_numbers: ClassVar[bool] = False
    # The target profile's requests (roles) it sends: a profile without one of them cannot
    # run it (`TargetProfile.lacks`).
    needs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, environment: Any, *args: Any, **kwargs: Any) -> None:
        # Read by FastHttpUser.__init__ for its client: a request with no answer this long
        # (the gateway hangs) fails as "no answer: timed out after N s" instead of waiting.
        timeout = getattr(environment.parsed_options, "request_timeout", None)
        if timeout:
            self.network_timeout = self.connection_timeout = float(timeout)
        super().__init__(environment, *args, **kwargs)
        self._request_context: dict[str, Any] = {}
        self._json_headers: tuple[Headers | None, Headers] = (None, {})
        self.profile: TargetProfile = getattr(self.environment, "target_profile", None) or (
            load_profile()
        )
        self.auth: Auth = getattr(self.environment, "target_auth", None) or auth_of(self.profile)
        # The user's --api-key and --profile-var values (suite.target_values): never logged.
        self.given: Mapping[str, str] = getattr(self.environment, "target_values", None) or {}
        # The sessions this user created (`create_session`), deleted by `delete_own_sessions`.
        self.cleanup = SessionCleanup(self.profile, self.host, self.count)

    def iteration(self) -> None:
        raise NotImplementedError

    @task
    def paced_iteration(self) -> None:
        pacing_of(self).run(self)

    def set_lateness(self, lateness_s: float | None) -> None:
        self._request_context = {} if lateness_s is None else {"lateness_ms": lateness_s * 1000}

    def context(self) -> dict[str, Any]:
        return self._request_context

    def count(self, name: str, value: float = 1) -> None:
        hook = getattr(self.environment.events, COUNTER_EVENT, None)
        if hook is not None:
            hook.fire(name=name, value=value)

    def option(self, name: str, default: Any) -> Any:
        return self.options.get(name, default)

    def phone_numbers(self) -> PhoneNumbers:
        """The numbers this run allows (`users.numbers`); without any, the user stops here,
        having sent nothing, and is counted as `numbers_refused`."""
        numbers = PhoneNumbers.from_options(self.environment.parsed_options)
        if not numbers.usable:
            self.count("numbers_refused")
            raise StopUser()
        return numbers

    def api_key(self, template: str) -> str:
        """A key from a template such as "test-key-{random}" (never logged or reported)."""
        return template.replace("{random}", secrets.token_hex(8))

    def session_values(self, default_key: str = "test-key-{random}") -> dict[str, Any]:
        """A new session's template values: a name the suite makes (the profile's prefix and a
        random part), the key (the user's global one, or one made per session from the
        scenario's `api_key` option), and the user's profile variables."""
        naming = self.profile.model.session_name
        prefix = getattr(self.environment.parsed_options, "session_prefix", "") or naming.prefix
        name = prefix + secrets.token_hex(16)[: naming.random_chars]
        values: dict[str, Any] = {**self.given, "session_name": name, "session_id": name}
        if self.profile.auth.key == "per_session":
            values["api_key"] = self.api_key(self.option("api_key", default_key))
        return values

    def authenticate(self, values: Mapping[str, Any]) -> Headers | None:
        """The headers of one session's requests, from the profile's auth flow; None (the
        failure recorded) when the gateway would not authenticate it."""
        flow = self.auth.flow(values)
        try:
            request = next(flow)
            while True:
                with self.send(request, {}) as response:
                    answer = (response.status_code or 0, self.answer(response))
                    if answer[0] in request.success:
                        response.success()
                    else:
                        response.failure(self.failure_reason(response))
                request = flow.send(answer)
        except StopIteration as done:
            return done.value
        except AuthError as exc:
            self.count("auth_failed")
            self.report("auth", exception=exc)
            return None

    def create_session(self, values: dict[str, Any], headers: Headers) -> bool:
        """Send the profile's create-session request; on success the session's id (read from
        the answer, or the name the suite chose) goes into `values["session_id"]`, it is
        counted as `sessions_created`, and `self.cleanup` deletes it when the user stops."""
        spec = self.profile.requests["create_session"]
        with self.call("create_session", values, headers) as response:
            if response.status_code not in spec.success:
                response.failure(self.failure_reason(response))
                return False
            session_id = values["session_name"]
            if "session_id" in spec.readers:
                session_id = spec.read("session_id", self.answer(response))
            if not session_id:
                response.failure(f"no session id at {spec.model.session_id} in the answer")
                return False
            response.success()
        self.count("sessions_created")
        values["session_id"] = str(session_id)
        self.cleanup.add(values, headers)
        return True

    def delete_own_sessions(self) -> None:
        """Delete the sessions this user created, unless the run was told `--keep-sessions`."""
        if not getattr(self.environment.parsed_options, "keep_sessions", False):
            self.cleanup.delete_all()

    def unrouted_webhook_url(self) -> str:
        """A webhook URL for a session whose acks are not tracked: the receiver answers 404
        there (the profile's create request still needs one)."""
        receiver = getattr(self.environment, "webhook_receiver", None)
        return receiver.url.rstrip("/") + "/acks/untracked" if receiver is not None else ""

    def report(
        self, name: str, started: float | None = None, exception: Exception | None = None
    ) -> None:
        """A measure that is not one request's answer, under request type "WS": its time from
        `started` (perf_counter) to now, such as a delivery or a connect; without `started`, a
        failure of no duration (a token missing from an answer, a session never ready)."""
        elapsed_ms = 0.0 if started is None else (time.perf_counter() - started) * 1000
        self.environment.events.request.fire(
            request_type="WS",
            name=name,
            response_time=elapsed_ms,
            response_length=0,
            exception=exception,
            context={},
        )

    @staticmethod
    def answer(response: Any) -> Any:
        """The decoded JSON of an answer, or None when it has none."""
        try:
            return response.json()
        except Exception:
            return None

    def failure_reason(self, response: Any) -> str:
        """ "HTTP 503", "HTTP 503 with Retry-After" (a refusal that says when to come back), or
        the connection error when there was no HTTP answer at all."""
        if not response.status_code:
            error = response.error
            cause = getattr(error, "original", None) or error  # geventhttpclient wraps it
            if isinstance(cause, TimeoutError | socket.timeout | gevent.Timeout) or (
                "timed out" in str(cause)
            ):
                return f"no answer: timed out after {self.network_timeout:g} s"
            return f"no answer: {error!r}" if error else "no answer"
        if response.headers and response.headers.get("Retry-After"):
            return f"HTTP {response.status_code} with Retry-After"
        return f"HTTP {response.status_code}"

    def call(self, role: str, values: Mapping[str, Any], headers: Headers | None = None) -> Any:
        """Send the profile's request for `role` filled with `values`; returns Locust's
        response context manager (catch_response: the caller says success or failure)."""
        return self.send(self.profile.request(role, values), headers or {})

    def send(self, request: Request, headers: Headers) -> Any:
        if request.body is not None:
            # The session's headers with the body's type, made once per session, not per send.
            cached, with_json = self._json_headers
            if cached is not headers:
                with_json = {**headers, "Content-Type": JSON}
                self._json_headers = (headers, with_json)
            headers = with_json
        return self.client.request(
            request.method,
            request.path,
            data=request.body,
            headers=headers,
            name=request.name,
            catch_response=True,
        )
