"""Phone numbers: only the user's own, unless the run may make them up (`users.numbers`,
`suite.recipients`)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from suite.recipients import settle_numbers
from users.messages import MessageSender
from users.numbers import NoNumbers, NumbersError, PhoneNumbers, parse_numbers
from users.sessions import SessionCreator
from users.webhooks import WebhookSender


def options(**values: object) -> SimpleNamespace:
    base = {"recipients": "", "recipients_file": "", "synthetic_numbers": False}
    return SimpleNamespace(**{**base, **values})


def test_numbers_are_read_once_each_in_their_order() -> None:
    text = "+5511999990001, 5511999990002\n5511999990001  # mine again\n# a comment\n447700900123"
    assert parse_numbers(text, "--recipients") == ("5511999990001", "5511999990002", "447700900123")


@pytest.mark.parametrize("bad", ["55119", "5511-99999-0001", "0511999990001", "abc", "1" * 16])
def test_anything_but_a_phone_number_is_refused_by_name(bad: str) -> None:
    with pytest.raises(NumbersError, match=f"--recipients: '{bad}' is not a phone number"):
        parse_numbers(f"5511999990001,{bad}", "--recipients")


def test_only_the_given_numbers_are_used_and_all_of_them() -> None:
    numbers = PhoneNumbers(("5511999990001", "5511999990002"), synthetic=True)
    picked = {numbers.pick() for _ in range(200)}
    assert picked == {"5511999990001", "5511999990002"}  # given numbers win over made-up ones


def test_made_up_numbers_only_where_allowed() -> None:
    made_up = PhoneNumbers((), synthetic=True).pick()
    assert made_up.startswith("55119") and len(made_up) == 14
    nothing = PhoneNumbers((), synthetic=False)
    assert not nothing.usable
    with pytest.raises(NoNumbers):
        nothing.pick()
    assert not PhoneNumbers.from_options(SimpleNamespace()).usable  # no options: nothing


def test_a_scenario_that_sends_to_numbers_is_refused_against_a_real_gateway() -> None:
    opts = options()
    with pytest.raises(NumbersError, match="MessageSender, WebhookSender would send to phone"):
        settle_numbers(opts, [MessageSender, WebhookSender], embedded=False, explicit=False)
    assert opts.synthetic_numbers is False  # and the users, were they started, send nothing
    assert not PhoneNumbers.from_options(opts).usable


def test_creating_sessions_needs_no_numbers() -> None:
    opts = options()
    settled = settle_numbers(opts, [SessionCreator], embedded=False, explicit=False)
    assert settled == {
        "needed": False,
        "recipients": 0,
        "synthetic": False,
        "synthetic_asked": False,
    }


def test_the_embedded_gateway_and_the_explicit_flag_allow_made_up_numbers() -> None:
    embedded = options()
    settled = settle_numbers(embedded, [MessageSender], embedded=True, explicit=False)
    assert embedded.synthetic_numbers and settled["synthetic"] and not settled["synthetic_asked"]
    asked = options()
    settled = settle_numbers(asked, [MessageSender], embedded=False, explicit=True)
    assert asked.synthetic_numbers and settled["synthetic"] and settled["synthetic_asked"]


def test_recipients_from_the_option_and_the_file_reach_the_users(tmp_path: Path) -> None:
    path = tmp_path / "numbers.txt"
    path.write_text("# my test phones\n5511999990002\n5511999990003\n", encoding="utf-8")
    opts = options(recipients="5511999990001,5511999990002", recipients_file=str(path))
    settled = settle_numbers(opts, [MessageSender], embedded=False, explicit=False)
    assert settled == {
        "needed": True,
        "recipients": 3,
        "synthetic": False,
        "synthetic_asked": False,
    }
    # Written back whole, as Locust hands the master's options to its workers.
    assert opts.recipients == "5511999990001,5511999990002,5511999990003"
    assert set(PhoneNumbers.from_options(opts).recipients) == {
        "5511999990001",
        "5511999990002",
        "5511999990003",
    }


def test_an_unreadable_recipients_file_is_one_line(tmp_path: Path) -> None:
    opts = options(recipients_file=str(tmp_path / "missing.txt"))
    with pytest.raises(NumbersError, match=r"--recipients-file .*missing.txt: cannot read it"):
        settle_numbers(opts, [MessageSender], embedded=False, explicit=False)


@pytest.mark.parametrize("user_class", [MessageSender, WebhookSender])
def test_a_user_without_a_number_it_may_use_sends_nothing(
    user_class: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last line, where the suite's check did not run (a web UI form pointed at another
    gateway): the user stops in on_start, before its first request, and stops cleanly."""
    from locust.env import Environment
    from locust.exception import StopUser

    monkeypatch.setattr(user_class, "host", "http://127.0.0.1:9")  # as a runner sets it
    counted: list[str] = []
    environment = Environment(
        user_classes=[user_class], host="http://127.0.0.1:9", parsed_options=options()
    )
    environment.events.suite_counter = SimpleNamespace(
        fire=lambda name, value: counted.append(name)
    )
    user = user_class(environment)
    sent: list[str] = []
    user.client.request = lambda *a, **kw: sent.append(a[0])  # type: ignore[method-assign]
    with pytest.raises(StopUser):
        user.on_start()
    if hasattr(user, "on_stop"):
        user.on_stop()  # as Locust calls it after a StopUser: nothing to clean, no error
    assert sent == [] and counted == ["numbers_refused"]
