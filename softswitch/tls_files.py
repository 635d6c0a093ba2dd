"""Key and certificate files for the TLS listener: where they live by default
and a self-signed pair for a test setup (`softswitch tls selfsigned`).

With no `tls.certificate` in the configuration, `softswitch run` looks in
DATA_DIR/tls/, where `softswitch tls selfsigned` writes, so that a TLS
listener works in two commands. A self-signed certificate is for tests and
labs: phones must be told to trust it (or its fingerprint).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_FOLDER = "tls"
CERTIFICATE_FILE = "cert.pem"
KEY_FILE = "key.pem"
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    certificate: Path
    private_key: Path


def default_files(data_dir: Path) -> TlsFiles:
    folder = data_dir / DEFAULT_FOLDER
    return TlsFiles(folder / CERTIFICATE_FILE, folder / KEY_FILE)


def existing_default_files(data_dir: Path) -> TlsFiles | None:
    files = default_files(data_dir)
    return files if files.certificate.is_file() and files.private_key.is_file() else None


def _subject_alternative(name: str) -> object:
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        return x509.DNSName(name)


def check_name(name: str) -> str:
    """A host name or IP address for a SAN; ValueError with the reason if neither."""
    bare = name.strip("[]")
    try:
        ipaddress.ip_address(bare)
        return bare
    except ValueError:
        pass
    labels = bare.rstrip(".").split(".")
    ok = bare and all(
        0 < len(label) <= 63 and all(c.isascii() and (c.isalnum() or c == "-") for c in label.removeprefix("*"))
        for label in labels)
    if not ok or len(bare) > 253:
        raise ValueError(f"{name!r} is neither an IP address nor a host name")
    return bare.lower()


def make_selfsigned(names: list[str], days: int) -> tuple[bytes, bytes]:
    """A new EC P-256 key and a certificate for `names` (SANs; the first is the CN)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])])
    now = datetime.datetime.now(datetime.UTC)
    sans = [_subject_alternative(n) for n in names]
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)  # type: ignore[arg-type]
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # SIP over TLS is mutual in places (RFC 5923): both usages.
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def write_selfsigned(files: TlsFiles, names: list[str], days: int) -> None:
    """Write both files; the key readable by its owner only, from its creation on.

    Each file is written beside its final name and renamed over it, so a
    running server polling the files never reads half of one.
    """
    cert_pem, key_pem = make_selfsigned(names, days)
    for path, data, mode in ((files.private_key, key_pem, 0o600),
                             (files.certificate, cert_pem, 0o644)):
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.new")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
