"""Session creator: one create-session request per iteration (the plan's sessions and stress
tests).

Options: `api_key` (default "test-key-{random}", the plan's, for a profile whose keys are made
per session; the stress scenario uses its fixed "stress-test-key"). Each session gets a name the
suite makes (the profile's prefix and a random part), and its own token where the profile has
a token step. Counts `sessions_attempted` and `sessions_created`; a refusal (503 at the session
cap, with its Retry-After) is a failed request, as the plan counts it. The sessions it created
are deleted when it stops (`users.cleanup`), unless the run was told `--keep-sessions`.
"""

from __future__ import annotations

from users.base import ScenarioUser
from users.cleanup import SessionCleanup


class SessionCreator(ScenarioUser):
    abstract = False
    needs = ("create_session",)

    def on_start(self) -> None:
        self.cleanup = SessionCleanup(self.profile, self.host, self.count)

    def iteration(self) -> None:
        values = self.session_values()
        self.count("sessions_attempted")
        headers = self.authenticate(values)
        if headers is None:
            return
        values["webhook_url"] = self.unrouted_webhook_url()
        spec = self.profile.requests["create_session"]
        with self.call("create_session", values, headers) as response:
            if response.status_code not in spec.success:
                response.failure(self.failure_reason(response))
                return
            session_id = values["session_name"]
            if "session_id" in spec.readers:
                session_id = spec.read("session_id", self.answer(response))
            if not session_id:
                response.failure(f"no session id at {spec.model.session_id} in the answer")
                return
            response.success()
        self.count("sessions_created")
        values["session_id"] = str(session_id)
        self.cleanup.add(values, headers)

    def on_stop(self) -> None:
        if not getattr(self.environment.parsed_options, "keep_sessions", False):
            self.cleanup.delete_all()
