"""RFC 7339 overload control: the `oc` parameters of Via, as a server sets them.

A client that supports RFC 7339 puts `oc` (no value) in the Via of its
requests, with the algorithms it implements in `oc-algo` (default "loss",
which every implementation supports, RFC 7339 5.1). A server answering
such a request puts in the top Via of its response (5.2): `oc`, the share
of requests the client should not send (the loss algorithm, in percent);
`oc-algo`, the algorithm chosen; `oc-validity`, how long the value holds
(milliseconds; 0 ends overload control); and `oc-seq`, a number that grows
with every new value (a timestamp, 5.2). A trunk that supports it then
sheds its own traffic before it reaches us, which costs us nothing at all.

Pure: the gate (`softswitch/overload_gate.py`) stamps the Vias of the
responses it sees with the controller's loss.
"""

from __future__ import annotations

from softswitch.sip.headers import Via, unquote_param

LOSS = "loss"


def wants_oc(via: Via) -> bool:
    """Whether the client that wrote `via` asks for overload control with the
    loss algorithm (RFC 7339 5.1: `oc` present, `oc-algo` absent or listing it)."""
    if "oc" not in via.params:
        return False
    algorithms = unquote_param(via.params.get("oc-algo")) or LOSS
    return LOSS in (a.strip().lower() for a in algorithms.split(","))


def stamp_oc(via: Via, loss: float, seq: float, validity_ms: int) -> bool:
    """Set the response's oc parameters in `via` (the request's top Via, copied);
    False, and `via` unchanged, when the client did not ask for them."""
    if not wants_oc(via):
        return False
    via.params["oc"] = str(round(max(0.0, min(1.0, loss)) * 100))
    via.params["oc-validity"] = str(validity_ms if loss > 0 else 0)
    via.params["oc-seq"] = f"{seq:.3f}"
    via.params["oc-algo"] = f'"{LOSS}"'
    return True
