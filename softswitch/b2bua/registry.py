"""Every call, and every index that finds one: one owner for all of them.

Calls are found by uuid, by the dialogs they hold (in-dialog requests,
ACKs, 2xx retransmissions, Replaces), and by the server transaction of the
caller's INVITE (CANCEL). The call machine says when a dialog opens or
closes (`DialogOpened`/`DialogClosed`); the glue tells the registry. When
a call is forgotten every index is empty of it, which the property tests
check through `is_empty`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

DialogId = tuple[str, str, str]
T = TypeVar("T")


class CallRegistry(Generic[T]):
    """Calls (of type T, whatever the glue keeps per call) and their indexes."""

    def __init__(self) -> None:
        self._calls: dict[str, T] = {}
        self._by_dialog: dict[DialogId, str] = {}
        self._by_invite: dict[object, str] = {}
        self._dialogs_of: dict[str, set[DialogId]] = {}
        self._invite_of: dict[str, object] = {}

    def add(self, uuid: str, call: T, invite_key: object | None = None) -> None:
        self._calls[uuid] = call
        self._dialogs_of[uuid] = set()
        if invite_key is not None:
            self._by_invite[invite_key] = uuid
            self._invite_of[uuid] = invite_key

    def get(self, uuid: str) -> T | None:
        return self._calls.get(uuid)

    def open_dialog(self, uuid: str, dialog_id: DialogId) -> None:
        previous = self._by_dialog.get(dialog_id)
        if previous is not None and previous != uuid:
            # A dialog moving between calls (attended transfer).
            self._dialogs_of.get(previous, set()).discard(dialog_id)
        self._by_dialog[dialog_id] = uuid
        self._dialogs_of.setdefault(uuid, set()).add(dialog_id)

    def close_dialog(self, uuid: str, dialog_id: DialogId) -> None:
        if self._by_dialog.get(dialog_id) == uuid:
            del self._by_dialog[dialog_id]
        self._dialogs_of.get(uuid, set()).discard(dialog_id)

    def by_dialog(self, dialog_id: DialogId) -> T | None:
        uuid = self._by_dialog.get(dialog_id)
        return self._calls.get(uuid) if uuid is not None else None

    def by_invite(self, invite_key: object) -> T | None:
        uuid = self._by_invite.get(invite_key)
        return self._calls.get(uuid) if uuid is not None else None

    def forget_invite(self, uuid: str) -> None:
        """The caller's INVITE transaction is over: CANCEL no longer finds the call."""
        key = self._invite_of.pop(uuid, None)
        if key is not None:
            self._by_invite.pop(key, None)

    def remove(self, uuid: str) -> None:
        """Forget the call and whatever index still names it."""
        self._calls.pop(uuid, None)
        for dialog_id in self._dialogs_of.pop(uuid, set()):
            if self._by_dialog.get(dialog_id) == uuid:
                del self._by_dialog[dialog_id]
        self.forget_invite(uuid)

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._calls.values()))

    def is_empty(self) -> bool:
        return not (self._calls or self._by_dialog or self._by_invite or self._dialogs_of
                    or self._invite_of)
