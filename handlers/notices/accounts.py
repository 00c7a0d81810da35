"""What an account is told when another account is linked to it or unlinked from it (绑定)."""

from __future__ import annotations

from handlers.core import Reply
from handlers.notices.base import Note, Rendered, Renderer


def _told(key: str) -> Renderer:
    async def render(note: Note) -> Rendered:
        payload = note.row.payload
        channel = note.t(f"people.channel_{payload.get('channel', 'terminal')}")
        return Rendered([Reply(note.t(key, channel=channel, user=payload.get("user", "")))])
    return render


RENDERERS: dict[str, Renderer] = {
    "account_linked": _told("people.linked_notice"),
    "account_unlinked": _told("people.unlinked_notice"),
}
