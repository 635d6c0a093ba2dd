"""The sans-IO SIP stack: messages, URIs, transactions and digest auth.

Nothing in this package imports Twisted or touches a socket or a file: bytes
and parsed messages go in, messages to send and timers to set come out.
"""
