"""The B2BUA: calls between an A-leg (we are UAS) and B-legs (we are UAC).

`call.py` holds the call model the CLI will show, `dialing.py` turns dial
targets into B-leg INVITEs, `media.py` is the seam the media relay fills,
`b2bua.py` runs the dialplan decision and relays between the legs.
"""
