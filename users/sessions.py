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


class SessionCreator(ScenarioUser):
    abstract = False
    needs = ("create_session",)

    def iteration(self) -> None:
        values = self.session_values()
        self.count("sessions_attempted")
        headers = self.authenticate(values)
        if headers is None:
            return
        values["webhook_url"] = self.unrouted_webhook_url()
        self.create_session(values, headers)

    def on_stop(self) -> None:
        self.delete_own_sessions()
