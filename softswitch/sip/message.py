"""SIP requests and responses: parsing, header access and serialising.

RFC 3261 section 7 (message format), 8.2.6 (building responses), 18.3
(framing of datagrams) and 20 (headers). The parser reads the start line and
splits the header lines once, checks the headers every SIP element needs
(Via, From, To, Call-ID, CSeq, Content-Length, Max-Forwards) and leaves every
other header as raw text until someone asks for it.

Bad input raises `MessageError` with the status to answer (400, 505, 513).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from softswitch.sip.errors import MessageError
from softswitch.sip.headers import (
    CSeq,
    NameAddr,
    Via,
    display_name_of,
    header_key,
    is_token,
    split_list,
)
from softswitch.sip.uri import URI, parse_uri

REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated",
    200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    422: "Session Interval Too Small", 423: "Interval Too Brief",
    428: "Use Identity Header", 429: "Provide Referrer Identity",
    439: "First Hop Lacks Outbound Support", 469: "Bad Info Package",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete",
    485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    493: "Undecipherable", 494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

# Headers every request and response must carry (RFC 3261 8.1.1).
_MANDATORY = ("via", "from", "to", "call-id", "cseq")
# Control characters other than HT have no place in a header section, and CR
# only as part of a line end (RFC 3261 25.1): searched for once CRLFs are LFs.
_BAD_CHARS_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)
_CRLF = "\r\n"
_LWS = " \t"


@dataclass(slots=True, frozen=True)
class ParserLimits:
    """Bounds that keep a hostile peer from making us parse without end."""

    max_message_size: int = 65536
    max_headers: int = 128
    max_header_line: int = 8192


DEFAULT_LIMITS = ParserLimits()


def new_tag() -> str:
    return secrets.token_hex(5)


def new_branch() -> str:
    # RFC 3261 8.1.1.7: the magic cookie marks a branch unique in space and time.
    return "z9hG4bK" + secrets.token_hex(8)


class Message:
    """Headers in order as `[name, value]` pairs plus a body.

    Header lookup goes through an index from canonical key to positions, built
    while parsing and rebuilt after an edit. Typed views of the headers the
    core uses all the time (Via, From, To, CSeq...) are parsed once and cached.
    """

    __slots__ = ("headers", "body", "_index", "_vias", "_from", "_to", "_cseq")

    def __init__(self, headers: list[list[str]] | None = None, body: bytes = b"") -> None:
        self.headers: list[list[str]] = headers if headers is not None else []
        self.body = body
        self._index: dict[str, list[int]] | None = None
        self._vias: list[Via] | None = None
        self._from: NameAddr | None = None
        self._to: NameAddr | None = None
        self._cseq: CSeq | None = None

    # -- raw header access -------------------------------------------------

    def _positions(self, name: str) -> list[int]:
        index = self._index
        if index is None:
            index = {}
            for i, (hname, _) in enumerate(self.headers):
                index.setdefault(header_key(hname), []).append(i)
            self._index = index
        return index.get(header_key(name), [])

    def get(self, name: str) -> str | None:
        """The first value of header `name` as written, or None."""
        positions = self._positions(name)
        return self.headers[positions[0]][1] if positions else None

    def get_all(self, name: str) -> list[str]:
        """Every line of header `name`, as written."""
        return [self.headers[i][1] for i in self._positions(name)]

    def values(self, name: str) -> list[str]:
        """Every value of a list header, split on commas across all its lines."""
        out: list[str] = []
        for i in self._positions(name):
            out.extend(split_list(self.headers[i][1]))
        return out

    def has(self, name: str) -> bool:
        return bool(self._positions(name))

    def _changed(self, key: str, *, reindex: bool = True) -> None:
        if reindex:
            self._index = None
        if key == "via":
            self._vias = None
        elif key == "from":
            self._from = None
        elif key == "to":
            self._to = None
        elif key == "cseq":
            self._cseq = None

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        """Add a header line; `first=True` puts it before the others of its name."""
        key = header_key(name)
        if first:
            positions = self._positions(name)
            if positions:
                self.headers.insert(positions[0], [name, value])
                self._changed(key)
                return
        # Appending keeps every other position valid: extend the index in
        # place rather than rebuilding it (responses are built by appends).
        index = self._index
        self.headers.append([name, value])
        if index is not None:
            index.setdefault(key, []).append(len(self.headers) - 1)
        self._changed(key, reindex=index is None)

    def set(self, name: str, value: str) -> None:
        """Replace every line of `name` with one line holding `value`."""
        key = header_key(name)
        positions = self._positions(name)
        if len(positions) == 1:
            self.headers[positions[0]] = [self.headers[positions[0]][0], value]
            self._changed(key, reindex=False)
            return
        if not positions:
            self.add(name, value)
            return
        self.headers[positions[0]] = [self.headers[positions[0]][0], value]
        for i in reversed(positions[1:]):
            del self.headers[i]
        self._changed(key)

    def remove(self, name: str) -> None:
        key = header_key(name)
        for i in reversed(self._positions(name)):
            del self.headers[i]
        self._changed(key)

    def extend(self, lines: list[tuple[str, str]]) -> None:
        """Append several header lines at once (a response's fixed headers)."""
        for name, value in lines:
            self.add(name, value)

    def replace_top_via(self, via: Via) -> None:
        """Rewrite the top Via value (after stamping received/rport)."""
        positions = self._positions("via")
        if not positions:
            raise MessageError("missing Via")
        line = self.headers[positions[0]]
        vias = self.vias
        if "," not in line[1]:
            line[1] = str(via)  # the common case: one Via per line
        else:
            self.pop_first_value("via")
            self.add("Via", str(via), first=True)
        vias[0] = via
        self._vias = vias

    def pop_first_value(self, name: str) -> str | None:
        """Remove and return the first value of a list header (a Route, a Via)."""
        positions = self._positions(name)
        if not positions:
            return None
        line = self.headers[positions[0]]
        items = split_list(line[1])
        first = items[0] if items else None
        if len(items) > 1:
            line[1] = ", ".join(items[1:])
        else:
            del self.headers[positions[0]]
        self._changed(header_key(name))
        return first

    # -- typed views -------------------------------------------------------

    @property
    def vias(self) -> list[Via]:
        if self._vias is None:
            self._vias = [Via.parse(v) for v in self.values("via")]
        return self._vias

    @property
    def top_via(self) -> Via:
        vias = self.vias
        if not vias:
            raise MessageError("missing Via")
        return vias[0]

    @property
    def from_addr(self) -> NameAddr:
        if self._from is None:
            self._from = NameAddr.parse(self._required("from"))
        return self._from

    @property
    def to_addr(self) -> NameAddr:
        if self._to is None:
            self._to = NameAddr.parse(self._required("to"))
        return self._to

    @property
    def from_tag(self) -> str | None:
        return self.from_addr.params.get("tag")

    @property
    def to_tag(self) -> str | None:
        return self.to_addr.params.get("tag")

    @property
    def call_id(self) -> str:
        return self._required("call-id").strip()

    @property
    def cseq(self) -> CSeq:
        if self._cseq is None:
            self._cseq = CSeq.parse(self._required("cseq"))
        return self._cseq

    @property
    def contacts(self) -> list[NameAddr]:
        return [NameAddr.parse(v) for v in self.values("contact")]

    def _required(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise MessageError(f"missing {display_name_of(key)} header")
        return value

    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        self.body = body
        if content_type is not None:
            self.set("Content-Type", content_type)
        elif not body:
            self.remove("content-type")
        self.set("Content-Length", str(len(body)))

    # -- serialising -------------------------------------------------------

    def start_line(self) -> str:
        raise NotImplementedError  # overridden by Request and Response

    def to_bytes(self) -> bytes:
        parts = [self.start_line()]
        parts.extend(f"{name}: {value}" for name, value in self.headers)
        parts.append("")
        parts.append("")
        return _CRLF.join(parts).encode("utf-8") + self.body

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def __str__(self) -> str:
        return self.to_bytes().decode("utf-8", "replace")


class Request(Message):
    __slots__ = ("method", "uri", "version")

    def __init__(self, method: str, uri: URI, headers: list[list[str]] | None = None,
                 body: bytes = b"", version: str = "SIP/2.0") -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = uri
        self.version = version

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    @property
    def branch(self) -> str | None:
        return self.top_via.branch

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    __slots__ = ("status", "reason", "version")

    def __init__(self, status: int, reason: str | None = None,
                 headers: list[list[str]] | None = None, body: bytes = b"",
                 version: str = "SIP/2.0") -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = REASON_PHRASES.get(status, "Unknown") if reason is None else reason
        self.version = version

    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


class PackedResponse(Response):
    """A response kept only to be sent again: its bytes, status and Call-ID.

    A completed transaction lives for 32 s (Timer J) only to answer
    retransmissions; keeping the parsed message for that long keeps a
    hundred objects per transaction alive and makes full garbage
    collections long under load.
    """

    __slots__ = ("_wire",)

    def __init__(self, response: Response) -> None:
        call_id = response.get("call-id")
        super().__init__(response.status, response.reason,
                         [["Call-ID", call_id]] if call_id is not None else [])
        self._wire = response.to_bytes()

    def to_bytes(self) -> bytes:
        return self._wire


def make_response(request: Request, status: int, reason: str | None = None,
                  *, to_tag: str | None = None) -> Response:
    """Build a response to `request` per RFC 3261 8.2.6.

    Via, From, Call-ID and CSeq are copied; To too, with `to_tag` added when
    the request had no tag (a 100 Trying never gets one). Record-Route is
    copied into responses that may create a dialog (12.1.1).
    """
    headers: list[list[str]] = []
    for name, value in request.headers:
        key = header_key(name)
        if key in ("via", "from", "call-id", "cseq"):
            headers.append([name, value])
        elif key == "to":
            if status > 100 and to_tag and "tag" not in request.to_addr.params:
                value = f"{value};tag={to_tag}"
            headers.append([name, value])
        elif key == "record-route" and status < 300 and status > 100:
            headers.append([name, value])
        elif key == "timestamp" and status == 100:
            headers.append([name, value])  # RFC 3261 8.2.6.1
    response = Response(status, reason, headers)
    response.headers.append(["Content-Length", "0"])
    return response


# -- parsing ------------------------------------------------------------------


# Header names seen before, mapped to their lookup key: most messages use the
# same few dozen spellings, and a hit saves checking the name is a token.
_KNOWN_NAMES: dict[str, str] = {}
_KNOWN_NAMES_MAX = 1024


def _name_key(name: str, line: str) -> str:
    key = _KNOWN_NAMES.get(name)
    if key is not None:
        return key
    if not name or not is_token(name):
        raise MessageError(f"malformed header line {line[:40]!r}")
    key = header_key(name)
    if len(_KNOWN_NAMES) < _KNOWN_NAMES_MAX:
        _KNOWN_NAMES[name] = key
    return key


def _unfold(lines: list[str], max_line: int) -> list[str]:
    """Join continuation lines to the header line they continue.

    RFC 3261 7.3.1: a line starting with white space continues the previous
    header; the line break and the white space around it become one space.
    """
    out = [lines[0]]
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if len(out) == 1:
                raise MessageError("continuation line before any header")
            joined = f"{out[-1].rstrip(_LWS)} {line.strip(_LWS)}"
            if len(joined) > max_line:
                raise MessageError("header line too long")
            out[-1] = joined
        else:
            out.append(line)
    return out


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    end = data.find(b"\r\n\r\n")
    # The blank line may be a bare LF one, ahead of a CRLFCRLF in the body.
    lf_end = data.find(b"\n\n", 0, end if end >= 0 else len(data))
    if lf_end >= 0:
        return data[:lf_end], data[lf_end + 2 :]
    if end >= 0:
        return data[:end], data[end + 4 :]
    # A datagram may end right after its last header line.
    if data.endswith(b"\r\n"):
        return data[:-2], b""
    if data.endswith(b"\n"):
        return data[:-1], b""
    raise MessageError("no end of headers")


def parse_message(data: bytes, limits: ParserLimits = DEFAULT_LIMITS,
                  *, datagram: bool = True) -> Request | Response:
    """Parse one whole message; raise MessageError with the status to answer.

    For a datagram the body is cut to Content-Length (RFC 3261 18.3); a stream
    framer passes exactly one message, so the body must match it.
    """
    if len(data) > limits.max_message_size:
        raise MessageError("message too large", 513)
    if not data.strip():
        raise MessageError("empty message")
    head_bytes, body = _split_head(data)
    try:
        head = head_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise MessageError("header section is not UTF-8") from None
    # Line ends are CRLF, or LF from lenient senders.
    head = head.replace("\r\n", "\n")
    if _BAD_CHARS_RE.search(head):
        raise MessageError("control character in header")
    lines = head.split("\n")
    max_line = limits.max_header_line
    if len(head) > max_line and max(map(len, lines)) > max_line:
        raise MessageError("header line too long")
    if "\n " in head or "\n\t" in head:
        lines = _unfold(lines, max_line)
    start = lines[0]
    if len(lines) - 1 > limits.max_headers:
        raise MessageError("too many headers")
    headers: list[list[str]] = []
    index: dict[str, list[int]] = {}
    known_names = _KNOWN_NAMES
    for count, line in enumerate(lines[1:]):
        name, colon, value = line.partition(":")
        if not colon:
            raise MessageError(f"malformed header line {line[:40]!r}")
        key = known_names.get(name)
        if key is None:
            name = name.rstrip(" \t")
            key = _name_key(name, line)
        positions = index.get(key)
        if positions is None:
            index[key] = [count]
        else:
            positions.append(count)
        headers.append([name, value.strip(" \t")])

    message: Request | Response
    if start.startswith("SIP/") or start[:4].upper() == "SIP/":
        message = _parse_status_line(start, headers)
    else:
        message = _parse_request_line(start, headers)
    message._index = index

    for key in _MANDATORY:
        if key not in index:
            raise MessageError(f"missing {display_name_of(key)} header")
    call_id = headers[index["call-id"][0]][1]
    if not call_id or " " in call_id or "\t" in call_id:
        raise MessageError("bad Call-ID")
    if len(index["call-id"]) > 1 or len(index["cseq"]) > 1 or len(index["from"]) > 1 \
            or len(index["to"]) > 1:
        raise MessageError("duplicate Call-ID, CSeq, From or To header")
    cseq = message.cseq
    if isinstance(message, Request) and cseq.method != message.method:
        raise MessageError("CSeq method does not match the request method")
    message.top_via  # noqa: B018 - parse the Via now: a bad Via is a 400
    message.from_addr  # noqa: B018
    message.to_addr  # noqa: B018

    cl_positions = index.get("content-length")
    if cl_positions:
        if len(cl_positions) > 1:
            raise MessageError("duplicate Content-Length")
        text = headers[cl_positions[0]][1]
        if not text.isascii() or not text.isdigit() or len(text) > 9:
            raise MessageError("bad Content-Length")
        length = int(text)
        if length > len(body):
            raise MessageError("body shorter than Content-Length")
        if length < len(body):
            if not datagram:
                raise MessageError("body longer than Content-Length")
            body = body[:length]
    elif not datagram and body:
        raise MessageError("missing Content-Length on a stream")
    mf_positions = index.get("max-forwards")
    if mf_positions:
        text = headers[mf_positions[0]][1]
        if not text.isascii() or not text.isdigit() or int(text) > 255:
            raise MessageError("bad Max-Forwards")
    message.body = body
    return message


def _parse_request_line(line: str, headers: list[list[str]]) -> Request:
    parts = line.split(" ")
    if len(parts) != 3:
        raise MessageError("malformed request line")
    method, uri_text, version = parts
    if not is_token(method):
        raise MessageError("bad method")
    if not _VERSION_RE.fullmatch(version):
        raise MessageError("malformed request line")
    if version.upper() != "SIP/2.0":
        raise MessageError(f"unsupported version {version}", 505)
    return Request(method, parse_uri(uri_text), headers, b"", "SIP/2.0")


def _parse_status_line(line: str, headers: list[list[str]]) -> Response:
    version, _, rest = line.partition(" ")
    if not _VERSION_RE.fullmatch(version):
        raise MessageError("malformed status line")
    if version.upper() != "SIP/2.0":
        raise MessageError(f"unsupported version {version}", 505)
    code, _, reason = rest.partition(" ")
    if len(code) != 3 or not code.isascii() or not code.isdigit() or code[0] not in "123456":
        raise MessageError("bad status code")
    return Response(int(code), reason, headers, b"", "SIP/2.0")


# -- answering what we could not parse -----------------------------------------

_SALVAGE_KEYS = ("via", "from", "to", "call-id", "cseq")


def error_response(data: bytes, error: MessageError) -> Response | None:
    """A response to bytes that failed to parse, or None when none may be sent.

    RFC 3261 16.3/18.2.1 only let us answer a request whose Via we can read;
    responses and ACKs are never answered.
    """
    try:
        text = data[: 65536].decode("utf-8", "replace")
        head = text.split("\r\n\r\n", 1)[0].split("\n\n", 1)[0]
        lines = head.split("\n")
        method = lines[0].split(" ", 1)[0]
        if not method or not is_token(method) or method.upper().startswith("SIP/") \
                or method == "ACK":
            return None
        headers: list[list[str]] = []
        salvaging = False  # whether the last header line was kept
        for raw in lines[1:200]:
            line = raw.rstrip("\r")
            # A control character (a bare CR, a NUL) copied into our answer
            # would let the sender inject header lines: leave such lines out.
            clean = not _BAD_CHARS_RE.search(line)
            if line[:1] in (" ", "\t"):
                if salvaging:
                    if clean:
                        headers[-1][1] += " " + line.strip()
                    else:
                        headers.pop()
                        salvaging = False
                continue
            name, colon, value = line.partition(":")
            salvaging = bool(colon) and clean and header_key(name.strip()) in _SALVAGE_KEYS
            if salvaging:
                headers.append([name.strip(), value.strip()])
        vias = [v for n, val in headers if header_key(n) == "via" for v in split_list(val)]
        if not vias:
            return None
        Via.parse(vias[0])  # must be readable to route the answer back
    except (MessageError, ValueError, IndexError):
        return None
    reason = error.reason.replace("\r", " ").replace("\n", " ")[:80]
    if not reason.isprintable():
        reason = REASON_PHRASES.get(error.status, "Bad Request")
    response = Response(error.status, reason, headers)
    response.headers.append(["Content-Length", "0"])
    return response
