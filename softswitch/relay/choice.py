"""Relayed or direct media, per call, and the relay a call sticks to.

The choice, first match wins: the call's `media` variable (a dialplan
rule's `set: {media: direct}`, or what an earlier look decided), the
trunk's `media` setting, the server's `media.mode`. It is made once, at
the call's first SDP, and kept in the call's variables (`media`, and
`media_relay` for the relay's address) so that the snapshot carries it
and a restarted softswitch keeps using the same relay.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from softswitch.b2bua.legs import Leg
from softswitch.b2bua.media import DirectMedia, MediaSeam
from softswitch.relay.seam import RelayMedia
from softswitch.sip.errors import MessageError
from softswitch.sip.locate import is_numeric
from softswitch.sip.uri import SipURI

MODES = ("relay", "direct")
_YES = ("yes", "true", "on", "1")


def nat_source(leg: Leg) -> str | None:
    """The address the caller's packets come from, when its Via says it is behind a NAT."""
    invite = leg.invite
    if invite is None or not leg.caller_side:
        return None
    try:
        via = invite.top_via
    except MessageError:
        return None
    received = via.params.get("received")
    rport = via.params.get("rport")
    if received and received != via.host.strip("[]"):
        return received
    if rport and via.port is not None and rport != str(via.port):
        return received or via.host
    return None


def callee_nat_source(leg: Leg) -> str | None:
    """The address a callee's packets come from, when it is behind a NAT: its
    registered Contact names one address and we reach it at another (the
    REGISTER's source, RFC 3581), so its RTP will come from there too."""
    invite = leg.invite
    if invite is None or leg.caller_side:
        return None
    uri = invite.uri
    if not isinstance(uri, SipURI):
        return None
    contact_host = uri.host_no_brackets
    if not is_numeric(contact_host) or contact_host == leg.peer.host:
        return None
    return leg.peer.host


class MediaChoice:
    """Which seam a call's SDP goes through."""

    def __init__(self, default: str, relay: RelayMedia | None,
                 trunk_modes: Mapping[str, str | None] | None = None,
                 trunk_records: Mapping[str, bool] | None = None) -> None:
        self.default = default
        self.relay = relay
        self.direct = DirectMedia()
        self.trunk_modes = dict(trunk_modes or {})
        self.trunk_records = dict(trunk_records or {})

    def mode(self, variables: Mapping[str, str], trunk: str | None) -> str:
        chosen = (variables.get("media") or "").strip().lower()
        if chosen in MODES:
            return chosen
        by_trunk = self.trunk_modes.get(trunk) if trunk else None
        return by_trunk or self.default

    def records(self, variables: Mapping[str, str], trunk: str | None) -> bool:
        """The relay records the call: the dialplan's `record_call`, else the trunk's option."""
        chosen = (variables.get("record_call") or "").strip().lower()
        if chosen:
            return chosen in _YES
        return bool(trunk and self.trunk_records.get(trunk))

    def seam_for(self, machine: Any) -> tuple[MediaSeam, dict[str, str]]:
        """The seam of `machine`'s call, and the variables to remember for it."""
        mode = self.mode(machine.variables, machine.trunk)
        if mode == "direct" or self.relay is None:
            return self.direct, {"media": "direct"}
        known = machine.variables.get("media_relay")
        where = self.relay.place(machine.uuid, known)
        remember = {"media": "relay"}
        if where is not None:
            remember["media_relay"] = where
        caller = next((leg for leg in machine.legs if leg.caller_side), None)
        if caller is not None:
            self.relay.correlate(machine.uuid, caller.id.call_id)
        if self.records(machine.variables, machine.trunk):
            # Asked once the dialplan ran (a later `set` still counts at the
            # next SDP); the file is fixed then and remembered for a restart.
            remember["recording"] = self.relay.record(
                machine.uuid, machine.variables.get("recording"), machine.call_id)
        for leg in machine.legs:
            # The caller is judged at the first look, each callee once it exists.
            source = (nat_source(leg) if not known else None) if leg.caller_side \
                else callee_nat_source(leg)
            if source is not None:
                self.relay.behind_nat(machine.uuid, leg.id, source)
        return self.relay, remember
