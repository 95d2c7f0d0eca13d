"""Session creator: one `POST /api/sessions` per iteration (the plan's sessions and stress tests).

Options: `api_key` (default "test-key-{random}", the plan's; the stress scenario uses its
fixed "stress-test-key"). Counts `sessions_attempted` and `sessions_created`; a refusal (503 at
the session cap, with its Retry-After) is a failed request, as the plan counts it.
"""

from __future__ import annotations

from users.base import ScenarioUser


class SessionCreator(ScenarioUser):
    abstract = False
    needs = ("create_session",)

    def iteration(self) -> None:
        key = self.api_key(self.option("api_key", "test-key-{random}"))
        self.count("sessions_attempted")
        with self.call("create_session", key, api_key=key) as response:
            if response.status_code in (200, 201):
                session_id = _field(response, self.profile.fields["session_id"])
                if session_id:
                    self.count("sessions_created")
                    response.success()
                else:
                    response.failure("no session id in the answer")
            else:
                response.failure(self.failure_reason(response))


def _field(response, name: str):
    try:
        body = response.json()
    except Exception:
        return None
    return body.get(name) if isinstance(body, dict) else None
