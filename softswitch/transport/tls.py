"""TLS for SIP (RFC 3261 26.2, RFC 5922): the listener's certificate and the
checks made of a trunk's.

`ReloadableServerContext` is the connection creator of every TLS listener:
each new connection takes the SSL context in force, and `reload` swaps in one
built from the files on disk, so a renewed certificate is served without a
restart (connections already open keep theirs). A broken file is refused
and the certificate in force stays.

`TlsClientPolicy` says how an outbound connection checks its peer: by
default the certificate must chain to a trusted root (the system's, or a CA
file) and name the host we meant to reach (RFC 5922 7.2, checked by
service_identity, with IP addresses matched against iPAddress SANs);
a pinned SHA-256 fingerprint replaces both checks; `verify: false`
relaxes them (logged at start, never the default for a trunk).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from zope.interface import implementer


class TlsFilesError(ValueError):
    """A certificate or key file that cannot be used, with the reason."""


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsFilesError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from exc


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate of a PEM file, leaf first (a chain file's order)."""
    data = _read(path, "certificate")
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise TlsFilesError(f"{path}: no PEM certificate in the file")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise TlsFilesError(f"{path}: unreadable certificate: {exc}") from exc


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, as colon-separated upper-case hex (as openssl prints it)."""
    digest = certificate.fingerprint(hashes.SHA256()).hex().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def normalise_fingerprint(text: str) -> str:
    """`AB:CD...`, `abcd...` or `sha256:AB:CD` to `AB:CD:...`; ValueError if it is no SHA-256."""
    bare = text.strip()
    if bare.lower().startswith("sha256:"):
        bare = bare[7:]
    bare = bare.replace(":", "").replace(" ", "").upper()
    if len(bare) != 64 or any(c not in "0123456789ABCDEF" for c in bare):
        raise ValueError(f"expected a SHA-256 fingerprint (64 hex digits), got {text!r}")
    return ":".join(bare[i:i + 2] for i in range(0, 64, 2))


def _ssl_reason(exc: Exception) -> str:
    # pyOpenSSL errors carry a list of (library, function, reason) tuples.
    args = exc.args[0] if exc.args else None
    if isinstance(args, list) and args and isinstance(args[0], tuple):
        return "; ".join(str(item[-1]) for item in args)
    return str(exc) or type(exc).__name__


def server_options(certificate: Path, private_key: Path) -> ssl.CertificateOptions:
    """Options for a TLS listener: the chain and key of the files, TLS 1.2 or newer.

    The context is built here, so a key that does not match the certificate
    is found now rather than at the first handshake.
    """
    chain = load_certificates(certificate)
    key_data = _read(private_key, "private key")
    try:
        key: PrivateKeyTypes = serialization.load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError) as exc:
        raise TlsFilesError(f"{private_key}: unreadable private key: {exc}") from exc
    # Twisted's annotations still name pyOpenSSL's types; pyOpenSSL takes
    # (and prefers) cryptography's.
    options = ssl.CertificateOptions(privateKey=key, certificate=chain[0],  # type: ignore[arg-type]
                                     extraCertChain=chain[1:],  # type: ignore[arg-type]
                                     raiseMinimumTo=ssl.TLSVersion.TLSv1_2)
    try:
        options.getContext()
    except SSL.Error as exc:
        raise TlsFilesError(f"{private_key}: does not fit {certificate}: {_ssl_reason(exc)}") from exc
    return options


def server_context(certificate: Path, private_key: Path) -> ssl.CertificateOptions:
    """Kept for callers of the first version: the options of `server_options`."""
    return server_options(certificate, private_key)


@dataclass(slots=True, frozen=True)
class CertificateSummary:
    """What an operator wants to see of the certificate in force."""

    subject: str
    not_after: str
    fingerprint: str

    @classmethod
    def of(cls, certificate: x509.Certificate) -> CertificateSummary:
        return cls(certificate.subject.rfc4514_string(),
                   certificate.not_valid_after_utc.isoformat(), fingerprint(certificate))


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableServerContext:
    """The listener's connection creator; `reload()` swaps the certificate in."""

    def __init__(self, certificate: Path, private_key: Path) -> None:
        self.certificate = certificate
        self.private_key = private_key
        self._options = server_options(certificate, private_key)  # TlsFilesError stops the start
        self.summary = CertificateSummary.of(load_certificates(certificate)[0])
        self._stamp = self._files_stamp()

    def _files_stamp(self) -> tuple[tuple[float, int] | None, ...]:
        out: list[tuple[float, int] | None] = []
        for path in (self.certificate, self.private_key):
            try:
                st = path.stat()
            except OSError:
                out.append(None)
            else:
                out.append((st.st_mtime, st.st_size))
        return tuple(out)

    def changed_on_disk(self) -> bool:
        """True when either file differs (time or size) from the last load attempt."""
        return self._files_stamp() != self._stamp

    def reload(self) -> CertificateSummary:
        """Load the files again; new connections get them. TlsFilesError keeps the old ones."""
        self._stamp = self._files_stamp()
        options = server_options(self.certificate, self.private_key)
        summary = CertificateSummary.of(load_certificates(self.certificate)[0])
        self._options, self.summary = options, summary
        return summary

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:  # noqa: N802, N803
        return self._options.serverConnectionForTLS(tlsProtocol)


@dataclass(slots=True, frozen=True)
class TlsClientPolicy:
    """How an outbound TLS connection checks its peer.

    `server_name`: the name (or IP address) the certificate must carry;
    `ca_file`: roots to trust instead of the system's; `pin`: a SHA-256
    fingerprint that alone decides; `verify=False`: accept anything.
    """

    server_name: str | None = None
    verify: bool = True
    pin: str | None = None
    ca_file: Path | None = None

    def describe(self) -> str:
        if self.pin:
            return f"pinned {self.pin[:11]}..."
        if not self.verify or not self.server_name:
            return "not verified"
        return f"verified as {self.server_name}"


UNVERIFIED = TlsClientPolicy(verify=False)


def client_creator(policy: TlsClientPolicy) -> Any:
    """The connection creator for one outbound connection under `policy`.

    TlsFilesError if the CA file cannot be read.
    """
    if policy.pin:
        return _PinnedCreator(policy.pin)
    if not policy.verify or not policy.server_name:
        return ssl.CertificateOptions(raiseMinimumTo=ssl.TLSVersion.TLSv1_2)
    trust: Any
    if policy.ca_file is not None:
        trust = ssl.trustRootFromCertificates(
            [ssl.Certificate(crypto.X509.from_cryptography(c))
             for c in load_certificates(policy.ca_file)])
    else:
        trust = ssl.platformTrust()
    return ssl.optionsForClientTLS(
        policy.server_name, trustRoot=trust,
        extraCertificateOptions={"raiseMinimumTo": ssl.TLSVersion.TLSv1_2})


def client_context() -> ssl.CertificateOptions:
    """Options for outbound connections to peers no policy names (no verification).

    These are phones we reach again after their connection closed, or
    hosts of SIP URIs; trunks get a `TlsClientPolicy` instead.
    """
    return ssl.CertificateOptions(raiseMinimumTo=ssl.TLSVersion.TLSv1_2)


@implementer(IOpenSSLClientConnectionCreator)
class _PinnedCreator:
    """Accept exactly the leaf certificate with this fingerprint (chain and name ignored)."""

    def __init__(self, pin: str) -> None:
        self.pin = normalise_fingerprint(pin)
        self._options = ssl.CertificateOptions(raiseMinimumTo=ssl.TLSVersion.TLSv1_2)

    def _check(self, conn: SSL.Connection, cert: crypto.X509, err: int, depth: int,
               ok: int) -> bool:
        # The chain above the leaf does not matter: the pin names the leaf.
        return depth != 0 or fingerprint(cert.to_cryptography()) == self.pin

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:  # noqa: N802, N803
        connection = self._options.clientConnectionForTLS(tlsProtocol)
        connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._check)
        return connection
