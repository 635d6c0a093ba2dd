"""Legs and dialogs as values and back: what snapshots are made of.

`leg_snapshot` describes a live leg; `leg_from_snapshot` is the way back,
used when a call is restored after a restart. `snapshot_from_record`
reads calls saved by a version that kept only the two dialogs
(`callstate.CallRecord`).
"""

from __future__ import annotations

from softswitch.b2bua.dialing import LocalAddress, contact_of
from softswitch.b2bua.legs import Leg, LegId, LegState
from softswitch.b2bua.session_timer import Refresher, SessionTimer
from softswitch.b2bua.snapshot import CallSnapshot, DialogSnapshot, LegSnapshot
from softswitch.callstate import CallRecord
from softswitch.callstate import LegState as SavedDialog
from softswitch.sip.dialog import Dialog, DialogRole, DialogState
from softswitch.sip.headers import NameAddr
from softswitch.sip.peer import Peer
from softswitch.sip.uri import parse_uri

# Requests we sent after the last save of a call's state used CSeq numbers the
# store never saw; a restored dialog starts this far above the saved one.
RESTORE_CSEQ_JUMP = 1000


def dialog_snapshot(dialog: Dialog) -> DialogSnapshot:
    peer = dialog.peer or Peer("udp", "", 0)
    return DialogSnapshot(
        call_id=dialog.call_id, local_tag=dialog.local_tag, remote_tag=dialog.remote_tag,
        local_uri=str(dialog.local_uri), remote_uri=str(dialog.remote_uri),
        local_cseq=dialog.local_cseq or 0, remote_cseq=dialog.remote_cseq or 0,
        remote_target=str(dialog.remote_target), local_contact=str(dialog.local_contact),
        route_set=tuple(str(r) for r in dialog.route_set), transport=peer.transport,
        host=peer.host, port=peer.port, uas=dialog.role is DialogRole.UAS)


def leg_snapshot(leg: Leg, dialog: bool = True) -> LegSnapshot:
    session = leg.session
    return LegSnapshot(
        name=leg.name, id=leg.id, caller_side=leg.caller_side, state=leg.state.value,
        target=leg.target, transport=leg.peer.transport, host=leg.peer.host,
        port=leg.peer.port,
        dialog=dialog_snapshot(leg.dialog) if dialog and leg.dialog is not None else None,
        sdp_sent=leg.sdp_sent.decode("latin-1") if dialog else "",
        session_interval=session.interval if session is not None else 0,
        session_refresher=session.refresher.value if session is not None else "",
        allows=tuple(sorted(leg.allows)), final_status=leg.final_status)


def dialog_from_snapshot(saved: DialogSnapshot, local: LocalAddress) -> Dialog:
    peer = Peer(saved.transport, saved.host, saved.port)
    host, port = local(peer)
    return Dialog(
        role=DialogRole.UAS if saved.uas else DialogRole.UAC, call_id=saved.call_id,
        local_tag=saved.local_tag, remote_tag=saved.remote_tag,
        local_uri=NameAddr.parse(saved.local_uri), remote_uri=NameAddr.parse(saved.remote_uri),
        remote_target=parse_uri(saved.remote_target),
        # Our address may have changed with the restart: a fresh Contact.
        local_contact=contact_of(host, port, saved.transport),
        route_set=[NameAddr.parse(r) for r in saved.route_set],
        local_cseq=saved.local_cseq + RESTORE_CSEQ_JUMP,
        remote_cseq=saved.remote_cseq or None, peer=peer, state=DialogState.CONFIRMED)


def leg_from_snapshot(saved: LegSnapshot, local: LocalAddress) -> Leg:
    """A confirmed leg back from its snapshot (MessageError/ValueError if unreadable)."""
    if saved.dialog is None:
        raise ValueError(f"leg {saved.name} has no dialog")
    dialog = dialog_from_snapshot(saved.dialog, local)
    leg = Leg(saved.name, saved.caller_side, saved.target,
              Peer(saved.transport, saved.host, saved.port), saved.id, LegState.CONFIRMED,
              dialog=dialog, final_status=saved.final_status,
              sdp_sent=saved.sdp_sent.encode("latin-1"), allows=frozenset(saved.allows))
    if saved.session_interval:
        leg.session = SessionTimer(saved.session_interval, Refresher(saved.session_refresher))
    return leg


def _from_saved_dialog(saved: SavedDialog, uas: bool) -> DialogSnapshot:
    return DialogSnapshot(
        call_id=saved.call_id, local_tag=saved.local_tag, remote_tag=saved.remote_tag,
        local_uri=saved.local_uri, remote_uri=saved.remote_uri, local_cseq=saved.local_cseq,
        remote_cseq=0, remote_target=saved.remote_target, local_contact="",
        route_set=tuple(saved.route_set), transport=saved.transport, host=saved.host,
        port=saved.port, uas=uas)


def snapshot_from_record(record: CallRecord) -> CallSnapshot:
    """A call saved in the two-dialog format, as a snapshot."""
    legs = []
    for name, saved, caller_side, target in (("a", record.a_leg, True, record.caller),
                                             ("b1", record.b_leg, False, record.callee)):
        legs.append(LegSnapshot(
            name=name, id=LegId(saved.call_id, saved.local_tag, saved.remote_tag),
            caller_side=caller_side, state=LegState.CONFIRMED.value, target=target,
            transport=saved.transport, host=saved.host, port=saved.port,
            dialog=_from_saved_dialog(saved, caller_side), final_status=200))
    return CallSnapshot(
        uuid=record.uuid, call_id=record.a_leg.call_id, state="confirmed",
        caller=record.caller, caller_name=record.caller_name, dialled=record.dialled,
        context=record.context, trunk=record.trunk, callee=record.callee, rule=None,
        started=record.start, answered=record.answer, ended=None, legs=tuple(legs),
        bridge=("a", "b1"),
        timers=(), b_codes=tuple(record.b_leg_codes))
