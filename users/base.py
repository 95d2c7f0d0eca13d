"""The base of the suite's users: one iteration of a scenario, paced by the load model."""

from __future__ import annotations

import secrets
import socket
from typing import Any, ClassVar

import gevent
from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser

from shapes.pacing import pacing_of
from users.numbers import PhoneNumbers
from users.profile import TargetProfile, load_profile

COUNTER_EVENT = "suite_counter"
JSON = "application/json"


class ScenarioUser(FastHttpUser):
    """A FastHttpUser whose single task is one paced iteration of `iteration()`.

    - `options`: the scenario's options for this class (`users: {Class: {options: ...}}`).
    - `profile`: the target profile (paths, payloads), from the environment.
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
        self.profile: TargetProfile = getattr(self.environment, "target_profile", None) or (
            load_profile()
        )

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

    def call(self, role: str, auth_key: str | None, **values: Any) -> Any:
        """Send the profile's request for `role`; returns Locust's response context manager."""
        method, path, body, name = self.profile.request(role, **values)
        headers = {"Content-Type": JSON} if body is not None else {}
        if auth_key:
            headers[self.profile.api_key_header] = auth_key
        return self.client.request(
            method, path, data=body, headers=headers, name=name, catch_response=True
        )
