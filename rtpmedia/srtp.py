"""SDES-SRTP (RFC 4568, RFC 3711) for the media the relay must read: decrypting a copy.

Plain forwarding never touches SRTP: the packets and the `a=crypto` lines
pass end to end. When the relay must hear a party's audio on an SRTP leg
(a call it records), it takes the keys that party declared in its SDP:
with SDES each party's `a=crypto` gives the key it encrypts what it sends
with (RFC 4568 6.1), so an offerer's packets use one of the keys it
offered (the one whose tag the answer accepted) and an answerer's the one
it answered. Rather than track tags, `SrtpReader` tries each of the
party's keys on the first packets and keeps the one whose authentication
tag checks: a wrong key never authenticates.

libsrtp does the cryptography, through pylibsrtp (imported when first
needed: a relay that never meets SRTP does not need it).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

#: RFC 4568 6.2 / RFC 7714 14.2 suites: (pylibsrtp profile name, key||salt bytes).
SUITES: dict[str, tuple[str, int]] = {
    "AES_CM_128_HMAC_SHA1_80": ("SRTP_PROFILE_AES128_CM_SHA1_80", 30),
    "AES_CM_128_HMAC_SHA1_32": ("SRTP_PROFILE_AES128_CM_SHA1_32", 30),
    "AEAD_AES_128_GCM": ("SRTP_PROFILE_AEAD_AES_128_GCM", 28),
    "AEAD_AES_256_GCM": ("SRTP_PROFILE_AEAD_AES_256_GCM", 44),
}


class CryptoError(ValueError):
    """An `a=crypto` line this relay cannot use (unknown suite, bad key, an MKI)."""


@dataclass(frozen=True, slots=True)
class SdesKey:
    tag: str
    suite: str
    key: bytes  # master key || master salt

    @classmethod
    def parse(cls, value: str) -> SdesKey:
        """`1 AES_CM_128_HMAC_SHA1_80 inline:<base64>[|lifetime][|MKI:len]` (RFC 4568 9.1)."""
        parts = value.split()
        if len(parts) < 3:
            raise CryptoError(f"a=crypto:{value!r} is not tag, suite and key params")
        tag, suite, params = parts[0], parts[1].upper(), parts[2]
        if suite not in SUITES:
            raise CryptoError(f"crypto suite {suite} is not supported")
        if not params.startswith("inline:"):
            raise CryptoError("only inline keys are supported")
        fields = params[len("inline:"):].split("|")
        if any(":" in f for f in fields[1:]):
            raise CryptoError("keys with an MKI are not supported")
        try:
            key = base64.b64decode(fields[0], validate=True)
        except (binascii.Error, ValueError):
            raise CryptoError("the inline key is not base64") from None
        if len(key) != SUITES[suite][1]:
            raise CryptoError(f"a {suite} key is {SUITES[suite][1]} bytes, not {len(key)}")
        return cls(tag, suite, key)


def keys_of(crypto: tuple[str, ...]) -> list[SdesKey]:
    """The usable keys among a party's `a=crypto` values (the others are skipped)."""
    out = []
    for value in crypto:
        try:
            out.append(SdesKey.parse(value))
        except CryptoError:
            continue
    return out


class SrtpReader:
    """Decrypts copies of one party's SRTP packets with the key that authenticates them."""

    def __init__(self, crypto: tuple[str, ...]) -> None:
        self.crypto = crypto
        self.keys = keys_of(crypto)
        self._sessions: list[tuple[SdesKey, Any]] | None = None
        self.chosen: SdesKey | None = None
        self.failed = 0  # packets no key authenticated

    def _open(self) -> list[tuple[SdesKey, Any]]:
        import pylibsrtp

        sessions = []
        for key in self.keys:
            policy = pylibsrtp.Policy(key=key.key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                                      srtp_profile=getattr(pylibsrtp.Policy,
                                                           SUITES[key.suite][0]))
            sessions.append((key, pylibsrtp.Session(policy=policy)))
        return sessions

    def unprotect(self, packet: bytes) -> bytes | None:
        """The RTP packet inside `packet`, or None if no key of the party authenticates it."""
        if self._sessions is None:
            self._sessions = self._open()
        for index, (key, session) in enumerate(self._sessions):
            try:
                plain: bytes = session.unprotect(packet)
            except Exception:  # noqa: BLE001 - pylibsrtp.Error: wrong key, replay, junk
                continue
            if self.chosen is not key:
                self.chosen = key
                # The key that worked is tried first from now on.
                self._sessions.insert(0, self._sessions.pop(index))
            return plain
        self.failed += 1
        return None
