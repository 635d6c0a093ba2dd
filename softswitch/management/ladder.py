"""A call's SIP messages drawn as a ladder, the way sngrep draws a call flow.

One column per party (each remote address, and the softswitch), in the
order they appear; one arrow per message with its time relative to the
first. Works on the API's JSON (`Captured.as_dict`), so the CLI and
`softswitch top` draw the same thing without importing the server.

        127.0.0.1:5062           softswitch            127.0.0.1:5064
              |                       |                       |
    0.000     |-------- INVITE ------>|                       |
    0.001     |<------- 100 Trying ---|                       |
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

US = "softswitch"


def parties(messages: Sequence[dict[str, Any]]) -> list[str]:
    """The columns: remote addresses in order of appearance, us second (after the caller)."""
    seen: list[str] = []
    for message in messages:
        peer = str(message["peer"])
        if peer not in seen:
            seen.append(peer)
    return seen[:1] + [US] + seen[1:] if seen else [US]


def render(messages: Sequence[dict[str, Any]], column: int = 24) -> list[str]:
    """The ladder as lines of text (no colour, no box drawing: it may go to a pipe)."""
    if not messages:
        return ["(no messages kept for this call)"]
    columns = parties(messages)
    column = max(column, max(len(p) for p in columns) + 2)
    margin = 10
    width = margin + column * len(columns)
    centres = {p: margin + column * i + column // 2 for i, p in enumerate(columns)}

    def blank() -> list[str]:
        row = [" "] * width
        for x in centres.values():
            row[x] = "|"
        return row

    head = [" "] * width
    for party, x in centres.items():
        start = max(0, x - len(party) // 2)
        head[start:start + len(party)] = party
    lines = ["".join(head).rstrip(), "".join(blank()).rstrip()]
    first = float(messages[0]["time"])
    for message in messages:
        peer = str(message["peer"])
        source, sink = (peer, US) if message["direction"] == "in" else (US, peer)
        a, b = centres[source], centres[sink]
        lo, hi = min(a, b), max(a, b)
        row = blank()
        for x in range(lo + 1, hi):
            row[x] = "-"
        if a < b:
            row[hi - 1] = ">"
        else:
            row[lo + 1] = "<"
        label = f" {message['summary']} "
        room = hi - lo - 4
        if len(label) > room:
            label = label[:max(room, 0)]
        start = lo + 2 + (room - len(label)) // 2
        row[start:start + len(label)] = label
        stamp = f"{float(message['time']) - first:8.3f}"
        row[0:len(stamp)] = stamp
        lines.append("".join(row).rstrip())
    return lines
