"""Parsing and validating the `actions:` of a rule into compiled action specs.

Owns the YAML form of every action (`dial`, `answer`, `hangup`, `playback`,
`echo`, `record`, `voicemail`, `set`, `goto`, `transfer`) and its options,
and records the gotos and literal dial targets the cross-rule checks need.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dialplan.actions import (
    TARGET_HINT,
    Answer,
    Echo,
    Target,
    TargetError,
    TrunkTarget,
    parse_target,
)
from dialplan.diagnostics import Reporter
from dialplan.nodes import (
    as_list,
    check_keys,
    expect_bool,
    expect_int,
    expect_map,
    expect_text,
    suggest,
)
from dialplan.source import YMap, YNode, YScalar, YSeq, describe
from dialplan.specs import (
    ActionSpec,
    DialSpec,
    GotoSpec,
    HangupSpec,
    PlaybackSpec,
    RecordSpec,
    SetSpec,
    StaticSpec,
    TransferSpec,
    VoicemailSpec,
)
from dialplan.template import Template, TemplateError, compile_template

ACTIONS = (
    "dial",
    "answer",
    "hangup",
    "playback",
    "echo",
    "record",
    "voicemail",
    "set",
    "goto",
    "transfer",
)
DIAL_OPTIONS = ("to", "timeout", "caller_id", "headers", "on_busy", "on_no_answer", "on_failure")
# Variables the router sets from the call; `set` may not overwrite them.
READ_ONLY = frozenset({"dest", "caller", "caller_name", "context", "trunk",
                       "media_relay",  # the relay the softswitch chose
                       "recording"})  # the file the relay records the call to

# `set: {media: ...}`: the call's media through the relay or directly between the phones.
MEDIA_MODES = ("relay", "direct")
# `set: {record_call: yes}`: the relay records the whole call (docs/relay.md).
RECORD_CALL_VALUES = ("yes", "no", "true", "false", "on", "off")
# `set: {media_repair: ...}`: the legs whose packets the relay repairs (relayed media only).
REPAIR_LEGS = ("caller", "callee", "both", "none")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEADER = re.compile(r"[A-Za-z0-9!%*+`'~._-]+")
_REASONS = {
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    410: "Gone",
    480: "Temporarily Unavailable",
    482: "Loop Detected",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    503: "Service Unavailable",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
}


@dataclass(slots=True)
class GotoRef:
    context: str
    line: int
    column: int
    in_handler: bool


@dataclass(slots=True)
class TargetRef:
    target: Target
    line: int
    column: int


@dataclass(slots=True)
class References:
    """What the actions point at, checked once every context is known."""

    gotos: list[GotoRef] = field(default_factory=list)
    targets: list[TargetRef] = field(default_factory=list)


class ActionParser:
    __slots__ = ("report", "refs")

    def __init__(self, report: Reporter, refs: References) -> None:
        self.report = report
        self.refs = refs

    def template(self, node: YScalar) -> Template | None:
        try:
            return compile_template(node.text)
        except TemplateError as exc:
            self.report.error(node.line, node.column, exc.message, exc.hint, "bad-substitution")
            return None

    def text_template(self, node: YNode, what: str, hint: str = "") -> Template | None:
        scalar = expect_text(node, self.report, what, hint)
        return self.template(scalar) if scalar is not None else None

    def actions(self, node: YNode, in_handler: bool = False) -> tuple[ActionSpec, ...]:
        if not isinstance(node, YSeq):
            self.report.error(
                node.line,
                node.column,
                f"actions must be a list, not {describe(node)}",
                "write each action on its own line starting with '- '",
                "bad-type",
            )
            return ()
        specs: list[ActionSpec] = []
        ended_by: str | None = None
        for item in node.items:
            if ended_by is not None:
                self.report.warning(
                    item.line,
                    item.column,
                    f"this action never runs: the {ended_by} before it ends the rule",
                    "move it before the " + ended_by,
                    "unreachable-action",
                )
                ended_by = ""  # warn once per list
            spec = self.action(item, in_handler)
            if spec is None:
                continue
            specs.append(spec)
            if ended_by is None and isinstance(spec, GotoSpec | TransferSpec | HangupSpec):
                ended_by = type(spec).__name__.removesuffix("Spec").lower()
        return tuple(specs)

    def action(self, item: YNode, in_handler: bool) -> ActionSpec | None:
        if isinstance(item, YScalar) and not item.is_null:
            name, args, key = item.text, None, item
        elif isinstance(item, YMap) and len(item.items) == 1:
            key, args = item.items[0]
            name = key.text
        elif isinstance(item, YMap) and item.items:
            first = item.items[0][0]
            self.report.error(
                item.items[1][0].line,
                item.items[1][0].column,
                f"an action is one name: found {', '.join(item.keys())}",
                f"put options under the action, e.g. '{first.text}: {{to: ..., timeout: 20}}'",
                "bad-action",
            )
            return None
        else:
            self.report.error(
                item.line,
                item.column,
                f"expected an action, not {describe(item)}",
                "",
                "bad-action",
            )
            return None
        if name not in ACTIONS:
            hint = suggest(name, ACTIONS) or "actions: " + ", ".join(ACTIONS)
            self.report.error(
                key.line, key.column, f"unknown action {name!r}", hint, "unknown-action"
            )
            return None
        if args is not None and isinstance(args, YScalar) and args.is_null:
            args = None
        where = args if args is not None else key
        method = getattr(self, "_" + name)
        spec: ActionSpec | None = method(args, where, in_handler)
        return spec

    def _no_args(self, name: str, args: YNode | None) -> bool:
        if args is not None and not (isinstance(args, YMap) and not args.items):
            self.report.error(
                args.line,
                args.column,
                f"{name} takes no options",
                f"write just '- {name}'",
                "unknown-option",
            )
            return False
        return True

    def _answer(self, args: YNode | None, where: YNode, in_handler: bool) -> ActionSpec | None:
        return StaticSpec(where.line, Answer()) if self._no_args("answer", args) else None

    def _echo(self, args: YNode | None, where: YNode, in_handler: bool) -> ActionSpec | None:
        return StaticSpec(where.line, Echo()) if self._no_args("echo", args) else None

    def _target(self, node: YNode) -> Template | None:
        template = self.text_template(node, "a dial target", TARGET_HINT)
        if template is None:
            return None
        assert isinstance(node, YScalar)
        if template.is_literal:
            try:
                target = parse_target(template.source)
            except TargetError as exc:
                self.report.error(node.line, node.column, exc.message, exc.hint, "bad-target")
                return None
            self.refs.targets.append(TargetRef(target, node.line, node.column))
            return template
        head = template.literal_head
        trunk, sep, _ = head.removeprefix("trunk/").partition("/")
        if head.startswith("trunk/") and sep and trunk:
            # trunk/provider/+${dest}: the trunk name is known even if the number is not.
            self.refs.targets.append(
                TargetRef(TrunkTarget(trunk, template.source), node.line, node.column)
            )
        if not head.startswith(("user/", "trunk/", "sip:", "sips:")) and head:
            self.report.error(
                node.line,
                node.column,
                f"unknown dial target {template.source!r}",
                TARGET_HINT,
                "bad-target",
            )
            return None
        return template

    def _dial(self, args: YNode | None, where: YNode, in_handler: bool) -> ActionSpec | None:
        if args is None:
            self.report.error(
                where.line, where.column, "dial needs a target", TARGET_HINT, "bad-action"
            )
            return None
        options = args if isinstance(args, YMap) else None
        to = options.get("to") if options is not None else args
        if options is not None:
            check_keys(options, DIAL_OPTIONS, self.report, "dial option")
            if to is None:
                self.report.error(
                    args.line, args.column, "dial needs 'to:'", TARGET_HINT, "bad-action"
                )
                return None
        assert to is not None
        targets = [self._target(t) for t in as_list(to)]
        if not targets:
            self.report.error(
                to.line, to.column, "dial needs at least one target", TARGET_HINT, "bad-action"
            )
        timeout = number = name = None
        headers: list[tuple[str, Template]] = []
        handlers: dict[str, tuple[ActionSpec, ...] | None] = {}
        if options is not None:
            if (node := options.get("timeout")) is not None:
                timeout = expect_int(node, self.report, "dial timeout", 1, 3600)
            if (node := options.get("caller_id")) is not None:
                number, name = self._caller_id(node)
            if (node := options.get("headers")) is not None:
                headers = self._headers(node)
            for handler in ("on_busy", "on_no_answer", "on_failure"):
                if (node := options.get(handler)) is not None:
                    handlers[handler] = self.actions(node, in_handler=True)
        if any(t is None for t in targets) or not targets:
            return None
        return DialSpec(
            where.line,
            tuple(t for t in targets if t is not None),
            timeout,
            number,
            name,
            tuple(headers),
            handlers.get("on_busy"),
            handlers.get("on_no_answer"),
            handlers.get("on_failure"),
        )

    def _caller_id(self, node: YNode) -> tuple[Template | None, Template | None]:
        if isinstance(node, YScalar):
            return self.text_template(node, "caller_id"), None
        options = expect_map(
            node, self.report, "caller_id", "write caller_id: {number: ..., name: ...}"
        )
        if options is None:
            return None, None
        check_keys(options, ("number", "name"), self.report, "caller_id option")
        number = options.get("number")
        name = options.get("name")
        return (
            self.text_template(number, "caller_id number") if number is not None else None,
            self.text_template(name, "caller_id name") if name is not None else None,
        )

    def _headers(self, node: YNode) -> list[tuple[str, Template]]:
        options = expect_map(node, self.report, "headers", "write headers: {X-Account: '42'}")
        out: list[tuple[str, Template]] = []
        if options is None:
            return out
        for key, value in options.items:
            if not _HEADER.fullmatch(key.text):
                self.report.error(
                    key.line, key.column, f"bad header name {key.text!r}", "", "bad-value"
                )
                continue
            template = self.text_template(value, f"header {key.text}")
            if template is not None:
                out.append((key.text, template))
        return out

    def _hangup(self, args: YNode | None, where: YNode, in_handler: bool) -> ActionSpec | None:
        code: int | None = 480
        reason_node: YNode | None = None
        if isinstance(args, YMap):
            check_keys(args, ("code", "reason"), self.report, "hangup option")
            if (node := args.get("code")) is not None:
                code = expect_int(node, self.report, "hangup code", 400, 699)
            reason_node = args.get("reason")
        elif args is not None:
            code = expect_int(args, self.report, "hangup code", 400, 699)
        if code is None:
            return None
        if reason_node is None:
            return HangupSpec(
                where.line, code, compile_template(_REASONS.get(code, "Call Rejected"))
            )
        reason = self.text_template(reason_node, "hangup reason")
        return HangupSpec(where.line, code, reason) if reason is not None else None

    def _file_option(
        self, args: YNode | None, where: YNode, action: str, keys: tuple[str, ...]
    ) -> tuple[Template | None, YMap | None]:
        if args is None:
            self.report.error(
                where.line,
                where.column,
                f"{action} needs a file",
                f"write '{action}: NAME'",
                "bad-action",
            )
            return None, None
        if isinstance(args, YMap):
            check_keys(args, keys, self.report, f"{action} option")
            node = args.get("file")
            if node is None:
                self.report.error(
                    args.line, args.column, f"{action} needs 'file:'", "", "bad-action"
                )
                return None, args
            return self._sound(node, action), args
        return self._sound(args, action), None

    def _sound(self, node: YNode, action: str) -> Template | None:
        template = self.text_template(node, f"{action} file")
        if template is not None and ".." in template.source.split("/"):
            assert isinstance(node, YScalar)
            # Sound names are looked up under the sounds directory; never let one climb out.
            self.report.error(
                node.line, node.column, f"{action} file may not contain '..'", "", "bad-value"
            )
            return None
        return template

    def _playback(self, args: YNode | None, where: YNode, in_handler: bool) -> ActionSpec | None:
        file, _ = self._file_option(args, where, "playback", ("file",))
        return PlaybackSpec(where.line, file) if file is not None else None

    def _record(self, args: YNode | None, where: YNode, in_handler: bool) -> ActionSpec | None:
        file, options = self._file_option(args, where, "record", ("file", "max_seconds", "beep"))
        max_seconds: int | None = 60
        beep: bool | None = True
        if options is not None:
            if (node := options.get("max_seconds")) is not None:
                max_seconds = expect_int(node, self.report, "record max_seconds", 1, 86400)
            if (node := options.get("beep")) is not None:
                beep = expect_bool(node, self.report, "record beep")
        if file is None or max_seconds is None or beep is None:
            return None
        return RecordSpec(where.line, file, max_seconds, beep)

    def _voicemail(self, args: YNode | None, where: YNode, in_handler: bool) -> ActionSpec | None:
        if args is None:
            return VoicemailSpec(where.line, compile_template("${dest}"))
        menu = False
        if isinstance(args, YMap):
            check_keys(args, ("box", "menu"), self.report, "voicemail option")
            if (node := args.get("menu")) is not None:
                chosen = expect_bool(node, self.report, "voicemail menu")
                if chosen is None:
                    return None
                menu = chosen
            node = args.get("box")
            if node is None:
                # The owner's menu is the caller's own box; leaving a message, the callee's.
                return VoicemailSpec(where.line,
                                     compile_template("${caller}" if menu else "${dest}"), menu)
            args = node
        box = self.text_template(args, "voicemail box")
        return VoicemailSpec(where.line, box, menu) if box is not None else None

    def _set(self, args: YNode | None, where: YNode, in_handler: bool) -> ActionSpec | None:
        hint = "write set: {NAME: VALUE}"
        options = expect_map(args, self.report, "set", hint) if args is not None else None
        if options is None:
            if args is None:
                self.report.error(
                    where.line, where.column, "set needs variables", hint, "bad-action"
                )
            return None
        values: list[tuple[str, Template]] = []
        for key, value in options.items:
            if not _VARIABLE.fullmatch(key.text):
                self.report.error(
                    key.line,
                    key.column,
                    f"bad variable name {key.text!r}",
                    "use letters, digits and '_'",
                    "bad-value",
                )
                continue
            if key.text in READ_ONLY:
                self.report.error(
                    key.line,
                    key.column,
                    f"{key.text!r} is set by the router and cannot be changed",
                    "to route another number, use goto: {context: ..., number: ...}",
                    "read-only-variable",
                )
                continue
            if isinstance(value, YScalar) and value.is_null:
                values.append((key.text, compile_template("")))
                continue
            if (key.text == "media" and isinstance(value, YScalar) and "${" not in value.text
                    and value.text.strip().lower() not in MEDIA_MODES):
                self.report.error(
                    value.line,
                    value.column,
                    f"media {value.text!r} is neither relay nor direct",
                    "write set: {media: direct} for media between the phones, "
                    "relay (the default) through the media relay",
                    "bad-value",
                )
                continue
            if (key.text == "record_call" and isinstance(value, YScalar)
                    and "${" not in value.text
                    and value.text.strip().lower() not in RECORD_CALL_VALUES):
                self.report.error(
                    value.line,
                    value.column,
                    f"record_call {value.text!r} is neither yes nor no",
                    "write set: {record_call: \"yes\"} to record the call in the relay",
                    "bad-value",
                )
                continue
            if (key.text == "media_repair" and isinstance(value, YScalar)
                    and "${" not in value.text
                    and value.text.strip().lower() not in REPAIR_LEGS):
                self.report.error(
                    value.line,
                    value.column,
                    f"media_repair {value.text!r} is not one of {', '.join(REPAIR_LEGS)}",
                    "write set: {media_repair: caller} to repair what the caller sends "
                    "(callee, both or none likewise)",
                    "bad-value",
                )
                continue
            template = self.text_template(value, f"value of {key.text}")
            if template is not None:
                values.append((key.text, template))
        return SetSpec(where.line, tuple(values))

    def _goto(self, args: YNode | None, where: YNode, in_handler: bool) -> ActionSpec | None:
        hint = "write goto: CONTEXT or goto: {context: CONTEXT, number: NUMBER}"
        if args is None:
            self.report.error(where.line, where.column, "goto needs a context", hint, "bad-action")
            return None
        number: Template | None = None
        if isinstance(args, YMap):
            check_keys(args, ("context", "number"), self.report, "goto option")
            context_node = args.get("context")
            if context_node is None:
                self.report.error(
                    args.line, args.column, "goto needs 'context:'", hint, "bad-action"
                )
                return None
            if (node := args.get("number")) is not None:
                number = self.text_template(node, "goto number")
                if number is None:
                    return None
        else:
            context_node = args
        context = expect_text(context_node, self.report, "goto context", hint)
        if context is None:
            return None
        self.refs.gotos.append(GotoRef(context.text, context.line, context.column, in_handler))
        return GotoSpec(context.line, context.column, context.text, number)

    def _transfer(self, args: YNode | None, where: YNode, in_handler: bool) -> ActionSpec | None:
        if args is None:
            self.report.error(
                where.line, where.column, "transfer needs a target", TARGET_HINT, "bad-action"
            )
            return None
        if isinstance(args, YMap):
            check_keys(args, ("to",), self.report, "transfer option")
            node = args.get("to")
            if node is None:
                self.report.error(
                    args.line, args.column, "transfer needs 'to:'", TARGET_HINT, "bad-action"
                )
                return None
            args = node
        target = self._target(args)
        return TransferSpec(where.line, target) if target is not None else None
