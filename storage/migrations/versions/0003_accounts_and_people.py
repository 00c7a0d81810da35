"""accounts and people: the people an account acts for, linked accounts, proofs

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-09

Each account bound to a person (``channel_identity.person_id``) gets that person as 本人
(relation "self", method "migrated", no consent version recorded: none was kept then).
``channel_identity.person_id`` stays for the handlers that still read it.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

import storage.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ENUM = {"native_enum": False, "length": 20}
_RELATION = sa.Enum("self", "spouse", "child", "parent", "relative", "other", name="relation",
                    **_ENUM)
_METHOD = sa.Enum("migrated", "added", "code", name="linkmethod", **_ENUM)


def _instant(name: str, nullable: bool = False) -> sa.Column[dt.datetime]:
    return sa.Column(name, storage.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("person", schema=None) as batch_op:
        batch_op.add_column(sa.Column("id_tail_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(_instant("erased_at", nullable=True))
    with op.batch_alter_table("appointment", schema=None) as batch_op:
        batch_op.add_column(_instant("attached_at", nullable=True))

    account_person = op.create_table(
        "account_person",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("relation", _RELATION, nullable=False),
        sa.Column("method", _METHOD, nullable=False),
        sa.Column("mobile", sa.String(length=11), nullable=True),
        sa.Column("consent_version", sa.String(length=20), nullable=True),
        _instant("consented_at", nullable=True),
        _instant("created_at"),
        sa.ForeignKeyConstraint(["identity_id"], ["channel_identity.id"],
                                name=op.f("fk_account_person_identity_id_channel_identity")),
        sa.ForeignKeyConstraint(["person_id"], ["person.id"],
                                name=op.f("fk_account_person_person_id_person")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_person")),
        sa.UniqueConstraint("identity_id", "person_id", name=op.f("uq_account_person_identity_id")),
    )
    with op.batch_alter_table("account_person", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_account_person_person_id"), ["person_id"], unique=False)

    op.create_table(
        "account_link",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("first_id", sa.Integer(), nullable=False),
        sa.Column("second_id", sa.Integer(), nullable=False),
        sa.Column("method", _METHOD, nullable=False),
        _instant("created_at"),
        sa.CheckConstraint("first_id < second_id", name=op.f("ck_account_link_ordered")),
        sa.ForeignKeyConstraint(["first_id"], ["channel_identity.id"],
                                name=op.f("fk_account_link_first_id_channel_identity")),
        sa.ForeignKeyConstraint(["second_id"], ["channel_identity.id"],
                                name=op.f("fk_account_link_second_id_channel_identity")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_link")),
        sa.UniqueConstraint("first_id", "second_id", name=op.f("uq_account_link_first_id")),
    )
    with op.batch_alter_table("account_link", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_account_link_second_id"), ["second_id"], unique=False)

    op.create_table(
        "link_code",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        _instant("expires_at"),
        _instant("created_at"),
        sa.ForeignKeyConstraint(["identity_id"], ["channel_identity.id"],
                                name=op.f("fk_link_code_identity_id_channel_identity")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_code")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_link_code_code_hash")),
        sa.UniqueConstraint("identity_id", name=op.f("uq_link_code_identity_id")),
    )

    op.create_table(
        "verification_tries",
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        _instant("first_failure_at", nullable=True),
        _instant("locked_until", nullable=True),
        sa.ForeignKeyConstraint(["identity_id"], ["channel_identity.id"],
                                name=op.f("fk_verification_tries_identity_id_channel_identity")),
        sa.PrimaryKeyConstraint("identity_id", "purpose", name=op.f("pk_verification_tries")),
    )

    # Every binding of today becomes a 本人 link. When it was bound is not known: the link is
    # dated when the account was made, the earliest it can have been (no clock is read here).
    identity = sa.table("channel_identity", sa.column("id", sa.Integer()),
                        sa.column("person_id", sa.Integer()),
                        sa.column("created_at", storage.db.UTCDateTime(timezone=True)))
    op.execute(account_person.insert().from_select(
        ["identity_id", "person_id", "relation", "method", "created_at"],
        sa.select(identity.c.id, identity.c.person_id, sa.literal("self", sa.String(20)),
                  sa.literal("migrated", sa.String(20)), identity.c.created_at)
        .where(identity.c.person_id.is_not(None))))
    # The mobile on record is shown back to the account only when it is the one account bound
    # to the person: where several were, any of them may have typed it last.
    person = sa.table("person", sa.column("id", sa.Integer()), sa.column("mobile", sa.String(11)))
    other = account_person.alias("other")
    op.execute(account_person.update()
               .where(sa.select(sa.func.count()).select_from(other)
                      .where(other.c.person_id == account_person.c.person_id).scalar_subquery() == 1)
               .values(mobile=sa.select(person.c.mobile).where(person.c.id == account_person.c.person_id)
                       .scalar_subquery()))


def downgrade() -> None:
    op.drop_table("verification_tries")
    op.drop_table("link_code")
    with op.batch_alter_table("account_link", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_link_second_id"))
    op.drop_table("account_link")
    with op.batch_alter_table("account_person", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_person_person_id"))
    op.drop_table("account_person")
    with op.batch_alter_table("appointment", schema=None) as batch_op:
        batch_op.drop_column("attached_at")
    with op.batch_alter_table("person", schema=None) as batch_op:
        batch_op.drop_column("erased_at")
        batch_op.drop_column("id_tail_hash")
