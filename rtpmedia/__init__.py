"""The media plane: RTP/RTCP, the relay process, jitter buffer, PLC and codecs.

Named `rtpmedia` so that nothing shadows the standard library (`codecs` is
Python's own); codec modules will live in `rtpmedia.codecs`. Empty until the
media relay issue: the signalling side passes SDP through a seam
(see docs/architecture.md) that the relay will fill.
"""
