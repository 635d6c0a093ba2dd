"""The softswitch's side of the media relay: the ng client, relay choice,
the media seam that drives a relay, and the embedded relay child process.

numpy-free: the signalling process imports this package, never `rtpmedia.relay`.
"""
