"""Brute-force defence: per-source rate limits, bans, scanner user agents.

`sources.py` decides, per datagram or stream message and per failed
authentication, whether a source is admitted, limited or banned (pure,
time passed in); `kernel.py` drops banned sources in nftables (userspace
drop when that is unavailable); `exchange.py` is the file-based way the CLI
lists and lifts bans; `service.py` wires them to the running server.
"""
