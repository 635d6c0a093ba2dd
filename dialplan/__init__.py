"""The dialplan: given a call's facts, the actions to run.

Pure Python (no sockets, no Twisted, no file watching). `load_file` compiles
and checks `conf/dialplan.yaml` into an immutable `Plan`; `Plan.route(facts)`
returns a `Decision` with typed actions, final variables and a trace. The
format is documented in docs/dialplan.md.
"""

from dialplan.actions import (
    Action,
    Answer,
    CallerId,
    Dial,
    Echo,
    Goto,
    Hangup,
    Playback,
    Record,
    SetVariables,
    Target,
    Transfer,
    TrunkTarget,
    UriTarget,
    UserTarget,
    Voicemail,
    describe_action,
)
from dialplan.diagnostics import CheckResult, Diagnostic, Severity
from dialplan.facts import CallFacts, Decision, TraceStep
from dialplan.loader import load_file, load_text
from dialplan.plan import Plan

__all__ = [
    "Action",
    "Answer",
    "CallFacts",
    "CallerId",
    "CheckResult",
    "Decision",
    "Diagnostic",
    "Dial",
    "Echo",
    "Goto",
    "Hangup",
    "Plan",
    "Playback",
    "Record",
    "SetVariables",
    "Severity",
    "Target",
    "TraceStep",
    "Transfer",
    "TrunkTarget",
    "UriTarget",
    "UserTarget",
    "Voicemail",
    "describe_action",
    "load_file",
    "load_text",
]
