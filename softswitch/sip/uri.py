"""SIP, SIPS and TEL URIs: parsing, serialising and comparing.

Implements RFC 3261 section 19.1 (SIP and SIPS URIs, with the comparison
rules of 19.1.4) and the parts of RFC 3966 (TEL URIs) a softswitch meets.
Other absolute URIs (`urn:`, `mailto:`...) are kept as opaque `AbsoluteURI`s
so that a request to them can be answered with 416 rather than 400.

A parsed URI keeps its components as received, escapes included, and
`str(uri)` writes them back; only the scheme and parameter names come back
lower-cased (both are case-insensitive). Comparison unescapes percent-encoding
first, so `sip:%61lice@host` equals `sip:alice@host`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from softswitch.sip.errors import MessageError

# RFC 3261 25.1: user = 1*(unreserved / escaped / user-unreserved),
# password likewise with its own set; params and headers have theirs.
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_ESCAPED = r"%[0-9A-Fa-f]{2}"


def _chars_re(allowed: str, *, nonempty: bool) -> re.Pattern[str]:
    # `(?:[allowed]|escaped)+` unrolled: the same language, without an
    # alternation tried at every character.
    body = rf"[{allowed}]*(?:{_ESCAPED}[{allowed}]*)*"
    return re.compile(rf"(?=[{allowed}%]){body}" if nonempty else body)


_USER_RE = _chars_re(rf"{_UNRESERVED}&=+$,;?/", nonempty=True)
_PASSWORD_RE = _chars_re(rf"{_UNRESERVED}&=+$,", nonempty=False)
_PARAM_CHARS_RE = _chars_re(rf"{_UNRESERVED}\[\]/:&+$", nonempty=True)
_HEADER_CHARS_RE = _chars_re(rf"{_UNRESERVED}\[\]/?:+$", nonempty=False)
# Labels of letters and digits with inner hyphens, an optional final dot.
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9]+(?:-+[A-Za-z0-9]+)*"
                          r"(?:\.[A-Za-z0-9]+(?:-+[A-Za-z0-9]+)*)*\.?")
_IPV4_RE = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
_IPV6_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]")
_ESCAPE_RE = re.compile(_ESCAPED)
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_TEL_NUMBER_RE = re.compile(r"\+?[0-9A-Fa-f*#\-.()]+")
_TEL_VISUAL = str.maketrans("", "", "-.()")

# RFC 3261 19.1.4: these parameters break equality when present in only one
# URI. The rules leave out `transport`, but the section's own examples list
# `sip:bob@biloxi.com` and `sip:bob@biloxi.com;transport=udp` as different
# (they can resolve to different transports), and so do we.
_MUST_MATCH_IF_EITHER = ("user", "ttl", "method", "maddr", "transport")


def _unescape(text: str) -> str:
    # surrogateescape keeps escaped octets that are not UTF-8 apart
    # (`%fe` and `%ff` would both become U+FFFD with the default "replace").
    return unquote(text, errors="surrogateescape") if "%" in text else text


def _split_params(text: str, what: str) -> dict[str, str | None]:
    """Parse `;name[=value]...` (the leading `;` already removed)."""
    params: dict[str, str | None] = {}
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        if not name or not _PARAM_CHARS_RE.fullmatch(name):
            raise MessageError(f"bad {what} parameter {item!r}")
        if eq and not _PARAM_CHARS_RE.fullmatch(value):
            raise MessageError(f"bad {what} parameter value {item!r}")
        params[name.lower()] = value if eq else None
    return params


def parse_host_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise MessageError(f"bad IPv6 reference {text!r}")
        host, rest = text[: end + 1], text[end + 1 :]
        if not _IPV6_RE.fullmatch(host):
            raise MessageError(f"bad IPv6 reference {host!r}")
        if rest and not rest.startswith(":"):
            raise MessageError(f"bad host {text!r}")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_ = text.partition(":")
        port_text = port_text_ if colon else None
        if _IPV4_RE.fullmatch(host):
            a, b, c, d = host.split(".")
            if int(a) > 255 or int(b) > 255 or int(c) > 255 or int(d) > 255:
                raise MessageError(f"bad IPv4 address {host!r}")
        elif not _HOSTNAME_RE.fullmatch(host):
            raise MessageError(f"bad host {host!r}")
    port: int | None = None
    if port_text is not None:
        if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
            raise MessageError(f"bad port {port_text!r}")
        port = int(port_text)
        if port > 65535:
            raise MessageError(f"port out of range {port}")
    return host, port


@dataclass(slots=True, eq=False)
class SipURI:
    """A `sip:` or `sips:` URI. Parameter names are stored lower-cased."""

    scheme: str
    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> SipURI:
        scheme, colon, rest = text.partition(":")
        lscheme = scheme.lower()
        if not colon or lscheme not in ("sip", "sips"):
            raise MessageError(f"not a SIP URI {text!r}")
        # The user part may hold "?" and ";" but no URI part after it may
        # hold "@", so the last "@" ends the userinfo.
        user = password = None
        at = rest.rfind("@")
        if at >= 0:
            userinfo, rest = rest[:at], rest[at + 1 :]
            user, pcolon, pw = userinfo.partition(":")
            if not _USER_RE.fullmatch(user):
                raise MessageError(f"bad user part in {text!r}")
            if pcolon:
                if not _PASSWORD_RE.fullmatch(pw):
                    raise MessageError(f"bad password in {text!r}")
                password = pw
        rest, qmark, header_text = rest.partition("?")
        hostport, semi, param_text = rest.partition(";")
        if not hostport:
            raise MessageError(f"missing host in {text!r}")
        host, port = parse_host_port(hostport)
        params = _split_params(param_text, "URI") if semi else {}
        headers: dict[str, str] = {}
        if qmark:
            for item in header_text.split("&"):
                name, eq, value = item.partition("=")
                if not name or not eq or not _HEADER_CHARS_RE.fullmatch(name) \
                        or not _HEADER_CHARS_RE.fullmatch(value):
                    raise MessageError(f"bad URI header {item!r}")
                headers[name] = value
        return cls(lscheme, host, user, password, port, params, headers)

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts += (":", self.password)
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts += (":", str(self.port))
        for name, value in self.params.items():
            parts += (";", name) if value is None else (";", name, "=", value)
        if self.headers:
            parts += ("?", "&".join(f"{k}={v}" for k, v in self.headers.items()))
        return "".join(parts)

    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return value.lower() if value else None

    @property
    def host_port(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def host_no_brackets(self) -> str:
        """The host as a socket API wants it (`::1`, not `[::1]`)."""
        return self.host[1:-1] if self.host.startswith("[") else self.host

    @property
    def aor(self) -> str:
        """`user@host` with escapes removed and the host lower-cased (RFC 3261 10.3)."""
        host = self.host.lower()
        if self.user is None:
            return host
        try:
            user = unquote(self.user, errors="strict")
        except UnicodeDecodeError:
            # Octets that are not UTF-8 stay escaped (in one spelling): a key
            # with lone surrogates could not be stored or logged.
            user = _ESCAPE_RE.sub(lambda m: m.group().upper(), self.user)
        return f"{user}@{host}"

    def copy(self) -> SipURI:
        return SipURI(self.scheme, self.host, self.user, self.password, self.port,
                      dict(self.params), dict(self.headers))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SipURI):
            return NotImplemented
        if self.scheme != other.scheme or self.port != other.port:
            return False
        # User and password compare case-sensitively once unescaped; the host not.
        if _unescape(self.user or "") != _unescape(other.user or "") \
                or (self.user is None) != (other.user is None):
            return False
        if _unescape(self.password or "") != _unescape(other.password or ""):
            return False
        if self.host.lower() != other.host.lower():
            return False
        mine, theirs = self._cmp_params(), other._cmp_params()
        for name in _MUST_MATCH_IF_EITHER:
            if (name in mine) != (name in theirs):
                return False
        for name in mine.keys() & theirs.keys():
            if mine[name] != theirs[name]:
                return False
        return self._cmp_headers() == other._cmp_headers()

    def __hash__(self) -> int:
        return hash((self.scheme, _unescape(self.user or ""), self.host.lower(), self.port))

    def _cmp_params(self) -> dict[str, str | None]:
        return {_unescape(k).lower(): (None if v is None else _unescape(v).lower())
                for k, v in self.params.items()}

    def _cmp_headers(self) -> dict[str, str]:
        return {_unescape(k).lower(): _unescape(v) for k, v in self.headers.items()}


@dataclass(slots=True, eq=False)
class TelURI:
    """A `tel:` URI (RFC 3966): a global (`+...`) or local number and parameters."""

    number: str
    params: dict[str, str | None] = field(default_factory=dict)
    scheme: str = "tel"

    @classmethod
    def parse(cls, text: str) -> TelURI:
        scheme, colon, rest = text.partition(":")
        if not colon or scheme.lower() != "tel":
            raise MessageError(f"not a TEL URI {text!r}")
        number, semi, param_text = rest.partition(";")
        if not _TEL_NUMBER_RE.fullmatch(number):
            raise MessageError(f"bad telephone number in {text!r}")
        return cls(number, _split_params(param_text, "TEL URI") if semi else {})

    @property
    def digits(self) -> str:
        """The number without visual separators (RFC 3966 section 5.1.1)."""
        return self.number.translate(_TEL_VISUAL)

    def __str__(self) -> str:
        parts = ["tel:", self.number]
        for name, value in self.params.items():
            parts += (";", name) if value is None else (";", name, "=", value)
        return "".join(parts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TelURI):
            return NotImplemented
        # RFC 3966 4: numbers compare without visual separators, parameters
        # by name and value case-insensitively and in any order.
        def norm(uri: TelURI) -> dict[str, str | None]:
            return {k: (None if v is None else _unescape(v).lower()) for k, v in uri.params.items()}
        return self.digits.lower() == other.digits.lower() and norm(self) == norm(other)

    def __hash__(self) -> int:
        return hash(self.digits.lower())


@dataclass(slots=True, frozen=True)
class AbsoluteURI:
    """Any other absolute URI, kept verbatim (compared as text)."""

    text: str

    @property
    def scheme(self) -> str:
        return self.text.partition(":")[0].lower()

    def __str__(self) -> str:
        return self.text


URI = SipURI | TelURI | AbsoluteURI


def parse_uri(text: str) -> URI:
    """Parse any URI a SIP message may carry; raise MessageError if malformed."""
    scheme, colon, rest = text.partition(":")
    lscheme = scheme.lower()
    if lscheme in ("sip", "sips") and rest:
        return SipURI.parse(text)
    if not colon or not _SCHEME_RE.fullmatch(scheme) or not rest:
        raise MessageError(f"bad URI {text!r}")
    if lscheme == "tel":
        return TelURI.parse(text)
    if any(c.isspace() for c in text) or not text.isprintable():
        raise MessageError(f"bad URI {text!r}")
    return AbsoluteURI(text)


def parse_sip_uri(text: str) -> SipURI:
    """Parse a URI that must be `sip:` or `sips:` (Contact, Route, Via-derived)."""
    return SipURI.parse(text)
