"""What an account is told when another account is linked to it or unlinked from it (绑定), and
whom a notice about a booking names when the account booked for someone else."""

from __future__ import annotations

from handlers.core import Reply
from handlers.notices.base import ForWhom, Note, Rendered, Renderer
from storage.accounts import relation_to


def _told(key: str) -> Renderer:
    async def render(note: Note) -> Rendered:
        payload = note.row.payload
        channel = note.t(f"people.channel_{payload.get('channel', 'terminal')}")
        return Rendered([Reply(note.t(key, channel=channel, user=payload.get("user", "")))])
    return render


async def for_whom(note: Note) -> ForWhom:
    """Whom a notice about a booking names when the account it goes to booked for someone
    other than its 本人 (the masked name; the relation when it holds the person): the chat's
    "您为父母 李*华 预约的：" and the template's "父母 李*华"; empty for its own booking."""
    if note.appointment is None or note.row.identity_id is None:
        return ForWhom()
    found = await relation_to(note.session, account_id=note.row.identity_id,
                              person_id=note.appointment.person_id)
    if found is None:
        return ForWhom()
    relation, name = found
    if relation is None:
        return ForWhom(note.t("people.for_person", name=name),
                       note.t("people.template_person", name=name))
    label = note.t(f"people.relation_{relation.value}")
    return ForWhom(note.t("people.for_relation", relation=label, name=name),
                   note.t("people.template_relation", relation=label, name=name))


RENDERERS: dict[str, Renderer] = {
    "account_linked": _told("people.linked_notice"),
    "account_unlinked": _told("people.unlinked_notice"),
}
