"""Inputs the fuzzers (fuzz/) found crashing a parser, kept as regression tests.

Each one must now give the parser's own error (or a result), never another
exception.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from softswitch.config import ConfigError, load_config
from softswitch.directory import DirectoryError, load_directory

# fuzz directory_yaml: a complex key whose value holds a list made ruamel
# raise TypeError (unhashable CommentedSeq) out of both YAML loaders.
COMPLEX_KEY = b"domains:\n?     # a comment\n        algorithms: [MD5]"


@pytest.mark.parametrize("data", [
    # fuzz config_yaml: a control character made ruamel raise ReaderError,
    # which has no mark and escaped load_yaml as a traceback from `softswitch run`.
    b"listen:\n  - udp:0.0.0.0:5060\x19\n",
    b"\x00",
    # Not UTF-8: UnicodeDecodeError escaped the same way.
    b"listen: [\xff]\n",
    COMPLEX_KEY,
])
def test_unusable_config_bytes_give_a_config_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "softswitch.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [message] = caught.value.errors
    assert message.startswith(f"{path}: ") and "\n" not in message


def test_complex_key_in_the_directory_gives_a_directory_error(tmp_path: Path) -> None:
    path = tmp_path / "directory.yaml"
    path.write_bytes(COMPLEX_KEY)
    with pytest.raises(DirectoryError) as caught:
        load_directory(path)
    assert "mapping key" in caught.value.errors[0]


@pytest.mark.parametrize("data", [
    # fuzz ng (found in CI's 3 s run): an integer with two minus signs in a
    # dictionary with unsorted keys passed the any-order decoder's check and
    # made int() raise ValueError instead of NgError.
    b"3 dli--1eTi2ece",
    b"c d3:abci--5ee",
    b"c li-ee",
])
def test_a_malformed_ng_integer_gives_an_ng_error(data: bytes) -> None:
    from rtpmedia.ng import NgError, decode

    with pytest.raises(NgError):
        decode(data)


def test_ng_integers_keep_their_sign() -> None:
    from rtpmedia.ng import decode

    assert decode(b"c d1:bi-12e1:ai0ee") == (b"c", {"b": -12, "a": 0})
