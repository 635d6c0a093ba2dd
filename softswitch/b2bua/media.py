"""The media seam: every SDP body that crosses the B2BUA passes through here.

Today the legs exchange SDP unchanged (direct media: the phones send RTP to
each other). The media relay issue replaces `DirectMedia` with an
implementation that allocates relay ports and rewrites `c=`/`m=` lines, so
that RTP is anchored; the B2BUA does not change.
"""

from __future__ import annotations

from typing import Protocol


class MediaSeam(Protocol):
    def offer(self, call_id: str, from_leg: str, to_leg: str, body: bytes,
              content_type: str | None) -> bytes:
        """An SDP offer (or any body) from `from_leg` on its way to `to_leg`."""
        ...

    def answer(self, call_id: str, from_leg: str, to_leg: str, body: bytes,
               content_type: str | None) -> bytes:
        """An SDP answer from `from_leg` on its way to `to_leg`."""
        ...

    def release(self, call_id: str) -> None:
        """The call ended: free whatever it held."""
        ...


class DirectMedia:
    """SDP passes unchanged: the endpoints exchange RTP directly."""

    def offer(self, call_id: str, from_leg: str, to_leg: str, body: bytes,
              content_type: str | None) -> bytes:
        return body

    def answer(self, call_id: str, from_leg: str, to_leg: str, body: bytes,
               content_type: str | None) -> bytes:
        return body

    def release(self, call_id: str) -> None:
        return None
