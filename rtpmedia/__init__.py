"""The media plane: RTP/RTCP, the relay process, jitter buffer, PLC and codecs.

Named `rtpmedia` so that nothing shadows the standard library (`codecs` is
Python's own): codecs live in `rtpmedia.codecs`, RTP packets in
`rtpmedia.rtp`, DTMF in `rtpmedia.telephone_event` and `rtpmedia.goertzel`.
The relay itself comes with the media relay issue: the signalling side
passes SDP through a seam (see docs/architecture.md) that it will fill.
numpy is used here and never imported by `softswitch`.
"""
