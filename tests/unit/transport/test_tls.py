"""The TLS pieces without a network: files, fingerprints, the swap on reload,
the checks chosen for a trunk, and the self-signed files."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet import ssl

from softswitch.config import Settings, TrunkSettings
from softswitch.sip.peer import Peer
from softswitch.tls_files import TlsFiles, check_name, write_selfsigned
from softswitch.transport.tls import (
    ReloadableServerContext,
    TlsClientPolicy,
    TlsFilesError,
    client_creator,
    fingerprint,
    load_certificates,
    normalise_fingerprint,
    server_options,
)
from softswitch.trunk_tls import TrunkTlsPolicies


@pytest.fixture
def pair(tmp_path: Path) -> TlsFiles:
    files = TlsFiles(tmp_path / "cert.pem", tmp_path / "key.pem")
    write_selfsigned(files, ["sip.example.com", "192.0.2.1"], 10)
    return files


def test_selfsigned_carries_the_names_and_a_private_key(pair: TlsFiles) -> None:
    from cryptography import x509
    [cert] = load_certificates(pair.certificate)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["sip.example.com"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["192.0.2.1"]
    assert pair.private_key.stat().st_mode & 0o777 == 0o600
    server_options(pair.certificate, pair.private_key)  # a usable pair


@pytest.mark.parametrize("name", ["bad name", "a..b", "", "x" * 64 + ".com", "-é-"])
def test_check_name_refuses_what_is_no_host(name: str) -> None:
    with pytest.raises(ValueError):
        check_name(name)


def test_check_name_accepts_hosts_and_addresses() -> None:
    assert check_name("SIP.Example.com") == "sip.example.com"
    assert check_name("[2001:db8::1]") == "2001:db8::1"


def test_fingerprint_forms_normalise() -> None:
    hexa = "ab" * 32
    want = ":".join(["AB"] * 32)
    assert normalise_fingerprint(hexa) == want
    assert normalise_fingerprint(f"sha256:{want.lower()}") == want
    with pytest.raises(ValueError):
        normalise_fingerprint("ab" * 20)  # a SHA-1
    with pytest.raises(ValueError):
        normalise_fingerprint("zz" * 32)


def test_bad_files_give_one_error_with_the_reason(tmp_path: Path, pair: TlsFiles) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(TlsFilesError, match="cannot read"):
        server_options(missing, pair.private_key)
    junk = tmp_path / "junk.pem"
    junk.write_text("hello")
    with pytest.raises(TlsFilesError, match="no PEM certificate"):
        server_options(junk, pair.private_key)
    with pytest.raises(TlsFilesError, match="unreadable private key"):
        server_options(pair.certificate, junk)
    other = TlsFiles(tmp_path / "o.pem", tmp_path / "ok.pem")
    write_selfsigned(other, ["localhost"], 1)
    with pytest.raises(TlsFilesError, match="does not fit"):
        server_options(pair.certificate, other.private_key)


def test_reload_swaps_the_certificate_and_keeps_it_on_a_bad_file(pair: TlsFiles) -> None:
    server = ReloadableServerContext(pair.certificate, pair.private_key)
    first = server.summary.fingerprint
    assert not server.changed_on_disk()
    write_selfsigned(pair, ["renewed.example"], 10)
    assert server.changed_on_disk()
    assert server.reload().fingerprint != first
    assert server.summary.fingerprint == fingerprint(load_certificates(pair.certificate)[0])
    renewed = server.summary
    pair.certificate.write_text("broken")
    with pytest.raises(TlsFilesError):
        server.reload()
    assert server.summary == renewed
    assert not server.changed_on_disk()  # a refused file is not retried until it changes again


def test_client_creator_follows_the_policy(pair: TlsFiles) -> None:
    assert isinstance(client_creator(TlsClientPolicy(verify=False)), ssl.CertificateOptions)
    verified = client_creator(TlsClientPolicy("sip.example.com", ca_file=pair.certificate))
    assert type(verified).__name__ == "ClientTLSOptions"
    pinned = client_creator(TlsClientPolicy("x", pin="ab" * 32))
    assert pinned.pin == ":".join(["AB"] * 32)
    with pytest.raises(TlsFilesError):
        client_creator(TlsClientPolicy("x", ca_file=pair.certificate.with_name("none.pem")))


def test_trunk_policies_by_name_and_by_address(tmp_path: Path) -> None:
    trunks = [
        TrunkSettings(name="a", host="sip.carrier.example", transport="tls"),
        TrunkSettings(name="b", host="192.0.2.5", port=5061, transport="tls",
                      tls_fingerprint="cd" * 32),
        TrunkSettings(name="c", host="198.51.100.7", transport="tls", tls_verify=False,
                      tls_ca="ca.pem", tls_server_name="edge.carrier.example"),
    ]
    policies = TrunkTlsPolicies(trunks, lambda p: tmp_path / p)
    by_dns = policies(Peer("tls", "203.0.113.9", 5061, name="SIP.carrier.example."))
    assert by_dns == TlsClientPolicy("sip.carrier.example")
    assert policies(Peer("tls", "192.0.2.5", 5061)).pin == ":".join(["CD"] * 32)
    assert policies(Peer("tls", "192.0.2.5", 5062)) is None  # not the trunk's port
    relaxed = policies(Peer("tls", "198.51.100.7", 5060))
    assert relaxed == TlsClientPolicy("edge.carrier.example", False, None, tmp_path / "ca.pem")
    assert relaxed.describe() == "not verified"
    assert policies(Peer("tls", "203.0.113.9", 5061)) is None  # a phone, not a trunk


def test_trunk_tls_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        Settings.model_validate({"trunks": [{"name": "t", "host": "h", "tls_fingerprint": "12"}]})
    s = Settings.model_validate({"trunks": [{"name": "t", "host": "h"}]})
    assert s.trunks[0].tls_verify is True  # verification is the default


def test_peer_name_is_not_part_of_its_identity() -> None:
    assert Peer("tls", "192.0.2.1", 5061, name="a") == Peer("tls", "192.0.2.1", 5061)
