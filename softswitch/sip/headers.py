"""Header names and the structured header values a SIP core reads.

RFC 3261 section 7.3 and 25: case-insensitive names with compact forms,
comma-separated lists (split outside quoted strings and <...>), header
parameters, quoted strings with escapes, name-addr / addr-spec
(From, To, Contact, Route, Record-Route...), Via and CSeq.

Values are parsed only when asked for: the message keeps raw text and these
classes turn it into structure on demand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from softswitch.sip.errors import MessageError
from softswitch.sip.uri import URI, SipURI, parse_host_port, parse_uri

# RFC 3261 7.3.3 and the IANA registry of compact forms.
COMPACT_FORMS: dict[str, str] = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

# How we spell the headers we write ourselves.
_DISPLAY_NAMES: dict[str, str] = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "rack": "RAck",
    "rseq": "RSeq",
}

# Headers whose values form a comma-separated list (RFC 3261 7.3.1). The
# others (Authorization, Date, WWW-Authenticate, ...) may contain commas
# that do not separate values.
LIST_HEADERS = frozenset({
    "via", "contact", "route", "record-route", "path", "service-route",
    "allow", "supported", "require", "proxy-require", "unsupported",
    "accept", "accept-encoding", "accept-language", "allow-events",
    "content-encoding", "in-reply-to", "alert-info", "call-info",
    "error-info", "warning", "reason", "accept-contact", "reject-contact",
    "request-disposition", "security-client", "security-server",
    "security-verify", "p-asserted-identity", "history-info",
})

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_LWS = " \t"


def header_key(name: str) -> str:
    """The canonical lookup key of a header name: lower case, long form."""
    key = name.lower()
    return COMPACT_FORMS.get(key, key) if len(key) == 1 else key


def display_name_of(key: str) -> str:
    """How to write a header whose key is `key` (`call-id` -> `Call-ID`)."""
    known = _DISPLAY_NAMES.get(key)
    return known if known else "-".join(part.capitalize() for part in key.split("-"))


def is_token(text: str) -> bool:
    return _TOKEN_RE.fullmatch(text) is not None


def split_list(value: str) -> list[str]:
    """Split a list header value on commas outside quotes and angle brackets."""
    if "," not in value:
        stripped = value.strip(_LWS)
        return [stripped] if stripped else []
    items: list[str] = []
    start = 0
    in_quotes = in_angle = False
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if in_quotes:
            if c == "\\":
                i += 1
            elif c == '"':
                in_quotes = False
        elif c == '"':
            in_quotes = True
        elif c == "<":
            in_angle = True
        elif c == ">":
            in_angle = False
        elif c == "," and not in_angle:
            items.append(value[start:i].strip(_LWS))
            start = i + 1
        i += 1
    if in_quotes:
        raise MessageError("unterminated quoted string in header list")
    items.append(value[start:].strip(_LWS))
    return [item for item in items if item]


_QUOTED_RE = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.DOTALL)


def read_quoted(text: str, pos: int) -> tuple[str, int]:
    """Read a quoted string starting at `text[pos] == '"'`.

    Returns the unescaped content and the index after the closing quote.
    """
    m = _QUOTED_RE.match(text, pos)
    if m is None:
        raise MessageError("unterminated quoted string")
    content = m.group(1)
    if "\\" in content:
        content = _QUOTED_PAIR_RE.sub(r"\1", content)
    return content, m.end()


def quote(text: str) -> str:
    """Write `text` as a quoted string, escaping quotes and backslashes."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# One `;name[=value]` with the SWS that RFC 3261 25.1 allows around ";" and
# "=" (SEMI = SWS ";" SWS); a value is a quoted string or runs to LWS or ";".
_PARAM_RE = re.compile(
    r'[ \t]*;[ \t]*([A-Za-z0-9\-.!%*_+`\'~]*)[ \t]*'
    r'(?:(=)[ \t]*(?:("(?:[^"\\]|\\.)*")|([^; \t]*)))?',
    re.DOTALL,
)
# Characters no unquoted parameter value may hold (besides non-printables).
_VALUE_SPECIALS_RE = re.compile(r'[",<>]')


def parse_params(text: str, pos: int = 0) -> dict[str, str | None]:
    """Parse header parameters `;name[=value]...` from `text[pos:]`.

    Names are lower-cased; quoted values keep their quotes so that
    serialising gives the same text back (use `unquote_param` to read them).
    """
    params: dict[str, str | None] = {}
    n = len(text)
    i = pos
    match = _PARAM_RE.match
    while i < n:
        m = match(text, i)
        if m is None:
            if text[i:].strip(_LWS):
                raise MessageError(f"expected ';' in parameters {text[pos:]!r}")
            break
        name, eq, quoted, value = m.groups()
        if not name:
            raise MessageError(f"bad parameter name in {text[pos:]!r}")
        if quoted is not None:
            value = quoted
        elif eq and (not value or not value.isprintable() or _VALUE_SPECIALS_RE.search(value)):
            # host values such as received=[::1] are not tokens, so check
            # only for what cannot appear outside quotes.
            if value.startswith('"'):
                raise MessageError("unterminated quoted string")
            raise MessageError(f"bad value for parameter {name!r}")
        params[name.lower()] = value
        i = m.end()
    return params


def unquote_param(value: str | None) -> str | None:
    if value is not None and value.startswith('"'):
        return read_quoted(value, 0)[0]
    return value


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


@dataclass(slots=True, eq=False)
class NameAddr:
    """`["display" ]<uri>;params` or `uri;params` (From, To, Contact, Route...).

    `wildcard` is the `*` of `Contact: *`.
    """

    uri: URI | None
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    angle: bool = True
    wildcard: bool = False

    @classmethod
    def parse(cls, value: str) -> NameAddr:
        text = value.strip(_LWS)
        if text == "*":
            return cls(None, wildcard=True, angle=False)
        display: str | None = None
        i = 0
        if text.startswith('"'):
            display, i = read_quoted(text, 0)
            while i < len(text) and text[i] in _LWS:
                i += 1
            if i >= len(text) or text[i] != "<":
                raise MessageError("quoted display name without <uri>")
        lt = text.find("<", i)
        if lt >= 0 and (display is not None or '"' not in text[i:lt]):
            if display is None:
                words = text[i:lt].strip(_LWS)
                display = words or None
                if display is not None and not all(is_token(w) for w in display.split()):
                    raise MessageError(f"bad display name {display!r}")
            gt = text.find(">", lt)
            if gt < 0:
                raise MessageError("unterminated <uri>")
            uri = parse_uri(text[lt + 1 : gt])
            return cls(uri, display, parse_params(text, gt + 1), True)
        # addr-spec: parameters after the URI belong to the header (RFC 3261 20.10).
        semi = text.find(";")
        uri_text = text if semi < 0 else text[:semi]
        if not uri_text or any(c in uri_text for c in _LWS + "<>\""):
            raise MessageError(f"bad address {value!r}")
        uri = parse_uri(uri_text)
        params = parse_params(text, semi) if semi >= 0 else {}
        return cls(uri, None, params, False)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def sip_uri(self) -> SipURI:
        """The URI as a SIP URI, or MessageError if it is another kind."""
        if not isinstance(self.uri, SipURI):
            raise MessageError(f"expected a SIP URI, got {self.uri}")
        return self.uri

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        if self.angle or self.display_name is not None:
            head = f"{quote(self.display_name)} " if self.display_name is not None else ""
            return f"{head}<{self.uri}>{format_params(self.params)}"
        return f"{self.uri}{format_params(self.params)}"

    def copy(self) -> NameAddr:
        uri = self.uri.copy() if isinstance(self.uri, SipURI) else self.uri
        return NameAddr(uri, self.display_name, dict(self.params), self.angle, self.wildcard)


# sent-protocol (with the SWS RFC 3261 allows around each "/"), then the
# transport and the sent-by up to the first parameter.
_VIA_RE = re.compile(r"[Ss][Ii][Pp][ \t]*/[ \t]*2\.0[ \t]*/[ \t]*([^ \t]*)[ \t]*([^;]*)")


@dataclass(slots=True, eq=False)
class Via:
    """One Via value: `SIP/2.0/UDP host:port;branch=...;rport;received=...`."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str) -> Via:
        text = value.strip(_LWS)
        m = _VIA_RE.match(text)
        if m is None:
            raise MessageError(f"bad Via protocol {value!r}")
        transport_text, sent_by = m.groups()
        transport = transport_text.upper()
        if not transport or not is_token(transport):
            raise MessageError(f"bad Via transport {value!r}")
        sent_by = sent_by.rstrip(_LWS)
        if not sent_by:
            raise MessageError(f"Via without sent-by {value!r}")
        if " " in sent_by or "\t" in sent_by:
            sent_by = sent_by.replace(" ", "").replace("\t", "")
        host, port = parse_host_port(sent_by)
        end = m.end()
        params = parse_params(text, end) if end < len(text) else {}
        return cls(transport, host, port, params)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"SIP/2.0/{self.transport} {self.sent_by}{format_params(self.params)}"


@dataclass(slots=True, frozen=True)
class CSeq:
    seq: int
    method: str

    @classmethod
    def parse(cls, value: str) -> CSeq:
        parts = value.split()
        if len(parts) != 2:
            raise MessageError(f"bad CSeq {value!r}")
        number, method = parts
        # RFC 3261 8.1.1.5: a 32-bit unsigned integer.
        if not number.isascii() or not number.isdigit() or len(number) > 10 \
                or int(number) > 0xFFFFFFFF:
            raise MessageError(f"bad CSeq number {number!r}")
        if not is_token(method):
            raise MessageError(f"bad CSeq method {method!r}")
        return cls(int(number), method)

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"
