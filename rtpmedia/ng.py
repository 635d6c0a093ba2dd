"""rtpengine's ng control protocol on the wire: a cookie, a space, a bencoded dictionary.

Shared by the relay (which answers) and the softswitch (which asks); pure
and free of numpy, so the signalling process may import it. Bencoding is
fastbencode's (a Rust extension with a pure-Python fallback): the protocol
is bencode and nothing else, and it is faster than any we would write.

Values travel as bytes; `text` turns the dictionary's keys and byte strings
into `str` for the code that reads it, and `encode` accepts either.
"""

from __future__ import annotations

from typing import Any

import fastbencode

MAX_DATAGRAM = 65535


class NgError(ValueError):
    """A datagram that is not an ng message: no cookie, or not a bencoded dictionary."""


def decode(datagram: bytes) -> tuple[bytes, dict[str, Any]]:
    """The cookie and the message of one datagram, with str keys and values."""
    cookie, space, body = datagram.partition(b" ")
    if not space or not cookie or len(cookie) > 64:
        raise NgError("no cookie")
    try:
        value = fastbencode.bdecode(body)
    except (ValueError, TypeError, IndexError, KeyError, OverflowError) as exc:
        # Kamailio's module and rtpengine itself write dictionary keys in the
        # order they add them, which strict bencode (and fastbencode) refuses.
        try:
            value = _decode_any_order(body)
        except NgError:
            raise NgError(f"not bencode: {exc}") from None
    if not isinstance(value, dict):
        raise NgError("not a dictionary")
    return cookie, text(value)


def encode(cookie: bytes, message: dict[str, Any]) -> bytes:
    """One datagram: `cookie` and `message` (str or bytes keys and values, ints, lists, dicts)."""
    return cookie + b" " + fastbencode.bencode(_bytes(message))


def text(value: Any) -> Any:
    """Bytes to str (UTF-8, undecodable bytes kept as surrogates), all the way down."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, dict):
        return {text(k): text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [text(v) for v in value]
    return value


def _bytes(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, dict):
        return {_bytes(k): _bytes(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_bytes(v) for v in value]
    if isinstance(value, bool):
        return int(value)
    return value


_MAX_DEPTH = 32


def _decode_any_order(data: bytes) -> Any:
    """Bencode with dictionary keys in any order (the slow path for unsorted senders)."""
    value, end = _item(data, 0, 0)
    if end != len(data):
        raise NgError("trailing data")
    return value


def _item(data: bytes, i: int, depth: int) -> tuple[Any, int]:
    if depth > _MAX_DEPTH or i >= len(data):
        raise NgError("truncated or too deep")
    head = data[i:i + 1]
    if head == b"i":
        end = data.find(b"e", i)
        digits = data[i + 1:end] if end > 0 else b""
        magnitude = digits[1:] if digits[:1] == b"-" else digits  # one sign at most
        if not magnitude.isdigit() or len(digits) > 24:
            raise NgError("bad integer")
        return int(digits), end + 1
    if head.isdigit():
        colon = data.find(b":", i)
        if colon < 0 or not data[i:colon].isdigit() or colon - i > 9:
            raise NgError("bad string length")
        start = colon + 1
        stop = start + int(data[i:colon])
        if stop > len(data):
            raise NgError("truncated string")
        return data[start:stop], stop
    if head == b"l":
        out: list[Any] = []
        i += 1
        while data[i:i + 1] != b"e":
            value, i = _item(data, i, depth + 1)
            out.append(value)
        return out, i + 1
    if head == b"d":
        result: dict[bytes, Any] = {}
        i += 1
        while data[i:i + 1] != b"e":
            key, i = _item(data, i, depth + 1)
            if not isinstance(key, bytes):
                raise NgError("dictionary key not a string")
            result[key], i = _item(data, i, depth + 1)
        return result, i + 1
    raise NgError("not bencode")
