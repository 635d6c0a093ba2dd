"""TLS done fully, against a real server: the listener's certificate reloaded
without a restart, trunk certificates verified (name, root, pin), and the
files of `softswitch tls selfsigned` serving a listener as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from softswitch.tls_files import TlsFiles, write_selfsigned
from tests.support.phone import Phone
from tests.support.server import ROOT, ServerProcess, free_port
from tests.support.sip_client import SipClient, options_request
from tests.support.tls_uas import TlsUas
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

NUMBER = "2125551234"  # the shipped dialplan sends it to trunk `provider`


def served_fingerprint(port: int, ca: Path | None = None, name: str = "127.0.0.1") -> str:
    """SHA-256 of the certificate a new TLS connection to `port` is given."""
    if ca is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as plain:
        with context.wrap_socket(plain, server_hostname=name) as conn:
            der = conn.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def file_fingerprint(path: Path) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(path.read_text())).hexdigest()


def test_listener_certificate_reloads_without_restart(own_server: ServerProcess) -> None:
    own_server.start()
    pid = own_server.process.pid if own_server.process else 0
    files = TlsFiles(own_server.workdir / "cert.pem", own_server.workdir / "key.pem")
    first = served_fingerprint(own_server.tls_port)
    assert first == file_fingerprint(files.certificate)
    with SipClient("tls", ("127.0.0.1", own_server.tls_port)) as before:
        # A renewed certificate on disk: picked up by the file watch.
        write_selfsigned(files, ["127.0.0.1", "renewed.example"], 30)
        second = file_fingerprint(files.certificate)
        wait_for(lambda: served_fingerprint(own_server.tls_port) == second, 10,
                 "the renewed certificate served")
        # The connection opened before keeps working with the old one.
        reply = before.request(options_request(before), timeout=3)
        assert reply is not None and reply.status == 200

    # Another one, and SIGHUP (what `softswitch reload` sends): served too.
    write_selfsigned(files, ["127.0.0.1"], 30)
    third = file_fingerprint(files.certificate)
    os.kill(pid, signal.SIGHUP)
    wait_for(lambda: served_fingerprint(own_server.tls_port) == third, 10,
             "the certificate after SIGHUP served")
    wait_for(lambda: '"tls_certificate_reloaded"' in own_server.log_path.read_text(), 5,
             "the reload logged")

    # A broken file is refused: the certificate in force stays, TLS keeps answering.
    files.certificate.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n"
                                 "-----END CERTIFICATE-----\n")
    os.kill(pid, signal.SIGHUP)
    wait_for(lambda: '"tls_certificate_refused"' in own_server.log_path.read_text(), 10,
             "the broken certificate refused")
    status = json.loads((own_server.data_dir / "reload-status.json").read_text())
    assert any(p["name"] == "tls" and not p["ok"] for p in status["parts"]), status
    assert served_fingerprint(own_server.tls_port) == third
    with SipClient("tls", ("127.0.0.1", own_server.tls_port)) as client:
        reply = client.request(options_request(client), timeout=3)
        assert reply is not None and reply.status == 200
    assert own_server.process is not None and own_server.process.pid == pid and own_server.alive()


def _trunk_server(server: ServerProcess, port: int, **options: str) -> None:
    settings = {"name": "provider", "host": "127.0.0.1", "port": str(port), "transport": "tls",
                "context": "from-provider", "acl": "['127.0.0.1:1']", **options}
    server.extra_config = "trunks:\n  - {" + ", ".join(
        f"{k}: {v}" for k, v in settings.items()) + "}\n"
    server.start()


def _call_code(server: ServerProcess, tmp_path: Path) -> int:
    with Phone.start("1001", "1001pass", server.udp_port, log_dir=tmp_path) as phone:
        assert phone.register() == 200
        call = phone.call(f"sip:{NUMBER}@127.0.0.1:{server.udp_port}")
        return int(phone.wait_call_state(call, "DISCONNECTED", 15)["code"])


def _trunk_pair(folder: Path, *names: str) -> TlsFiles:
    files = TlsFiles(folder / "trunk-cert.pem", folder / "trunk-key.pem")
    write_selfsigned(files, list(names), 30)
    return files


def test_trunk_with_a_certificate_for_another_name_is_refused(own_server: ServerProcess,
                                                              tmp_path: Path) -> None:
    files = _trunk_pair(tmp_path, "wrong.example")
    with TlsUas(files.certificate, files.private_key) as uas:
        # The root is trusted (its own CA file), only the name is wrong.
        _trunk_server(own_server, uas.port, tls_ca=str(files.certificate))
        start = time.monotonic()
        assert _call_code(own_server, tmp_path) == 503
        assert time.monotonic() - start < 10  # refused at the handshake, not Timer B
        assert uas.methods == []
    refusals = [json.loads(line) for line in own_server.log().splitlines()
                if '"tls_peer_refused"' in line]
    assert refusals, own_server.log()
    assert refusals[0]["checks"] == "verified as 127.0.0.1"
    assert "127.0.0.1" in refusals[0]["error"] or "match" in refusals[0]["error"], refusals[0]


def test_trunk_with_an_untrusted_certificate_is_refused(own_server: ServerProcess,
                                                        tmp_path: Path) -> None:
    files = _trunk_pair(tmp_path, "127.0.0.1")
    with TlsUas(files.certificate, files.private_key) as uas:
        _trunk_server(own_server, uas.port)  # verification on, system roots only
        assert _call_code(own_server, tmp_path) == 503
        assert uas.methods == []
    assert '"tls_peer_refused"' in own_server.log()


def test_trunk_with_the_right_certificate_gets_the_call(own_server: ServerProcess,
                                                        tmp_path: Path) -> None:
    files = _trunk_pair(tmp_path, "127.0.0.1", "sip.provider.example")
    with TlsUas(files.certificate, files.private_key) as uas:
        _trunk_server(own_server, uas.port, tls_ca=str(files.certificate))
        assert _call_code(own_server, tmp_path) == 486  # the trunk's own answer
        assert "INVITE" in uas.methods
    assert '"tls_peer_refused"' not in own_server.log()


def test_pinned_trunk_certificate_gets_the_call(own_server: ServerProcess,
                                                tmp_path: Path) -> None:
    # Neither trusted nor for this name: the pin alone decides.
    files = _trunk_pair(tmp_path, "wrong.example")
    pin = file_fingerprint(files.certificate)
    with TlsUas(files.certificate, files.private_key) as uas:
        _trunk_server(own_server, uas.port, tls_fingerprint=f"'{pin}'")
        assert _call_code(own_server, tmp_path) == 486
        assert "INVITE" in uas.methods


def test_selfsigned_files_serve_a_listener_in_two_commands(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    made = subprocess.run(
        [sys.executable, "-m", "softswitch", "tls", "selfsigned", "--data-dir", str(data_dir),
         "--json", "localhost", "127.0.0.1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30, env=dict(os.environ))
    assert made.returncode == 0, made.stderr
    record = json.loads(made.stdout)
    certificate = Path(record["certificate"])
    assert certificate == data_dir / "tls" / "cert.pem"
    assert (Path(record["private_key"]).stat().st_mode & 0o777) == 0o600
    assert record["names"] == ["localhost", "127.0.0.1"]

    udp, tls_port = free_port(), free_port()
    config = tmp_path / "softswitch.yaml"  # no tls section: the data dir's files are used
    config.write_text(f"directory: {ROOT / 'conf' / 'directory.yaml'}\n"
                      f"dialplan: {ROOT / 'conf' / 'dialplan.yaml'}\n")
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "softswitch", "run", "--config", str(config),
         "--data-dir", str(data_dir), "--listen", f"udp:127.0.0.1:{udp}",
         "--listen", f"tls:127.0.0.1:{tls_port}"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        def answers() -> bool:
            try:
                # Verified as a phone that trusts this certificate would.
                return served_fingerprint(tls_port, ca=certificate) == \
                    file_fingerprint(certificate)
            except OSError:
                assert process.poll() is None, (tmp_path / "server.log").read_text()
                return False
        wait_for(answers, 20, "the TLS listener")
        with SipClient("tls", ("127.0.0.1", tls_port)) as client:
            reply = client.request(options_request(client), timeout=3)
            assert reply is not None and reply.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
