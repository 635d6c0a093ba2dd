"""What a call leaves behind: its CDR, and the record that lets a restart end it.

`dialog_from_state` is the way back: a saved leg becomes a dialog again.
"""

from __future__ import annotations

from softswitch.b2bua.call import Call
from softswitch.b2bua.dialing import LocalAddress, contact_of
from softswitch.callstate import CallRecord, LegState
from softswitch.cdr import CdrRecord, Disposition, HangupSide
from softswitch.sip.dialog import Dialog, DialogRole, DialogState
from softswitch.sip.headers import NameAddr
from softswitch.sip.peer import Peer
from softswitch.sip.uri import parse_uri


def cdr_of(call: Call) -> CdrRecord:
    final = call.a.final
    sip_code = final.status if final is not None else 200 if call.answered else 500
    disposition = call.disposition or Disposition.of(sip_code)
    return CdrRecord(
        call_id=call.call_id, uuid=call.uuid, caller=call.caller,
        caller_name=call.caller_name or "", callee=call.callee, dialled=call.dialled,
        context=call.context, trunk=call.trunk, start=call.started, answer=call.answered,
        end=call.ended if call.ended is not None else call.started,
        disposition=disposition, hangup_cause=call.hangup_cause,
        hangup_side=HangupSide(call.hangup_side or "system"), sip_code=sip_code,
        b_leg_codes=list(call.b_codes))


def leg_state(dialog: Dialog) -> LegState:
    assert dialog.peer is not None
    return LegState(
        call_id=dialog.call_id, local_tag=dialog.local_tag, remote_tag=dialog.remote_tag,
        local_uri=str(dialog.local_uri), remote_uri=str(dialog.remote_uri),
        local_cseq=dialog.local_cseq or 0, remote_target=str(dialog.remote_target),
        transport=dialog.peer.transport, host=dialog.peer.host, port=dialog.peer.port,
        route_set=[str(r) for r in dialog.route_set])


def record_of(call: Call) -> CallRecord:
    assert call.a.dialog is not None and call.winner is not None
    assert call.winner.dialog is not None and call.answered is not None
    return CallRecord(
        uuid=call.uuid, a_leg=leg_state(call.a.dialog), b_leg=leg_state(call.winner.dialog),
        start=call.started, answer=call.answered, caller=call.caller,
        callee=call.callee or "", dialled=call.dialled, context=call.context,
        caller_name=call.caller_name or "", trunk=call.trunk, b_leg_codes=list(call.b_codes))


# Requests we sent after the last save of a call's state used CSeq numbers the
# store never saw; a restored dialog starts this far above the saved one.
_RESTORE_CSEQ_JUMP = 1000


def dialog_from_state(state: LegState, role: DialogRole, local: LocalAddress) -> Dialog:
    peer = Peer(state.transport, state.host, state.port)
    via_host, via_port = local(peer)
    return Dialog(
        role=role, call_id=state.call_id, local_tag=state.local_tag,
        remote_tag=state.remote_tag, local_uri=NameAddr.parse(state.local_uri),
        remote_uri=NameAddr.parse(state.remote_uri),
        remote_target=parse_uri(state.remote_target),
        local_contact=contact_of(via_host, via_port, state.transport),
        route_set=[NameAddr.parse(r) for r in state.route_set],
        local_cseq=state.local_cseq + _RESTORE_CSEQ_JUMP, peer=peer,
        state=DialogState.CONFIRMED)
