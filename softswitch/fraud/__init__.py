"""Toll-fraud defence: classes of destinations and per-user/per-trunk call limits.

`classes.py` sorts dialled numbers into classes (internal, national,
international, premium, emergency); `policy.py` decides, as values, whether
a party may dial a target now. The B2BUA asks before it resolves any target
(`CallSettings.dial_policy`), so no dialplan rule can route around it.
"""
