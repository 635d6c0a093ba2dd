"""A call as a value: what the CDR, the call store and the call inspection are made of.

`CallSnapshot` is frozen and made of strings, numbers and tuples, so it
serialises (`as_dict`/`from_dict`, JSON-safe) and can cross a process or a
node. The call machine makes one on every change that matters; a call
restored after a restart is a machine built from its last snapshot, so it
can do everything a live call can.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from softswitch.b2bua.legs import LegId
from softswitch.cdr import CdrRecord, Disposition, HangupSide


@dataclass(frozen=True, slots=True)
class DialogSnapshot:
    """One dialog from our side (RFC 3261 12): enough to send requests in it again."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # From of the requests we send
    remote_uri: str  # To of the requests we send
    local_cseq: int  # the last CSeq we sent
    remote_cseq: int  # the last CSeq we received (0: none yet)
    remote_target: str  # the peer's Contact: our Request-URI
    local_contact: str
    route_set: tuple[str, ...]
    transport: str
    host: str
    port: int
    uas: bool  # we were the UAS of the dialog-creating INVITE


@dataclass(frozen=True, slots=True)
class LegSnapshot:
    name: str  # "a", "b1"...: unique in the call
    id: LegId
    caller_side: bool
    state: str  # a LegState value
    target: str  # user/1002, trunk/provider/+1555...
    transport: str
    host: str
    port: int
    dialog: DialogSnapshot | None = None
    sdp_sent: str = ""  # the last SDP we sent this party (latin-1)
    session_interval: int = 0  # RFC 4028 session timer, 0 when none
    session_refresher: str = ""  # "us" or "peer"
    allows: tuple[str, ...] = ()
    final_status: int | None = None


@dataclass(frozen=True, slots=True)
class CallSnapshot:
    uuid: str
    call_id: str  # the caller's Call-ID: what logs and the CDR name the call by
    state: str  # a CallState value
    caller: str
    caller_name: str
    dialled: str
    context: str
    trunk: str | None
    callee: str | None
    rule: str | None  # the dialplan rule that routed the call
    started: float
    answered: float | None
    ended: float | None
    legs: tuple[LegSnapshot, ...]
    bridge: tuple[str, str]  # the names of the two legs talking to each other
    timers: tuple[tuple[str, float], ...]  # name and deadline, Unix seconds
    b_codes: tuple[int, ...]
    hangup_cause: str = ""
    hangup_side: str = ""
    disposition: str | None = None
    sip_code: int | None = None  # the final status the caller got
    variables: tuple[tuple[str, str], ...] = ()

    def leg(self, name: str) -> LegSnapshot | None:
        return next((leg for leg in self.legs if leg.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe: nested values become dicts and lists."""
        return _plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CallSnapshot:
        legs = []
        for leg in data["legs"]:
            dialog = leg.get("dialog")
            legs.append(LegSnapshot(**{
                **leg, "id": LegId(**leg["id"]),
                "dialog": DialogSnapshot(**{**dialog, "route_set": tuple(dialog["route_set"])})
                if dialog else None,
                "allows": tuple(leg.get("allows", ())),
            }))
        return cls(**{
            **data, "legs": tuple(legs),
            "bridge": (str(data["bridge"][0]), str(data["bridge"][1])),
            "timers": tuple((str(n), float(d)) for n, d in data.get("timers", ())),
            "b_codes": tuple(int(c) for c in data.get("b_codes", ())),
            "variables": tuple((str(k), str(v)) for k, v in data.get("variables", ())),
        })


_SCALARS = (str, int, float, bool, type(None))


def _plain(value: Any) -> Any:
    # Scalars first: they are most of a snapshot, and a failed attribute
    # look-up (the dataclass test) on each of them costs an exception.
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return {name: _plain(getattr(value, name)) for name in value.__dataclass_fields__}


def cdr_of(snapshot: CallSnapshot) -> CdrRecord:
    """The CDR of an ended call."""
    sip_code = snapshot.sip_code if snapshot.sip_code is not None \
        else 200 if snapshot.answered else 500
    disposition = Disposition(snapshot.disposition) if snapshot.disposition \
        else Disposition.of(sip_code)
    return CdrRecord(
        call_id=snapshot.call_id, uuid=snapshot.uuid, caller=snapshot.caller,
        caller_name=snapshot.caller_name, callee=snapshot.callee, dialled=snapshot.dialled,
        context=snapshot.context, trunk=snapshot.trunk, start=snapshot.started,
        answer=snapshot.answered,
        end=snapshot.ended if snapshot.ended is not None else snapshot.started,
        disposition=disposition, hangup_cause=snapshot.hangup_cause,
        hangup_side=HangupSide(snapshot.hangup_side or "system"), sip_code=sip_code,
        b_leg_codes=list(snapshot.b_codes),
        # Only an answered call was recorded (the relay records from the answer).
        recording=dict(snapshot.variables).get("recording") if snapshot.answered else None)
