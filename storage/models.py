"""The tables. Alembic migrations in storage/migrations make and change them; a test checks
that these models and the migrations never disagree.

Instants are timezone-aware and stored in UTC (``UTCDateTime``); a slot also keeps its local
calendar date, because "the 3rd of October" is what citizens, staff and figures ask about.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Annotated, Any, ClassVar

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storage.db import JSONType, UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

intpk = Annotated[int, mapped_column(Integer, primary_key=True, autoincrement=True)]
instant = Annotated[dt.datetime, mapped_column(UTCDateTime)]
short = Annotated[str, mapped_column(String(64))]
name_text = Annotated[str, mapped_column(String(200))]
json_data = Annotated[Any, mapped_column(JSONType)]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: UTCDateTime, dict[str, Any]: JSONType}


def _enum(cls: type[enum.Enum]) -> Enum:
    return Enum(cls, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e],
                validate_strings=True)


class Created:
    created_at: Mapped[instant]


class Channel(enum.StrEnum):
    TELEGRAM = "telegram"
    WECHAT = "wechat"
    TERMINAL = "terminal"
    STAFF = "staff"
    WECOM = "wecom"      # staff in the WeCom app (企业微信): never a citizen


class AppointmentStatus(enum.StrEnum):
    BOOKED = "booked"
    CHECKED_IN = "checked_in"
    COMPLETED = "completed"
    NO_SHOW = "no_show"
    CANCELLED = "cancelled"


class CancelKind(enum.StrEnum):
    CITIZEN = "citizen"       # before the cutoff
    LATE = "late"             # after the cutoff, allowed with a strike
    CENTRE = "centre"         # closure (停办/停诊): no strike
    STAFF = "staff"           # a window clerk cancelled it for the citizen


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"               # gave up after max_attempts
    UNDELIVERABLE = "undeliverable"  # no way to reach the citizen (blocked, outside window...)
    DROPPED = "dropped"             # no longer relevant (cancelled, already started)


class Relation(enum.StrEnum):
    """Who a person is to the account holder (本人, 配偶, 子女, 父母, 其他亲属, 其他)."""

    SELF = "self"
    SPOUSE = "spouse"
    CHILD = "child"
    PARENT = "parent"
    RELATIVE = "relative"
    OTHER = "other"


class LinkMethod(enum.StrEnum):
    """How an account came to act for a person, or to be linked to another account."""

    MIGRATED = "migrated"   # a binding made before accounts held people (revision 0003)
    ADDED = "added"         # the account holder added the person, with consent
    CODE = "code"           # a one-time code shown in one account, typed in the other
    SMS = "sms"             # a code sent by SMS to the person's mobile on file, typed back


class WaitKind(enum.StrEnum):
    SEAT = "seat"         # a full day or slot: tell me when a seat frees up
    RELEASE = "release"   # not released yet: tell me when it opens


class WaitStatus(enum.StrEnum):
    WAITING = "waiting"
    OFFERED = "offered"
    DONE = "done"
    LEFT = "left"
    EXPIRED = "expired"


class RequestStatus(enum.StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    ANSWERED = "answered"
    APPROVED = "approved"
    DECLINED = "declined"
    CLOSED = "closed"


class Department(Base, Created):
    """A centre (便民服务中心) or a hospital department (门诊科室)."""

    __tablename__ = "department"
    id: Mapped[intpk]
    code: Mapped[short] = mapped_column(unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    name_zh: Mapped[name_text]
    name_en: Mapped[name_text]
    definition: Mapped[json_data]
    updated_at: Mapped[instant]


class Service(Base, Created):
    """One bookable service (办事事项 / 门诊号别), as the catalog file describes it."""

    __tablename__ = "service"
    id: Mapped[intpk]
    code: Mapped[short] = mapped_column(unique=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("department.id"), index=True)
    name_zh: Mapped[name_text]
    name_en: Mapped[name_text]
    definition: Mapped[json_data]
    definition_hash: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    slots_through: Mapped[dt.date | None] = mapped_column(Date)
    updated_at: Mapped[instant]


# --- resources (doctors, windows) and rosters (排班) ------------------------------------------


class Resource(Base, Created):
    """Who serves a service: a doctor (name, title, specialty, introduction) or a window/clerk."""

    __tablename__ = "resource"
    id: Mapped[intpk]
    code: Mapped[short] = mapped_column(unique=True)
    kind: Mapped[str] = mapped_column(String(20))             # "doctor" or "window"
    name_zh: Mapped[name_text]
    name_en: Mapped[name_text]
    title: Mapped[str | None] = mapped_column(String(20))     # chief, associate_chief, attending, resident
    specialty_zh: Mapped[str | None] = mapped_column(String(100))
    specialty_en: Mapped[str | None] = mapped_column(String(100))
    definition: Mapped[json_data]                             # introduction, photo
    definition_hash: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[instant]


class ServiceResource(Base):
    """A service is served by resources; a resource may serve several services."""

    __tablename__ = "service_resource"
    service_id: Mapped[int] = mapped_column(ForeignKey("service.id"), primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resource.id"), primary_key=True, index=True)


class RosterPattern(Base):
    """One half-day a resource works for a service every week, with its seats per slot."""

    __tablename__ = "roster_pattern"
    __table_args__ = (UniqueConstraint("resource_id", "service_id", "weekday", "half"),
                      CheckConstraint("online_seats >= 0 AND online_seats <= seats", name="seats"))
    id: Mapped[intpk]
    resource_id: Mapped[int] = mapped_column(ForeignKey("resource.id"))
    service_id: Mapped[int] = mapped_column(ForeignKey("service.id"), index=True)
    weekday: Mapped[int]                                      # 0 = Monday
    half: Mapped[str] = mapped_column(String(2))              # "am" or "pm"
    seats: Mapped[int]
    online_seats: Mapped[int]
    source: Mapped[str] = mapped_column(String(10))           # "catalog" or "staff"
    updated_at: Mapped[instant]


class RosterException(Base, Created):
    """A dated change to a roster: a half-day (or the day) off, or worked with other seats."""

    __tablename__ = "roster_exception"
    __table_args__ = (UniqueConstraint("resource_id", "service_id", "day", "half"),)
    id: Mapped[intpk]
    resource_id: Mapped[int] = mapped_column(ForeignKey("resource.id"))
    service_id: Mapped[int] = mapped_column(ForeignKey("service.id"), index=True)
    day: Mapped[dt.date] = mapped_column(Date)
    half: Mapped[str] = mapped_column(String(3))              # "am", "pm" or "day"
    seats: Mapped[int]                                        # 0: not working
    online_seats: Mapped[int]
    note: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(80))


class Slot(Base):
    """A time slot of a service on one day; ``booked + held`` never exceeds ``online_capacity``."""

    __tablename__ = "slot"
    __table_args__ = (
        # A service without resources has one slot per start; with resources (doctors,
        # windows) one per resource and start (storage/rosters.py).
        UniqueConstraint("service_id", "starts_at", "resource_id"),
        Index("uq_slot_plain_start", "service_id", "starts_at", unique=True,
              sqlite_where=text("resource_id IS NULL"), postgresql_where=text("resource_id IS NULL")),
        Index("ix_slot_service_day", "service_id", "local_date"),
        CheckConstraint("booked >= 0 AND held >= 0 AND booked + held <= online_capacity",
                        name="online_seats"),
        CheckConstraint("offline_booked >= 0 AND offline_booked <= capacity - online_capacity",
                        name="offline_seats"),
    )
    id: Mapped[intpk]
    service_id: Mapped[int] = mapped_column(ForeignKey("service.id"))
    resource_id: Mapped[int | None] = mapped_column(ForeignKey("resource.id"), index=True)
    local_date: Mapped[dt.date] = mapped_column(Date)
    starts_at: Mapped[instant]
    ends_at: Mapped[instant]
    capacity: Mapped[int]
    online_capacity: Mapped[int]
    booked: Mapped[int] = mapped_column(default=0)
    held: Mapped[int] = mapped_column(default=0)
    offline_booked: Mapped[int] = mapped_column(default=0)


class Person(Base, Created):
    """A real-name citizen. The ID number is kept only as a keyed hash and a masked form."""

    __tablename__ = "person"
    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(40))
    mobile: Mapped[str] = mapped_column(String(11), index=True)
    id_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    id_masked: Mapped[str | None] = mapped_column(String(18))
    # Keyed hash of the last 6 characters: proves a staff-made booking belongs to whoever
    # knows them and its code, without keeping them (docs/accounts.md).
    id_tail_hash: Mapped[str | None] = mapped_column(String(64))
    erased_at: Mapped[dt.datetime | None]  # consent withdrawn: name, mobile and ID cleared
    updated_at: Mapped[instant]


class ChannelIdentity(Base, Created):
    """A platform account (Telegram user, WeChat OpenID, terminal user): the account.

    ``person_id`` is the binding of the handlers before accounts held people; the people an
    account acts for are in ``account_person`` (docs/accounts.md), and ``person_id`` goes when
    the handlers read them there.
    """

    __tablename__ = "channel_identity"
    __table_args__ = (UniqueConstraint("channel", "platform_user_id"),)
    id: Mapped[intpk]
    channel: Mapped[Channel] = mapped_column(_enum(Channel))
    platform_user_id: Mapped[str] = mapped_column(String(128))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), index=True)
    locale: Mapped[str] = mapped_column(String(8))
    last_inbound_at: Mapped[dt.datetime | None]
    unreachable_at: Mapped[dt.datetime | None]  # blocked the bot / unsubscribed
    unreachable_reason: Mapped[str | None] = mapped_column(String(200))


class AccountPerson(Base, Created):
    """A person an account may act for (本人 or family), with the consent given for them."""

    __tablename__ = "account_person"
    __table_args__ = (UniqueConstraint("identity_id", "person_id"),)
    id: Mapped[intpk]
    identity_id: Mapped[int] = mapped_column(ForeignKey("channel_identity.id"))
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    relation: Mapped[Relation] = mapped_column(_enum(Relation))
    method: Mapped[LinkMethod] = mapped_column(_enum(LinkMethod))
    # The mobile this account gave for the person, shown back to it: the person's record keeps
    # the one given first, which another account typing the same ID number must not see.
    mobile: Mapped[str | None] = mapped_column(String(11))
    consent_version: Mapped[str | None] = mapped_column(String(20))  # the notice shown
    consented_at: Mapped[dt.datetime | None]


class AccountLink(Base, Created):
    """Two accounts proven to belong to one citizen; each sees the bookings the other made.

    The pair is stored once, the lower id first.
    """

    __tablename__ = "account_link"
    __table_args__ = (UniqueConstraint("first_id", "second_id"),
                      CheckConstraint("first_id < second_id", name="ordered"))
    id: Mapped[intpk]
    first_id: Mapped[int] = mapped_column(ForeignKey("channel_identity.id"))
    second_id: Mapped[int] = mapped_column(ForeignKey("channel_identity.id"), index=True)
    method: Mapped[LinkMethod] = mapped_column(_enum(LinkMethod))


class LinkCode(Base, Created):
    """A one-time code an account asked for, to be typed in another account; kept hashed."""

    __tablename__ = "link_code"
    id: Mapped[intpk]
    identity_id: Mapped[int] = mapped_column(ForeignKey("channel_identity.id"), unique=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[instant]


class VerificationTries(Base):
    """Wrong answers an account gave to a proof (a link code, a booking code), for the lock."""

    __tablename__ = "verification_tries"
    identity_id: Mapped[int] = mapped_column(ForeignKey("channel_identity.id"), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(20), primary_key=True)
    failures: Mapped[int]
    first_failure_at: Mapped[dt.datetime | None]
    locked_until: Mapped[dt.datetime | None]


class Appointment(Base, Created):
    __tablename__ = "appointment"
    __table_args__ = (
        Index("ix_appointment_status_start", "status", "starts_at"),
        Index("ix_appointment_person_status", "person_id", "status"),
        Index("ix_appointment_day_service", "local_date", "service_id"),
        Index("ix_appointment_created", "created_at"),
    )
    id: Mapped[intpk]
    code: Mapped[str] = mapped_column(String(6), unique=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    service_id: Mapped[int] = mapped_column(ForeignKey("service.id"))
    slot_id: Mapped[int] = mapped_column(ForeignKey("slot.id"), index=True)
    # The doctor or window who serves it: the slot's, or the substitute of a 替诊.
    resource_id: Mapped[int | None] = mapped_column(ForeignKey("resource.id"), index=True)
    # The account that made it; a staff-made booking (channel "staff") is shown to an account
    # only once it proved the booking was theirs (``attached_at``).
    identity_id: Mapped[int | None] = mapped_column(ForeignKey("channel_identity.id"), index=True)
    attached_at: Mapped[dt.datetime | None]
    local_date: Mapped[dt.date] = mapped_column(Date)
    starts_at: Mapped[instant]
    ends_at: Mapped[instant]
    status: Mapped[AppointmentStatus] = mapped_column(_enum(AppointmentStatus))
    channel: Mapped[Channel] = mapped_column(_enum(Channel))
    offline: Mapped[bool] = mapped_column(Boolean, default=False)
    made_by: Mapped[str] = mapped_column(String(80))
    age_at_booking: Mapped[int | None]
    # The one-time notice (一次性告知) the citizen was shown before booking: the digest of
    # its content (ServiceDef.notice_version); None for staff bookings and older rows.
    notice_version: Mapped[str | None] = mapped_column(String(12))
    reschedules: Mapped[int] = mapped_column(default=0)
    checked_in_at: Mapped[dt.datetime | None]
    completed_at: Mapped[dt.datetime | None]
    no_show_at: Mapped[dt.datetime | None]
    cancelled_at: Mapped[dt.datetime | None]
    cancel_kind: Mapped[CancelKind | None] = mapped_column(_enum(CancelKind))
    cancel_reason: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[instant]


class NotificationConsent(Base, Created):
    """A citizen's permission to send one later message, on a channel that asks for it first
    (WeChat's one-time subscription message: each consent allows one message, in its scene)."""

    __tablename__ = "notification_consent"
    __table_args__ = (
        UniqueConstraint("channel", "platform_user_id", "template_id", "scene"),
        Index("ix_notification_consent_user", "channel", "platform_user_id", "used_at"),
    )
    id: Mapped[intpk]
    channel: Mapped[str] = mapped_column(String(20))
    platform_user_id: Mapped[str] = mapped_column(String(128))
    template_id: Mapped[str] = mapped_column(String(128))
    scene: Mapped[int]
    appointment_id: Mapped[int | None] = mapped_column(ForeignKey("appointment.id"), index=True)
    used_at: Mapped[dt.datetime | None]


class Hold(Base, Created):
    """A seat kept for one citizen while they give their details (or offered from the waitlist)."""

    __tablename__ = "hold"
    __table_args__ = (UniqueConstraint("slot_id", "owner"),)
    id: Mapped[intpk]
    slot_id: Mapped[int] = mapped_column(ForeignKey("slot.id"))
    owner: Mapped[str] = mapped_column(String(160), index=True)
    expires_at: Mapped[instant] = mapped_column(index=True)
    waitlist_id: Mapped[int | None] = mapped_column(ForeignKey("waitlist_entry.id"))


class WaitlistEntry(Base, Created):
    __tablename__ = "waitlist_entry"
    __table_args__ = (Index("ix_waitlist_queue", "service_id", "local_date", "status", "id"),)
    id: Mapped[intpk]
    kind: Mapped[WaitKind] = mapped_column(_enum(WaitKind))
    service_id: Mapped[int] = mapped_column(ForeignKey("service.id"))
    local_date: Mapped[dt.date] = mapped_column(Date)
    slot_id: Mapped[int | None] = mapped_column(ForeignKey("slot.id"))
    identity_id: Mapped[int] = mapped_column(ForeignKey("channel_identity.id"), index=True)
    status: Mapped[WaitStatus] = mapped_column(_enum(WaitStatus))
    offered_at: Mapped[dt.datetime | None]
    updated_at: Mapped[instant]


class Strike(Base):
    __tablename__ = "strike"
    __table_args__ = (Index("ix_strike_person_at", "person_id", "at"),)
    id: Mapped[intpk]
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    appointment_id: Mapped[int | None] = mapped_column(ForeignKey("appointment.id"))
    reason: Mapped[str] = mapped_column(String(20))
    at: Mapped[instant]
    voided_at: Mapped[dt.datetime | None]


class Block(Base, Created):
    """A blacklist period (失信/爽约限制); it ends by itself at ``ends_at`` or when lifted."""

    __tablename__ = "block"
    __table_args__ = (Index("ix_block_person_end", "person_id", "ends_at"),)
    id: Mapped[intpk]
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    starts_at: Mapped[instant]
    ends_at: Mapped[instant]
    strikes: Mapped[int]
    lifted_at: Mapped[dt.datetime | None]
    lifted_by: Mapped[str | None] = mapped_column(String(80))
    lift_reason: Mapped[str | None] = mapped_column(String(200))


class Closure(Base, Created):
    """The centre closes a service, a department or everything for a period (停办/停诊)."""

    __tablename__ = "closure"
    id: Mapped[intpk]
    service_id: Mapped[int | None] = mapped_column(ForeignKey("service.id"))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"))
    # A doctor's or window's absence (停诊): only that resource's slots (storage/resource_closures.py).
    resource_id: Mapped[int | None] = mapped_column(ForeignKey("resource.id"), index=True)
    starts_at: Mapped[instant]
    ends_at: Mapped[instant]
    reason: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(80))
    affected: Mapped[int] = mapped_column(default=0)
    late_notices: Mapped[int] = mapped_column(default=0)


class ClosureOffer(Base, Created):
    """What a patient of a doctor's 停诊 is offered: 替诊 (another doctor at the same time) or
    换诊 (other times to pick), answered by a deadline (storage/resource_closures.py)."""

    __tablename__ = "closure_offer"
    __table_args__ = (Index("ix_closure_offer_status_deadline", "status", "deadline"),)
    id: Mapped[intpk]
    closure_id: Mapped[int] = mapped_column(ForeignKey("closure.id"), index=True)
    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointment.id"), index=True)
    kind: Mapped[str] = mapped_column(String(12))              # "substitute" (替诊), "move" (换诊)
    from_resource_id: Mapped[int] = mapped_column(ForeignKey("resource.id"))
    substitute_id: Mapped[int | None] = mapped_column(ForeignKey("resource.id"))
    slot_ids: Mapped[json_data]                                # the times a 换诊 offers
    # pending; accepted, declined, moved, cancelled (by the patient); defaulted (no answer);
    # withdrawn (the booking was cancelled or rescheduled first)
    status: Mapped[str] = mapped_column(String(12))
    deadline: Mapped[instant]
    decided_at: Mapped[dt.datetime | None]


class Outbox(Base, Created):
    """A notification to send, written in the same transaction as the change that causes it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "due_at"),
                      Index("ix_outbox_target_status", "target", "status"))
    id: Mapped[intpk]
    kind: Mapped[str] = mapped_column(String(40))
    dedup_key: Mapped[str] = mapped_column(String(160), unique=True)
    identity_id: Mapped[int | None] = mapped_column(ForeignKey("channel_identity.id"), index=True)
    target: Mapped[str | None] = mapped_column(String(160))  # staff group, robot, ...
    appointment_id: Mapped[int | None] = mapped_column(ForeignKey("appointment.id"), index=True)
    payload: Mapped[json_data]
    due_at: Mapped[instant]
    expires_at: Mapped[dt.datetime | None]
    status: Mapped[OutboxStatus] = mapped_column(_enum(OutboxStatus))
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    # Changes at every claim: a process sends a row only while the row still carries its token
    # and an unexpired lease (storage.outbox.renew_claims).
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_until: Mapped[dt.datetime | None]
    sent_at: Mapped[dt.datetime | None]


class Handoff(Base):
    """A citizen asked for a person (人工服务); the first staff member to claim it owns it."""

    __tablename__ = "handoff"
    __table_args__ = (Index("ix_handoff_status_opened", "status", "opened_at"),)
    id: Mapped[intpk]
    identity_id: Mapped[int] = mapped_column(ForeignKey("channel_identity.id"), index=True)
    status: Mapped[RequestStatus] = mapped_column(_enum(RequestStatus))
    context: Mapped[json_data]
    opened_at: Mapped[instant]
    claimed_at: Mapped[dt.datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    first_reply_at: Mapped[dt.datetime | None]
    closed_at: Mapped[dt.datetime | None]
    summary: Mapped[str | None] = mapped_column(Text)
    escalations: Mapped[int] = mapped_column(default=0)
    alert_ref: Mapped[str | None] = mapped_column(String(80))


class Complaint(Base):
    __tablename__ = "complaint"
    __table_args__ = (Index("ix_complaint_status_opened", "status", "opened_at"),)
    id: Mapped[intpk]
    identity_id: Mapped[int] = mapped_column(ForeignKey("channel_identity.id"), index=True)
    appointment_id: Mapped[int | None] = mapped_column(ForeignKey("appointment.id"))
    rating_id: Mapped[int | None] = mapped_column(ForeignKey("rating.id"))
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[RequestStatus] = mapped_column(_enum(RequestStatus))
    opened_at: Mapped[instant]
    first_answer_due: Mapped[instant]
    resolution_due: Mapped[instant]
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    claimed_at: Mapped[dt.datetime | None]
    answered_at: Mapped[dt.datetime | None]
    resolved_at: Mapped[dt.datetime | None]
    outcome: Mapped[str | None] = mapped_column(Text)
    escalations: Mapped[int] = mapped_column(default=0)
    # --- complaints and suggestions from the citizen (revision 0008; storage/complaints.py) ---
    kind: Mapped[str] = mapped_column(String(10), default="complaint")    # or "suggestion"
    category: Mapped[str] = mapped_column(String(20), default="other")    # ComplaintCategory
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), index=True)
    service_id: Mapped[int | None] = mapped_column(ForeignKey("service.id"))
    # No foreign key: case_file.complaint_id already points here (a cycle would stop the
    # tables from being ordered for creation and truncation).
    case_id: Mapped[int | None]
    photo: Mapped[str | None] = mapped_column(String(255))      # "<channel>:<media id>"
    staff_named: Mapped[str | None] = mapped_column(String(80))   # never shown this complaint
    priority: Mapped[int] = mapped_column(default=0)
    repeats: Mapped[int] = mapped_column(default=0)             # 催办 merged into it
    complex: Mapped[bool] = mapped_column(Boolean, default=False)
    classification: Mapped[str | None] = mapped_column(String(20))   # valid, invalid, partly
    classification_reason: Mapped[str | None] = mapped_column(Text)
    classified_by: Mapped[str | None] = mapped_column(String(80))
    classified_at: Mapped[dt.datetime | None]
    reopened: Mapped[int] = mapped_column(default=0)
    followup_asked_at: Mapped[dt.datetime | None]
    followup_at: Mapped[dt.datetime | None]
    followup_satisfied: Mapped[bool | None] = mapped_column(Boolean)
    sampled_on: Mapped[dt.date | None] = mapped_column(Date)    # picked for a supervisor's 回访


class ComplaintEvent(Base):
    """One step in a complaint's history: opened, a 催办 merged in, classified, answered,
    reopened, the citizen's 回访 answer."""

    __tablename__ = "complaint_event"
    id: Mapped[intpk]
    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaint.id"), index=True)
    at: Mapped[instant]
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(20))
    text: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[json_data]


class HomeVisitRequest(Base, Created):
    """A request for 上门服务, decided by staff within one working day."""

    __tablename__ = "home_visit_request"
    id: Mapped[intpk]
    identity_id: Mapped[int] = mapped_column(ForeignKey("channel_identity.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    service_id: Mapped[int] = mapped_column(ForeignKey("service.id"))
    address: Mapped[str] = mapped_column(String(200))
    preferred_times: Mapped[str] = mapped_column(String(200))
    eligibility: Mapped[str] = mapped_column(String(20))  # "age" or "disability"
    age: Mapped[int | None]
    status: Mapped[RequestStatus] = mapped_column(_enum(RequestStatus))
    due_at: Mapped[instant]
    decided_by: Mapped[str | None] = mapped_column(String(80))
    decided_at: Mapped[dt.datetime | None]
    visit_at: Mapped[dt.datetime | None]
    decline_reason: Mapped[str | None] = mapped_column(String(200))
    escalations: Mapped[int] = mapped_column(default=0)


class Rating(Base, Created):
    """One rating per appointment (一次一评) on the five-level 好差评 scale, 5 = 非常满意."""

    __tablename__ = "rating"
    __table_args__ = (CheckConstraint("level BETWEEN 1 AND 5", name="level"),)
    id: Mapped[intpk]
    appointment_id: Mapped[int | None] = mapped_column(ForeignKey("appointment.id"), unique=True)
    handoff_id: Mapped[int | None] = mapped_column(ForeignKey("handoff.id"), unique=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("channel_identity.id"))
    level: Mapped[int]
    comment: Mapped[str | None] = mapped_column(Text)


class Conversation(Base):
    """Where one user is in one flow; shared by every process, it survives restarts."""

    __tablename__ = "conversation"
    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    flow: Mapped[str | None] = mapped_column(String(40))
    step: Mapped[str | None] = mapped_column(String(40))
    data: Mapped[json_data]
    updated_at: Mapped[instant]


class ProcessedMessage(Base):
    """A platform message id already handled, with the answer given, for exact retries."""

    __tablename__ = "processed_message"
    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    processed_at: Mapped[instant] = mapped_column(index=True)
    response: Mapped[json_data]


class SignedRequest(Base):
    """A webhook query signature seen within the replay window, with a digest of the body it
    came with: the same signature with another body is a replay and refused (shared by every
    process; rows older than the window are deleted)."""

    __tablename__ = "signed_request"
    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    signed: Mapped[str] = mapped_column(String(64), primary_key=True)       # sha-256 of the query
    body_digest: Mapped[str] = mapped_column(String(64))
    seen_at: Mapped[instant] = mapped_column(index=True)


class AuditLog(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_entity", "entity", "entity_id"),)
    id: Mapped[intpk]
    at: Mapped[instant]
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(40))
    entity: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[int | None]
    detail: Mapped[json_data]


class CalendarOverride(Base, Created):
    """The centre's own word on a date: closed, or open although the calendar says otherwise."""

    __tablename__ = "calendar_override"
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    working: Mapped[bool] = mapped_column(Boolean)
    note: Mapped[str] = mapped_column(String(200))


class SharedValue(Base):
    """A small value every process shares: the WeChat access token, leases of single jobs."""

    __tablename__ = "shared_value"
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(80))
    expires_at: Mapped[dt.datetime | None]
    updated_at: Mapped[instant]


# --- cases (办件) -------------------------------------------------------------------------------


class CaseKind(enum.StrEnum):
    """How the window classified a case when it opened it (六件管理); it never changes."""

    IMMEDIATE = "immediate"     # 即办件: done at the window, closed at once
    PROMISED = "promised"       # 承诺件: due a committed number of working days after acceptance
    CORRECTION = "correction"   # 补办件: accepted with materials missing (补正)
    RETURNED = "returned"       # 退回件: refused at the window (不予受理)
    JOINT = "joint"             # 联办件: several departments, each with its own part
    REPORTED = "reported"       # 上报件: sent to a higher authority


class CaseState(enum.StrEnum):
    ACCEPTED = "accepted"
    CORRECTION = "correction"   # waiting for missing materials: the clock is stopped
    IN_PROGRESS = "in_progress"
    READY = "ready"             # 办结: the result is ready
    COLLECTED = "collected"     # passed through on the way to closed (history only)
    MAILED = "mailed"           # passed through on the way to closed (history only)
    CLOSED = "closed"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"


class ExtensionStatus(enum.StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REFUSED = "refused"


class Case(Base, Created):
    """A matter the centre handles after the visit (办件), with its number, clock and result."""

    __tablename__ = "case_file"
    __table_args__ = (
        Index("ix_case_file_state_due", "state", "due_on"),
        Index("ix_case_file_opened_on", "opened_on"),
        Index("ix_case_file_ready_on", "ready_on"),
        CheckConstraint("followup_level IS NULL OR followup_level BETWEEN 1 AND 5",
                        name="followup_level"),
    )
    id: Mapped[intpk]
    number: Mapped[str] = mapped_column(String(8), unique=True)
    appointment_id: Mapped[int | None] = mapped_column(ForeignKey("appointment.id"), unique=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("service.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    identity_id: Mapped[int | None] = mapped_column(ForeignKey("channel_identity.id"), index=True)
    kind: Mapped[CaseKind] = mapped_column(_enum(CaseKind))
    state: Mapped[CaseState] = mapped_column(_enum(CaseState))
    owner: Mapped[str] = mapped_column(String(80))
    opened_at: Mapped[instant]
    opened_on: Mapped[dt.date] = mapped_column(Date)
    committed_days: Mapped[int] = mapped_column(default=0)
    due_on: Mapped[dt.date | None] = mapped_column(Date)
    paused_on: Mapped[dt.date | None] = mapped_column(Date)
    correction_due_on: Mapped[dt.date | None] = mapped_column(Date)
    corrections: Mapped[int] = mapped_column(default=0)
    paused_days: Mapped[int] = mapped_column(default=0)
    ready_at: Mapped[dt.datetime | None]
    ready_on: Mapped[dt.date | None] = mapped_column(Date)
    clock_days: Mapped[int | None]
    delivery: Mapped[str | None] = mapped_column(String(10))
    tracking_number: Mapped[str | None] = mapped_column(String(40))
    refusal_reason: Mapped[str | None] = mapped_column(Text)
    legal_basis: Mapped[str | None] = mapped_column(Text)
    details: Mapped[json_data]
    closed_at: Mapped[dt.datetime | None]
    reminded_due_on: Mapped[dt.date | None] = mapped_column(Date)
    escalated_due_on: Mapped[dt.date | None] = mapped_column(Date)
    uncollected_reminded_at: Mapped[dt.datetime | None]
    followup_asked_at: Mapped[dt.datetime | None]
    followup_level: Mapped[int | None]
    followup_at: Mapped[dt.datetime | None]
    followup_comment: Mapped[str | None] = mapped_column(Text)
    complaint_id: Mapped[int | None] = mapped_column(ForeignKey("complaint.id"))
    updated_at: Mapped[instant]


class CaseEvent(Base):
    """One step in a case's history: who did what, when and why."""

    __tablename__ = "case_event"
    id: Mapped[intpk]
    case_id: Mapped[int] = mapped_column(ForeignKey("case_file.id"), index=True)
    at: Mapped[instant]
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(30))
    state_before: Mapped[CaseState | None] = mapped_column(_enum(CaseState))
    state_after: Mapped[CaseState] = mapped_column(_enum(CaseState))
    reason: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[json_data]


class CasePart(Base):
    """One department's part of a joint case (联办件)."""

    __tablename__ = "case_part"
    __table_args__ = (UniqueConstraint("case_id", "name"),)
    id: Mapped[intpk]
    case_id: Mapped[int] = mapped_column(ForeignKey("case_file.id"))
    name: Mapped[str] = mapped_column(String(200))
    working_days: Mapped[int]
    due_on: Mapped[dt.date] = mapped_column(Date)
    done_at: Mapped[dt.datetime | None]
    done_by: Mapped[str | None] = mapped_column(String(80))


class CaseExtension(Base):
    """A request to move a case's due date (延期): requested by staff, decided by a supervisor."""

    __tablename__ = "case_extension"
    id: Mapped[intpk]
    case_id: Mapped[int] = mapped_column(ForeignKey("case_file.id"), index=True)
    days: Mapped[int]
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[ExtensionStatus] = mapped_column(_enum(ExtensionStatus))
    requested_by: Mapped[str] = mapped_column(String(80))
    requested_at: Mapped[instant]
    decided_by: Mapped[str | None] = mapped_column(String(80))
    decided_at: Mapped[dt.datetime | None]
    decision_note: Mapped[str | None] = mapped_column(Text)
    due_before: Mapped[dt.date] = mapped_column(Date)
    due_after: Mapped[dt.date | None] = mapped_column(Date)


# --- text messages (短信) -----------------------------------------------------------------------


class SmsOptOut(Base, Created):
    """A number that asked for no more texts (回复TD退订), by its keyed hash: no number kept."""

    __tablename__ = "sms_opt_out"
    mobile_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(20))     # "reply" (the provider's callback), "staff"
    # --- recorded by staff in the chat (/sms optout), shown to staff in lists ---
    masked: Mapped[str | None] = mapped_column(String(20))      # "138****5678", never the number
    reason: Mapped[str | None] = mapped_column(String(200))
    actor: Mapped[str | None] = mapped_column(String(80))


class SmsEarlyReceipt(Base, Created):
    """A delivery receipt that arrived before its text's serial number was recorded (the
    provider's callback can beat the send's own bookkeeping); applied when it is."""

    __tablename__ = "sms_early_receipt"
    serial_no: Mapped[str] = mapped_column(String(80), primary_key=True)
    delivered: Mapped[bool]
    error: Mapped[str | None] = mapped_column(String(200))


class SmsMessage(Base, Created):
    """One text handed to the provider (or about to be): for the per-number limits, the
    delivery receipt and the figures. The number is kept only as a keyed hash."""

    __tablename__ = "sms_message"
    __table_args__ = (Index("ix_sms_message_mobile_created", "mobile_hash", "created_at"),)
    id: Mapped[intpk]
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    mobile_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))     # sending, sent, failed, delivered, undelivered
    serial_no: Mapped[str | None] = mapped_column(String(80), index=True)
    fee: Mapped[int] = mapped_column(default=0)          # billed messages (a long text is several)
    error: Mapped[str | None] = mapped_column(String(200))
    reported_at: Mapped[dt.datetime | None]


class SmsCode(Base, Created):
    """A verification code sent by SMS to a person's mobile on file, for one account; hashed."""

    __tablename__ = "sms_code"
    id: Mapped[intpk]
    identity_id: Mapped[int] = mapped_column(ForeignKey("channel_identity.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    code_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[instant]
    used_at: Mapped[dt.datetime | None]


# --- staff moving one booking (/move), with the citizen's consent ------------------------------


class MoveStatus(enum.StrEnum):
    OFFERED = "offered"       # waiting for the citizen; the new seat is held for them
    ACCEPTED = "accepted"     # the booking moved
    DECLINED = "declined"     # the booking stays as it was
    LAPSED = "lapsed"         # no answer by the deadline: the booking stays, the seat is freed
    WITHDRAWN = "withdrawn"   # the booking was cancelled or changed before an answer


class MoveOffer(Base, Created):
    """Staff offer to move a booking to another slot; nothing changes until the citizen accepts.
    While it is open the new seat is held as a ``Hold`` whose owner is ``move:<offer id>``,
    expiring at the offer's deadline."""

    __tablename__ = "move_offer"
    id: Mapped[intpk]
    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointment.id"), index=True)
    slot_id: Mapped[int] = mapped_column(ForeignKey("slot.id"))
    status: Mapped[MoveStatus] = mapped_column(_enum(MoveStatus), index=True)
    offered_by: Mapped[str] = mapped_column(String(160))
    expires_at: Mapped[instant]
    decided_at: Mapped[dt.datetime | None]
