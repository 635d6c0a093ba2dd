"""The B2BUA: calls between an A-leg (we are UAS) and B-legs (we are UAC).

`b2bua.py` takes new INVITEs, runs the dialplan decision and the dials,
and ends calls; `call.py` is the call model the CLI will show;
`dialing.py` turns dial targets into B-leg INVITEs; `trunks.py` tells which
trunk a request comes from; `relay.py` handles requests inside established
dialogs; `refresh.py` and `session_timer.py` keep RFC 4028 session timers;
`reliable.py` sends reliable provisionals (RFC 3262); `transfer.py` and
`replaces.py` move a call to another party; `records.py` turns a call into
its CDR and its saved state and back; `media.py` is the seam the media relay
fills.
"""
