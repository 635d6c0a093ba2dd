"""The one error type of the SIP message layer (after h11's RemoteProtocolError).

Every parser in `softswitch.sip` raises `MessageError` for bad input, never a
bare KeyError or IndexError; the transport layer turns it into the status it
carries (400 Bad Request, 505 Version Not Supported, 413...) or drops the bytes
when the sender cannot be identified.
"""

from __future__ import annotations


class MessageError(Exception):
    """Input that is not a well-formed SIP message, with the status to answer."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status

    def __repr__(self) -> str:
        return f"MessageError({self.reason!r}, status={self.status})"
