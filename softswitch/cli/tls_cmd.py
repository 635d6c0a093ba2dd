"""`softswitch tls`: files for the TLS listener.

`softswitch tls selfsigned [NAME...]` writes a key and a self-signed
certificate (SANs for the host names and IP addresses given) into
DATA_DIR/tls/, where `softswitch run` finds them when the configuration
names none, or into `--out DIR`. Then `softswitch run --listen
tls:0.0.0.0:5061` serves TLS.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from softswitch.cli import exitcodes
from softswitch.cli.server_files import config_option, data_dir_option, server_files
from softswitch.tls_files import (
    DEFAULT_NAMES,
    TlsFiles,
    check_name,
    default_files,
    write_selfsigned,
)


@click.group()
def tls() -> None:
    """Certificates for the TLS listener."""


@tls.command()
@click.argument("names", nargs=-1)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for cert.pem and key.pem [default: DATA_DIR/tls].")
@click.option("--days", type=click.IntRange(1, 3650), default=365, show_default=True,
              help="Validity.")
@click.option("--force", is_flag=True, help="Replace files already there.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@config_option
@data_dir_option
def selfsigned(names: tuple[str, ...], out: Path | None, days: int, force: bool, as_json: bool,
               config_path: Path | None, data_dir: Path | None) -> None:
    """Write a key and a self-signed certificate for NAMES (host names, IP addresses).

    Default names: localhost, 127.0.0.1 and ::1. A running server picks
    the new files up by itself (it watches them) if they are the ones it uses.
    """
    try:
        checked = [check_name(n) for n in names] or list(DEFAULT_NAMES)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exitcodes.USAGE)
    if out is not None:
        files = TlsFiles(out / "cert.pem", out / "key.pem")
    else:
        files = default_files(server_files(config_path, data_dir).data_dir)
    existing = [p for p in (files.certificate, files.private_key) if p.exists()]
    if existing and not force:
        click.echo(f"error: {existing[0].absolute()} exists; --force replaces it", err=True)
        sys.exit(exitcodes.FAILED)
    try:
        write_selfsigned(files, checked, days)
    except OSError as exc:
        click.echo(f"error: cannot write {exc.filename}: {exc.strerror}", err=True)
        sys.exit(exitcodes.FAILED)
    from softswitch.transport.tls import CertificateSummary, load_certificates

    summary = CertificateSummary.of(load_certificates(files.certificate)[0])
    record = {"certificate": str(files.certificate.absolute()),
              "private_key": str(files.private_key.absolute()),
              "names": checked, "not_after": summary.not_after,
              "fingerprint": summary.fingerprint}
    if as_json:
        click.echo(json.dumps(record))
        return
    if not sys.stdout.isatty():
        click.echo("\t".join(f"{k}={','.join(v) if isinstance(v, list) else v}"
                             for k, v in record.items()))
        return
    click.echo(f"certificate  {record['certificate']}")
    click.echo(f"private key  {record['private_key']}")
    click.echo(f"names        {', '.join(checked)}")
    click.echo(f"valid until  {summary.not_after}")
    click.echo(f"sha-256      {summary.fingerprint}")
    if out is not None:
        click.echo("Name them in the configuration: tls: {certificate: ..., private_key: ...}")
    else:
        click.echo("softswitch run --listen tls:0.0.0.0:5061 now finds them.")
