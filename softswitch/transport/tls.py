"""TLS contexts for SIP over TLS (RFC 3261 26.2), from the configured PEM files."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import ssl


def server_context(certificate: Path, private_key: Path) -> ssl.CertificateOptions:
    """Options for a TLS listener: our certificate chain and key, TLS 1.2 or newer."""
    cert = ssl.PrivateCertificate.loadPEM(certificate.read_text() + private_key.read_text())
    return ssl.CertificateOptions(privateKey=cert.privateKey.original,
                                  certificate=cert.original,
                                  raiseMinimumTo=ssl.TLSVersion.TLSv1_2)


def client_context() -> ssl.CertificateOptions:
    """Options for outbound TLS connections.

    Peers here are phones reached over a connection they opened, or trunks;
    trunk certificate verification arrives with trunk configuration.
    """
    return ssl.CertificateOptions(raiseMinimumTo=ssl.TLSVersion.TLSv1_2)
