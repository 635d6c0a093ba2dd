"""The server configuration (`conf/softswitch.yaml`): loading and validation.

The YAML is read with ruamel.yaml in round-trip mode because it keeps the
line and column of every node, and validated with pydantic, which reports
every error at once with the path to the bad value; walking that path back
through the ruamel nodes turns each error into `file:line:col: message`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from softswitch.fraud.settings import ClassNames, TollSettings
from softswitch.guard.settings import GuardSettings


class ConfigError(Exception):
    """A configuration file that cannot be used, with every problem found."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(slots=True, frozen=True)
class ListenAddress:
    transport: str  # udp, tcp, tls
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        """`udp:0.0.0.0:5060`, `tls:[::]:5061`, `tcp:127.0.0.1:5060`."""
        transport, sep, rest = text.partition(":")
        transport = transport.lower()
        if not sep or transport not in ("udp", "tcp", "tls"):
            raise ValueError(f"expected udp:HOST:PORT, tcp:HOST:PORT or tls:HOST:PORT, got {text!r}")
        if rest.startswith("["):
            host, close, port_text = rest[1:].partition("]")
            if not close or not port_text.startswith(":"):
                raise ValueError(f"bad IPv6 listen address {text!r}")
            port_text = port_text[1:]
        else:
            host, sep, port_text = rest.rpartition(":")
            if not sep:
                raise ValueError(f"missing port in {text!r}")
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ValueError(f"bad port in {text!r}")
        return cls(transport, host or "0.0.0.0", int(port_text))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


def _check_listen(text: str) -> str:
    ListenAddress.parse(text)
    return text


ListenText = Annotated[str, AfterValidator(_check_listen)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TLSSettings(_Model):
    certificate: str | None = None
    private_key: str | None = None


class SIPSettings(_Model):
    t1: float = Field(0.5, gt=0, le=10)
    t2: float = Field(4.0, gt=0, le=60)
    t4: float = Field(5.0, gt=0, le=60)
    max_message_size: int = Field(65536, ge=1024, le=1 << 20)
    max_headers: int = Field(128, ge=16, le=4096)
    max_header_line: int = Field(8192, ge=256, le=65536)
    idle_timeout: float = Field(600.0, gt=0, description="seconds before an idle TCP/TLS connection closes")
    # Limits on TCP/TLS peers (docs/hardening.md): connections from one
    # source address (0: no limit), bytes queued towards a peer that does
    # not read, seconds a message may take to arrive whole (slow senders).
    max_connections_per_source: int = Field(64, ge=0)
    max_send_buffer: int = Field(1 << 20, ge=4096)
    partial_timeout: float = Field(10.0, gt=0)
    # Bytes the kernel may queue on a UDP socket while the reactor is busy;
    # the Linux default (~208 KiB) overflows in a burst of a few thousand.
    udp_receive_buffer: int = Field(4 << 20, ge=0)
    user_agent: str = "softswitch"
    shutdown_grace: float = Field(5.0, ge=0, le=120)
    # RFC 4028 session timers: our interval and the shortest we accept.
    session_expires: int = Field(1800, ge=90)
    min_se: int = Field(90, ge=90)


class OverloadSettings(_Model):
    """Overload control (softswitch/overload.py, docs/hardening.md): limits at which
    new INVITEs and initial REGISTERs are refused with 503; 0 disables a signal."""

    enabled: bool = True
    max_lag: float = Field(0.5, ge=0, description="seconds the event loop may run late (sustained)")
    max_udp_queue: int = Field(2 << 20, ge=0, description="bytes waiting in the UDP receive queues")
    max_transactions: int = Field(4000, ge=0, description="server transactions owed a final response")
    drop_factor: float = Field(3.0, ge=1, description="beyond this many times a limit: drop, not 503")
    lag_samples: int = Field(3, ge=1, le=100, description="lag counted: the least of this many samples")
    recover_ratio: float = Field(0.5, gt=0, le=1, description="calm: every signal below this share")
    recover_after: float = Field(1.0, ge=0, le=60, description="calm seconds from refusing all to none")
    loss_step: float = Field(0.1, gt=0, le=1, description="share of new work refused more per sample over a limit")
    retry_after: int = Field(5, ge=1, le=3600, description="Retry-After of the 503, seconds")
    sample_interval: float = Field(0.05, ge=0.005, le=1)
    # > 0: log the peak of each signal over every interval (seconds), for tuning.
    report_interval: float = Field(0.0, ge=0)


class RegistrarSettings(_Model):
    min_expires: int = Field(60, ge=1)
    default_expires: int = Field(3600, ge=1)
    max_expires: int = Field(7200, ge=1)


def _check_fingerprint(text: str) -> str:
    from softswitch.transport.tls import normalise_fingerprint
    return normalise_fingerprint(text)


class TrunkSettings(_Model):
    """A SIP trunk: where calls to it go, and which sources count as it.

    Calls from an address in `acl` (addresses or networks, each optionally
    with a port; default: `host`) are accepted as coming from the trunk and
    routed in its `context`; nothing else may reach a trunk without
    authenticating.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    host: str
    port: int = Field(5060, ge=1, le=65535)
    transport: Literal["udp", "tcp", "tls"] = "udp"
    context: str = "from-trunk"
    acl: list[str] = Field(default_factory=list)
    username: str | None = None
    password: str | None = None
    from_domain: str | None = None
    # Outbound registration to the provider (RFC 3261 10.2): see trunk_registration.py.
    # `register` in YAML; a field of that name would shadow ABCMeta.register.
    register_: bool = Field(False, alias="register")
    register_expires: int = Field(3600, ge=60)
    registrar: str | None = Field(None, description="host[:port] if not host:port")
    retry_min: float = Field(30.0, gt=0)
    retry_max: float = Field(300.0, gt=0)
    # Over TLS the trunk's certificate must chain to a trusted root (the
    # system's, or `tls_ca`) and carry `tls_server_name` (default: `host`);
    # `tls_fingerprint` (SHA-256) pins it instead; `tls_verify: false` accepts
    # any certificate (a test setup, never a default). See transport/tls.py.
    tls_verify: bool = True
    tls_ca: str | None = None
    tls_server_name: str | None = None
    tls_fingerprint: Annotated[str, AfterValidator(_check_fingerprint)] | None = None
    # Relayed or direct media for calls to and from this trunk (docs/relay.md);
    # None: the server's media.mode. A dialplan `set: {media: ...}` wins.
    media: Literal["relay", "direct"] | None = None
    # The relay records every call to and from this trunk (one WAV channel per
    # party, under the data dir's recordings/; docs/relay.md). Needs relayed media.
    record_calls: bool = False
    # Toll-fraud limits (softswitch/fraud/policy.py), calls in and out together.
    max_calls: int | None = Field(None, ge=1, description="concurrent calls")
    calls_per_minute: int | None = Field(None, ge=1)
    # Classes the trunk's callers may reach; None: internal only.
    allowed_destinations: ClassNames | None = None


def _check_relay_address(text: str) -> str:
    from softswitch.relay.ng_client import parse_address
    parse_address(text)
    return text


RelayAddressText = Annotated[str, AfterValidator(_check_relay_address)]


def _check_ports(text: str) -> str:
    low, sep, high = text.partition("-")
    if not sep or not low.isdigit() or not high.isdigit() \
            or not 1024 <= int(low) < int(high) <= 65535:
        raise ValueError(f"expected LOW-HIGH between 1024 and 65535, got {text!r}")
    return text


class RelaySettings(_Model):
    """A relay the softswitch may send calls to (ours on another host, or rtpengine)."""

    address: RelayAddressText  # udp:HOST:PORT of its ng control socket
    weight: int = Field(1, ge=0, le=1000)


class MediaSettings(_Model):
    """Where calls' media flows: through a relay (default) or directly between phones."""

    mode: Literal["relay", "direct"] = "relay"
    # Start our relay as a child of `softswitch run` (restarted if it dies).
    embedded: bool = True
    # Further relays (on other hosts, or rtpengine); with embedded: false, the only ones.
    relays: list[RelaySettings] = Field(default_factory=list)
    # The embedded relay: its ng control address, RTP port range, the
    # address written into SDP (default: advertised_address, else the
    # host's address towards the outside), its silence timeout.
    control: RelayAddressText = "udp:127.0.0.1:2223"
    ports: Annotated[str, AfterValidator(_check_ports)] = "16384-32767"
    advertise: str | None = None
    listen_address: str | None = None
    silence_timeout: float = Field(60.0, gt=0)
    # Our ng socket, where relays send teardowns (media timeouts).
    notify: RelayAddressText = "udp:127.0.0.1:2224"
    ping_interval: float = Field(5.0, gt=0, le=300)
    timeout: float = Field(3.0, gt=0, le=60, description="seconds a relay has to answer")


class LogSettings(_Model):
    format: Literal["console", "json"] = "console"
    level: Literal["debug", "info", "warning", "error"] = "info"


def _host_port(text: str) -> tuple[str, int]:
    """`127.0.0.1:8089`, `[::1]:8089`; ValueError otherwise."""
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        if not close or not rest.startswith(":"):
            raise ValueError(f"expected [IPv6]:PORT, got {text!r}")
        port = rest[1:]
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"expected HOST:PORT, got {text!r}")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bad port in {text!r}")
    return host, int(port)


def _check_host_port(text: str) -> str:
    _host_port(text)
    return text


HostPort = Annotated[str, AfterValidator(_check_host_port)]
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class ManagementSettings(_Model):
    """The HTTP API of `softswitch calls`, `top` and `/metrics` (docs/operations.md).

    On 127.0.0.1 by default; listening anywhere else requires `token`,
    which every request must then carry (Authorization: Bearer TOKEN).
    Port 0 takes any free port; the CLI finds it in the data dir.
    """

    enabled: bool = True
    listen: HostPort = "127.0.0.1:8089"
    token: SecretStr | None = Field(None, min_length=16)  # SecretStr: never in a repr
    ring_size: int = Field(64, ge=8, le=1024, description="SIP messages kept per Call-ID")
    keep_finished: int = Field(100, ge=0, le=10000, description="ended calls kept for inspection")

    @property
    def address(self) -> tuple[str, int]:
        return _host_port(self.listen)

    @model_validator(mode="after")
    def _token_off_loopback(self) -> ManagementSettings:
        if self.enabled and self.address[0] not in LOOPBACK_HOSTS and not self.token:
            raise ValueError(f"listen {self.listen} is not 127.0.0.1 or ::1: set a token "
                             "(16 characters or more) that clients must send")
        return self


class HepSettings(_Model):
    """HEP v3 capture to a Homer collector (docs/operations.md); off without `collector`."""

    collector: HostPort | None = None
    agent_id: int = Field(0, ge=0, le=0xFFFFFFFF)
    auth_key: str | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        return _host_port(self.collector) if self.collector else None


class Settings(_Model):
    listen: list[ListenText] = Field(default_factory=lambda: ["udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"])
    advertised_address: str | None = None
    tls: TLSSettings = TLSSettings()
    sip: SIPSettings = SIPSettings()
    registrar: RegistrarSettings = RegistrarSettings()
    overload: OverloadSettings = OverloadSettings()
    log: LogSettings = LogSettings()
    directory: str = "directory.yaml"
    dialplan: str = "dialplan.yaml"
    data_dir: str = "data"
    trunks: list[TrunkSettings] = Field(default_factory=list)
    max_call_duration: int = Field(4 * 3600, ge=0, description="seconds; 0 for no limit")
    # DNS servers (HOST:PORT) for RFC 3263 lookups of trunk and URI host names;
    # empty: the system's resolver (/etc/resolv.conf, /etc/hosts).
    dns_servers: list[str] = Field(default_factory=list)
    management: ManagementSettings = ManagementSettings()
    hep: HepSettings = HepSettings()
    media: MediaSettings = MediaSettings()
    # Toll fraud (classes of destinations) and brute force (rate limits, bans).
    toll: TollSettings = TollSettings()
    guard: GuardSettings = GuardSettings()

    @property
    def dns_server_addresses(self) -> list[tuple[str, int]]:
        out = []
        for item in self.dns_servers:
            host, _, port = item.rpartition(":")
            out.append((host.strip("[]") or item, int(port) if port.isdigit() else 53))
        return out

    @model_validator(mode="after")
    def _relays_when_needed(self) -> Settings:
        wants = self.media.mode == "relay" or any(t.media == "relay" for t in self.trunks)
        if wants and not self.media.embedded and not self.media.relays:
            raise ValueError("media: with embedded: false, relays must list at least one relay")
        for t in self.trunks:
            if t.record_calls and (t.media or self.media.mode) == "direct":
                raise ValueError(f"trunk {t.name}: record_calls needs relayed media "
                                 "(media: relay), the relay records the call")
        return self

    @property
    def listen_addresses(self) -> list[ListenAddress]:
        return [ListenAddress.parse(item) for item in self.listen]


@dataclass(slots=True)
class Config:
    """Validated settings plus where they came from (to resolve relative paths)."""

    settings: Settings
    path: Path | None

    def resolve(self, name: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        p = Path(name)
        if p.is_absolute() or self.path is None:
            return p
        return self.path.parent / p


def _position(node: Any, loc: tuple[int | str, ...]) -> tuple[int, int] | None:
    """Line and column (1-based) of the value at `loc` in a ruamel tree."""
    best: tuple[int, int] | None = None
    for key in loc:
        lc = getattr(node, "lc", None)
        if lc is None:
            break
        try:
            if isinstance(key, int):
                line, col = lc.item(key)
                node = node[key]
            else:
                line, col = lc.value(key) if key in node else (lc.line, lc.col)
                node = node.get(key) if hasattr(node, "get") else None
        except (KeyError, IndexError, TypeError, AttributeError):
            break
        best = (line + 1, col + 1)
    if best is None:
        lc = getattr(node, "lc", None)
        if lc is not None:
            best = (lc.line + 1, lc.col + 1)
    return best


def load_yaml(path: Path) -> Any:
    """Read a YAML file keeping positions; MarkedYAMLError becomes ConfigError."""
    yaml = YAML(typ="rt")
    try:
        with path.open(encoding="utf-8") as fh:
            return yaml.load(fh)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError([f"{where}: {exc.problem or exc.context}"]) from None
    except YAMLError as exc:
        # Not all of ruamel's errors carry a mark: a control character in
        # the file is a ReaderError with a character position (found by fuzzing).
        raise ConfigError([f"{path}: {exc}".replace("\n", " ")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}"]) from None
    except TypeError as exc:
        # ruamel cannot build a mapping whose key is itself a mapping or a
        # list (`? {a: [b]}`): it raises TypeError (found by fuzzing).
        raise ConfigError([f"{path}: a mapping key must be a plain value ({exc})"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: {exc.strerror}"]) from None


def load_config(path: Path | None) -> Config:
    """Load and validate a config file; None gives the built-in defaults."""
    if path is None:
        return Config(Settings(), None)
    data = load_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}:1:1: the configuration must be a mapping"])
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            pos = _position(data, loc)
            where = f"{path}:{pos[0]}:{pos[1]}" if pos else str(path)
            dotted = ".".join(str(part) for part in loc)
            message = err["msg"].removeprefix("Value error, ")
            errors.append(f"{where}: {dotted}: {message}")
        raise ConfigError(errors) from None
    return Config(settings, path)
