"""Thin Twisted adapters that move SIP bytes between sockets and the core.

They frame bytes (datagrams, or Content-Length over streams) and hand them
over with the `Peer` they came from; they never parse SIP beyond framing.
"""
