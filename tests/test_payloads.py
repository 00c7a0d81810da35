"""Payloads and step names: what a choice means is typed, written and read back exactly, and
anything else (a forged button, an odd digit, a number too big for an id) reads as nothing."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from handlers import details
from handlers.context import GLOBAL_PREFIX, global_option, option
from handlers.payloads import (
    WIRE_LIMIT,
    ApproveVisit,
    Button,
    CancelBooking,
    ClaimComplaint,
    ClaimHandoff,
    DayPick,
    DeclineVisit,
    Payload,
    Rate,
    RateHelp,
    Rebook,
    RescheduleBooking,
    TakeOffer,
    Talk,
    WaitForDay,
    pressed,
)
from handlers.registry import FLOWS
from handlers.steps import Booking, Details, StepName
from storage.models import WaitKind

WIRE = (CancelBooking, RescheduleBooking, Rate, Rebook, TakeOffer, Talk, RateHelp, ClaimHandoff,
        ClaimComplaint, ApproveVisit, DeclineVisit)


@pytest.mark.parametrize("payload", [
    DayPick(dt.date(2026, 11, 24)), WaitForDay(WaitKind.RELEASE, dt.date(2027, 1, 4)),
    Rate(12, 5), CancelBooking("ABC234"), ClaimHandoff(999_999_999)])
def test_a_payload_reads_back_as_it_was_written(payload: Payload) -> None:
    assert type(payload).read(payload.encode()) == payload


def test_the_written_form_is_prefix_and_values() -> None:
    assert WaitForDay(WaitKind.SEAT, dt.date(2026, 11, 24)).encode() == "waitday:seat:2026-11-24"
    assert Rate(7, 2).encode() == "rate:7:2"


@pytest.mark.parametrize(("kind", "text"), [
    (Rate, "rate:1:²"), (Rate, "rate:x:5"), (Rate, "rate:1:99999999999"), (Rate, "rate:1"),
    (Rate, "rate:1:5:6"), (Rebook, "rebook:１"), (TakeOffer, "offer:abc"), (Talk, "talk:٣"),
    (CancelBooking, "cancel:"), (CancelBooking, "resched:ABC234"), (DayPick, "day:2026-02-30"),
    (DayPick, "day:２０２６-11-24"), (WaitForDay, "waitday:never:2026-11-24"), (Rate, ""),
    (Rate, None)])
def test_anything_else_reads_as_nothing(kind: type[Payload], text: str | None) -> None:
    assert kind.read(text) is None


def test_every_button_of_a_notice_fits_telegrams_callback_data() -> None:
    biggest = {int: 999_999_999, str: "ABC234"}
    for kind in WIRE:
        values = [biggest[int] if field.type in ("int", int) else biggest[str]
                  for field in dataclasses.fields(kind)]
        token = global_option("x", kind(*values)).token
        assert token.startswith(GLOBAL_PREFIX) and len(token.encode()) <= WIRE_LIMIT, token


def test_a_button_too_long_for_the_wire_is_refused() -> None:
    with pytest.raises(ValueError, match="64 bytes"):
        global_option("x", CancelBooking("X" * 60))


def test_plain_buttons_and_payloads_become_choices() -> None:
    assert option("返回", Button.BACK).token == "back"
    assert option("x", Rebook(3)).token == "rebook:3"
    assert pressed("back") is Button.BACK and pressed("rebook:3") is None and pressed(None) is None


def test_step_names_know_their_flow() -> None:
    assert Booking.DATE.flow == "booking" and Booking.DATE == "date"
    assert Details.NAME.flow is None      # a sub-flow's step runs inside the flow that entered it


def test_every_named_step_has_a_handler_in_its_flow() -> None:
    for names in StepName.__subclasses__():
        for step in names:
            flows = [FLOWS.flow(step.flow)] if step.flow else \
                [f for f in FLOWS.flows if step in f.steps]
            assert flows and all(f is not None and step in f.steps for f in flows), step


def test_the_details_sub_flow_is_in_every_flow_that_asks_who_it_is_for() -> None:
    for name in ("booking", "home_visit"):
        flow = FLOWS.flow(name)
        assert flow is not None and set(Details) <= set(flow.steps)
        assert flow.text_steps >= details.TEXT_STEPS


def test_each_notification_button_is_answered_by_exactly_one_flow() -> None:
    for kind in WIRE:
        found = FLOWS.action(kind.prefix + ":1")
        assert found is not None and found[1] is kind, kind
