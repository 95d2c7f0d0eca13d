"""Webhook sender: `POST /api/webhook` with `message_create` events (the plan's webhook test).

Each event has a unique message id and varied text. The plan's k6 check (status 200 and
response time under 500 ms) is kept as its own pass rate: counters `webhook_check_passed` and
`webhook_check_failed`; it is not the webhook limit (p95 < 100 ms), which the criteria judge.
Options: `api_key` (default "webhook-key"), `check_ms` (500). Sender and recipient numbers
come from `users.numbers`: the plan's random ones only where the run allows made-up numbers.
"""

from __future__ import annotations

import itertools
import os
import random
import time

from users.base import ScenarioUser

TEXTS = (
    "Olá, tudo bem?", "Test message", "Pedido #{n} confirmado", "Reunião às 15h",
    "Segue o comprovante", "👍", "Can you call me back?", "Entrega prevista para amanhã",
)  # fmt: skip
_sequence = itertools.count()


class WebhookSender(ScenarioUser):
    abstract = False
    sends_to_numbers = True  # the events' sender and recipient
    needs = ("webhook",)

    def on_start(self) -> None:
        self.numbers = self.phone_numbers()
        self.values = self.session_values("webhook-key")
        self.headers = self.authenticate(self.values) or {}
        self.success = self.profile.requests["webhook"].success
        self.check_ms = float(self.option("check_ms", 500))
        self.prefix = f"msg-{os.getpid()}-{id(self):x}"

    def iteration(self) -> None:
        n = next(_sequence)
        started = time.perf_counter()
        values = self.values  # this user's own: filled anew for each event, not copied
        values["timestamp_ms"] = int(time.time() * 1000)
        values["message_id"] = f"{self.prefix}-{n}"
        values["sender"] = self.numbers.pick()
        values["recipient"] = self.numbers.pick()
        values["text"] = random.choice(TEXTS).replace("{n}", str(n))
        with self.call("webhook", values, self.headers) as response:
            elapsed_ms = (time.perf_counter() - started) * 1000
            ok = response.status_code in self.success
            if ok:
                response.success()
            else:
                response.failure(self.failure_reason(response))
        passed = ok and elapsed_ms < self.check_ms
        self.count("webhook_check_passed" if passed else "webhook_check_failed")
