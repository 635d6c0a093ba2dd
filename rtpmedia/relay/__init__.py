"""The media relay: a process of its own that anchors RTP/RTCP and speaks rtpengine's ng protocol.

See docs/relay.md. Control (ng commands, calls and their streams) is pure
code; sockets, the kernel fast path and the durable store are drivers
around it.
"""
