"""SDES keys from a=crypto, and decrypting a party's SRTP with the key that authenticates it."""

from __future__ import annotations

import base64
import os

import pylibsrtp
import pytest

from rtpmedia.srtp import CryptoError, SdesKey, SrtpReader, keys_of


def crypto(tag: int, key: bytes, suite: str = "AES_CM_128_HMAC_SHA1_80") -> str:
    return f"{tag} {suite} inline:{base64.b64encode(key).decode()}"


def sender(key: bytes, profile: int = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
           ) -> pylibsrtp.Session:
    return pylibsrtp.Session(policy=pylibsrtp.Policy(
        key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile))


def rtp(seq: int, payload: bytes = b"\xff" * 160) -> bytes:
    return (bytes([0x80, 0]) + seq.to_bytes(2, "big") + (seq * 160).to_bytes(4, "big")
            + (0xABCD).to_bytes(4, "big") + payload)


def test_parse_rfc_4568_example_and_refusals() -> None:
    key = SdesKey.parse("1 AES_CM_128_HMAC_SHA1_80 "
                        "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20")
    assert key.tag == "1" and len(key.key) == 30
    for bad in ("1 F8_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
                "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4",
                "1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=", "1 AES_CM_128_HMAC_SHA1_80",
                "1 AES_CM_128_HMAC_SHA1_80 inline:!!notbase64!!"):
        with pytest.raises(CryptoError):
            SdesKey.parse(bad)
    assert len(keys_of(("junk", crypto(2, os.urandom(30))))) == 1


@pytest.mark.parametrize("suite,profile,size", [
    ("AES_CM_128_HMAC_SHA1_80", pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30),
    ("AES_CM_128_HMAC_SHA1_32", pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 30),
    ("AEAD_AES_128_GCM", pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 28),
])
def test_the_key_that_authenticates_is_found_among_the_offered(suite: str, profile: int,
                                                               size: int) -> None:
    used, other = os.urandom(size), os.urandom(size)
    out = sender(used, profile)
    reader = SrtpReader((crypto(1, other, suite), crypto(2, used, suite)))
    for seq in range(1, 20):
        packet = rtp(seq)
        protected = out.protect(packet)
        assert protected != packet
        assert reader.unprotect(protected) == packet
    assert reader.chosen is not None and reader.chosen.tag == "2" and reader.failed == 0


def test_no_key_of_the_party_means_nothing_is_heard() -> None:
    out = sender(os.urandom(30))
    reader = SrtpReader((crypto(1, os.urandom(30)),))
    assert reader.unprotect(out.protect(rtp(1))) is None and reader.failed == 1
    assert reader.unprotect(b"\x80\x00junk") is None
