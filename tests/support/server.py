"""Start `softswitch run` as a real process on loopback for integration tests."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.support.sip_client import SipClient, options_request

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def embedded_relay_config(size: int = 40, *, advertise: str = "127.0.0.1",
                          extra: str = "") -> tuple[str, tuple[int, int]]:
    """A `media:` block for a server whose embedded relay takes `size` ports of a random
    range (so that modules running side by side do not meet), and that range.

    `extra`: more `media:` lines, indented by two spaces, or further top-level blocks.
    """
    low = random.randrange(40000, 59000, 100)
    high = low + size - 1
    return ("media:\n  mode: relay\n  embedded: true\n"
            f"  control: udp:127.0.0.1:{free_port()}\n"
            f"  notify: udp:127.0.0.1:{free_port()}\n"
            f"  ports: {low}-{high}\n  advertise: {advertise}\n" + extra), (low, high)


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1 (tests only)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "softswitch-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class ServerProcess:
    """A running `softswitch run` with its ports, data dir and log file."""

    workdir: Path
    extra_config: str = ""
    udp_port: int = 0
    tcp_port: int = 0
    tls_port: int = 0
    directory: Path | None = None  # the user directory; conf/directory.yaml if None
    dialplan: Path | None = None  # the dialplan; conf/dialplan.yaml if None
    process: subprocess.Popen[bytes] | None = None
    run_args: tuple[str, ...] = ()  # more `softswitch run` options (--listen...)
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "server.log"
        self.data_dir = self.workdir / "data"
        self.config_path = self.workdir / "softswitch.yaml"

    def write_config(self) -> None:
        cert, key = make_certificate(self.workdir)
        self.udp_port = self.udp_port or free_port()
        self.tcp_port = self.udp_port
        self.tls_port = self.tls_port or free_port()
        conf = ROOT / "conf"
        # Direct media unless a test asks for a relay: an embedded relay per
        # server would fight over its control port when tests run in parallel.
        media = "" if "media:" in self.extra_config else "media:\n  mode: direct\n"
        self.config_path.write_text(
            f"listen:\n"
            f"  - udp:127.0.0.1:{self.udp_port}\n"
            f"  - tcp:127.0.0.1:{self.tcp_port}\n"
            f"  - tls:127.0.0.1:{self.tls_port}\n"
            f"tls:\n  certificate: {cert}\n  private_key: {key}\n"
            f"directory: {self.directory or conf / 'directory.yaml'}\n"
            f"dialplan: {self.dialplan or conf / 'dialplan.yaml'}\n"
            f"log:\n  format: json\n  level: debug\n"
            # Any free port for the management API: tests run servers side by side.
            + ("" if "management:" in self.extra_config
               else "management:\n  listen: 127.0.0.1:0\n")
            + f"{media}"
            + f"{self.extra_config}")

    def start(self, timeout: float = 20.0, output: IO[bytes] | None = None) -> None:
        """Start and wait until it answers OPTIONS; its output goes to `output` or the log."""
        if not self.config_path.exists():
            self.write_config()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command(), cwd=ROOT, stdout=output or self._log, stderr=subprocess.STDOUT,
            env=env)
        self.wait_ready(timeout)

    def command(self, *extra: str) -> list[str]:
        """The `softswitch run` command line of this server, plus `extra` options."""
        return [sys.executable, "-m", "softswitch", "run", "--config", str(self.config_path),
                "--data-dir", str(self.data_dir), *self.run_args, *extra]

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with SipClient("udp", ("127.0.0.1", self.udp_port)) as client:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"server exited early:\n{self.log()}")
                client.send(options_request(client))
                if client.recv(timeout=0.2) is not None:
                    return
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        if self.process.returncode == -signal.SIGKILL:
            self._drop_ban_table()
        return self.process.returncode

    def _drop_ban_table(self) -> None:
        """A killed server leaves its nftables ban table behind (a clean stop removes it):
        the next server on the same ports replaces it, but test ports are random, so the
        tables would pile up on the machine."""
        if shutil.which("nft") is None:
            return
        for port in {self.udp_port, self.tcp_port, self.tls_port} - {0}:
            subprocess.run(["nft", "delete", "table", "inet", f"softswitch_bans_{port}"],
                           capture_output=True, check=False)

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)
