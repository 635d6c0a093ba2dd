"""softswitch: a SIP softswitch (registrar, B2BUA, dialplan) on Twisted."""

__version__ = "0.1.0"
