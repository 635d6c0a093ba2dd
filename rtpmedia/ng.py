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
        # rtpengine answers, and Kamailio's module asks, with dictionary keys
        # in insertion order, which strict bencode (and fastbencode) refuses.
        if "disordered" not in str(exc):
            raise NgError(f"not bencode: {exc}") from None
        value = _decode_unordered(body)
    if not isinstance(value, dict):
        raise NgError("not a dictionary")
    return cookie, text(value)


def _decode_unordered(body: bytes) -> Any:
    """Bencode whose dictionary keys may come in any order (first key wins on a repeat)."""
    try:
        value, end = _value(body, 0, 0)
    except (ValueError, IndexError, RecursionError) as exc:
        raise NgError(f"not bencode: {exc}") from None
    if end != len(body):
        raise NgError("not bencode: data after the value")
    return value


_MAX_DEPTH = 32


def _value(data: bytes, at: int, depth: int) -> tuple[Any, int]:
    if depth > _MAX_DEPTH:
        raise ValueError("nested too deep")
    kind = data[at:at + 1]
    if kind == b"i":
        end = data.index(b"e", at)
        return int(data[at + 1:end]), end + 1
    if kind == b"l":
        items: list[Any] = []
        at += 1
        while data[at:at + 1] != b"e":
            item, at = _value(data, at, depth + 1)
            items.append(item)
        return items, at + 1
    if kind == b"d":
        out: dict[bytes, Any] = {}
        at += 1
        while data[at:at + 1] != b"e":
            key, at = _value(data, at, depth + 1)
            if not isinstance(key, bytes):
                raise ValueError("dictionary key is not a string")
            item, at = _value(data, at, depth + 1)
            out.setdefault(key, item)
        return out, at + 1
    if kind.isdigit():
        colon = data.index(b":", at)
        size = int(data[at:colon])
        if colon + 1 + size > len(data):
            raise ValueError("string runs past the end")
        return data[colon + 1:colon + 1 + size], colon + 1 + size
    raise ValueError(f"unexpected {kind!r}")


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
