"""Overload: goodput of a real `softswitch run` from below capacity to 3x, before and after.

Runs one or two server trees side by side (--before DIR: another checkout,
e.g. `git worktree add --detach /work/before-overload main`; the server is
started as `sys.executable -m softswitch` with its cwd in the tree, so the
tree's own package runs). Each server gets its own answering sipp (trunk
`out`), the calling trunk `in` and a probe trunk `probe`, and the steps
alternate between the trees at each rate so that both meet the same
machine load (the machine is shared: compare ratios, not absolutes).

Calls (sipp trunk -> softswitch -> sipp trunk, bench/sipp/overload_uac.xml):
for each offered rate (multiples of --clean, the clean rate measured with
bench/calls.py) the caller offers rate x --seconds calls, each held --hold
ms. Per step: completed calls per second of the offered window (a BYE
answered, the call set up within the window + hold + 2 s), refused (503),
failed otherwise, established calls lost (200 received, BYE never answered),
p50/p99 post-dial delay, the server's peak RSS, and the time back to normal
after the spike: a probe sipp starts when the offered window ends and
places 20 calls/s; the first probe call answered (180) within 300 ms marks
the server back. With --signals, the peak of each overload signal in the
step (the after tree's `overload_signals` log, 0.25 s peaks). Media is
direct (no relay): sipp sends no RTP, and this measures signalling.

REGISTER (--register, --no-calls to skip the calls): the same shape with
bench/sipp/register_overload.xml (REGISTER, 401, authenticated REGISTER,
200; a 503 to either ends it) over users never registered, offered at
multiples of --register-clean: completed registrations per second of the
window (200 within the window + 2 s), refused (503), failed otherwise,
p50/p99 of both round trips. Before the steps, REFRESH_USERS bindings are
registered; during each spike they are refreshed at REFRESH_RATE/s from the
same contact (the registrations that must keep being served). Back: a
probe of new users at 20/s starts when the window ends; the first whose
authenticated REGISTER is answered within 300 ms marks the server back.

Run: .venv/bin/python bench/overload.py [--before /work/before-overload]
     [--clean 300] [--factors 0.5,1,2,3] [--seconds 6] [--hold 1000]
     [--register [--register-clean 1500] [--no-calls]] [--signals] [--keep]
Figures only: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.calls import DIALPLAN, Answerer, udp_drops  # noqa: E402
from bench.register import DOMAIN, password, user  # noqa: E402
from bench.sipp_load import (  # noqa: E402
    ROOT,
    SCENARIOS,
    ServerUnderTest,
    cpu_seconds,
    exit_on_sigterm,
    free_udp_port,
    rss_mib,
)

COMPLETED, PDD = 1, 2  # rtd numbers in overload_uac.xml
# Message lines of overload_uac.xml on sipp's screen, in scenario order.
INVITE_200, REFUSED_503 = 5, (2, 4)
PROBE_RATE = 20
BACK_PDD_MS = 300.0
RECV_TIMEOUT_MS = 10_000


class TreeServer(ServerUnderTest):
    """A server from `tree` (its cwd), with trunks in, probe and out and a generated dialplan."""

    def __init__(self, tree: Path, workdir: Path, uac_port: int, probe_port: int,
                 uas_port: int, overload: str, users: int) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir, ROOT / "conf" / "directory.yaml", "info")
        self.tree = tree
        dialplan = workdir / "dialplan.yaml"
        dialplan.write_text(DIALPLAN)
        directory = workdir / "directory.yaml"
        lines = ["domains:", f"  - name: {DOMAIN}", "    algorithms: [MD5]", "    users:"]
        lines += [f'      - {{user: "{user(i)}", password: "{password(i)}"}}'
                  for i in range(users)]
        directory.write_text("\n".join(lines) + "\n")
        self.config_path.write_text(
            f"listen:\n  - udp:127.0.0.1:{self.port}\n"
            f"directory: {directory}\ndialplan: {dialplan}\n"
            "log:\n  format: json\n  level: info\n"
            # Any free port: two trees run side by side.
            "management:\n  listen: 127.0.0.1:0\n"
            f"{overload}"
            "trunks:\n"
            f"  - {{name: in, host: 127.0.0.1, port: {uac_port}, context: bench-in,"
            f" acl: ['127.0.0.1:{uac_port}'], allowed_destinations: [internal, national]}}\n"
            f"  - {{name: probe, host: 127.0.0.1, port: {probe_port}, context: bench-in,"
            f" acl: ['127.0.0.1:{probe_port}'], allowed_destinations: [internal, national]}}\n"
            f"  - {{name: out, host: 127.0.0.1, port: {uas_port}, context: bench-out,"
            f" acl: ['127.0.0.1:{uas_port}']}}\n")

    def start(self, timeout: float = 120.0) -> float:
        # ServerUnderTest runs in this tree: run in the other one instead.
        cmd = [sys.executable, "-m", "softswitch", "run", "--config", str(self.config_path),
               "--data-dir", str(self.data_dir)]
        began = time.monotonic()
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(cmd, cwd=self.tree, stdout=self._log,
                                        stderr=subprocess.STDOUT)
        from bench.sipp_load import _probe
        while time.monotonic() < began + timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_tail()}")
            if _probe(self.port, 0.2):
                return time.monotonic() - began
        raise RuntimeError(f"server not ready:\n{self.log_tail()}")


@dataclass
class Side:
    name: str
    server: TreeServer
    uas: Answerer
    uac_port: int
    probe_port: int
    refresh_port: int = 0
    next_user: int = 0
    refresh_users: list[int] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)


@dataclass
class Row:
    side: str
    what: str
    offered: float
    attempts: int
    completed: int  # calls: BYE answered; registrations: 200
    refused: int
    established: int
    byes: int  # BYEs answered, whenever
    window: float
    pdd: tuple[float, float]
    rss_peak: float
    back: float | None  # seconds after the window to the first prompt probe call
    drops: int
    signals: dict[str, float] = field(default_factory=dict)
    refresh: tuple[int, int, int] | None = None  # REGISTER: (attempted, completed, refused)
    cpu: float = 0.0  # REGISTER: the server's CPU over the step, share of one core

    @property
    def goodput(self) -> float:
        return self.completed / self.window

    @property
    def lost(self) -> int:
        return max(0, self.established - self.byes) if self.what == "calls" else 0

    @property
    def failed(self) -> int:
        return self.attempts - self.completed - self.refused


def _rtt(workdir: Path) -> dict[int, list[tuple[float, float]]]:
    """rtd number -> [(ms since sipp start at the sample, value ms)]."""
    out: dict[int, list[tuple[float, float]]] = collections.defaultdict(list)
    for path in workdir.glob("*_rtt.csv"):
        with path.open() as fh:
            next(fh, None)
            for line in fh:
                parts = line.strip().split(";")
                if len(parts) == 3:
                    out[int(parts[2])].append((float(parts[0]), float(parts[1])))
    return out


def _sipp(server: TreeServer, scenario: str, rate: float, calls: int, port: int, workdir: Path,
          extra: list[str]) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = ["sipp", f"127.0.0.1:{server.port}", "-sf", str(SCENARIOS / scenario),
           "-i", "127.0.0.1", "-p", str(port), "-r", str(int(rate)), "-rp", "1000",
           "-m", str(calls), "-l", str(max(1000, int(rate * 15))),
           "-buff_size", "4194304", "-recv_timeout", str(RECV_TIMEOUT_MS),
           "-timeout", "60s", "-nostdin", "-trace_screen", "-screen_file",
           str(workdir / "screen.log"), "-trace_err", "-error_file", str(workdir / "errors.log"),
           "-trace_rtt", "-rtt_freq", "1", *extra]
    return subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


_MESSAGE_RE = re.compile(r"^\s*(?:\S+)\s+(?:<-+|-+>)\s+(?:[BE]-RTD\d+\s+)?(\d+)", re.MULTILINE)


def _message_counts(workdir: Path) -> list[int]:
    """The Messages column of the last scenario screen, one count per message line."""
    path = workdir / "screen.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    last = text.rfind("Scenario Screen")
    block = text[last:text.find("Statistics Screen", last)] if last >= 0 else ""
    return [int(n) for n in _MESSAGE_RE.findall(block)]


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _signals(server: TreeServer, since: float, until: float) -> dict[str, float]:
    """Peaks of the `overload_signals` lines logged between two wall-clock times."""
    peaks = {"lag_ms": 0.0, "udp_datagrams": 0.0, "udp_bytes": 0.0, "transactions": 0.0}
    for line in server.log_path.read_text(errors="replace").splitlines():
        if "overload_signals" not in line:
            continue
        try:
            entry = json.loads(line)
            stamp = entry.get("timestamp")
            at = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone \
                if isinstance(stamp, str) else None
        except (ValueError, TypeError):
            continue
        if at is None or not since - 1 <= at <= until + 1:
            continue
        for key in peaks:
            peaks[key] = max(peaks[key], float(entry.get(key, 0)))
    return peaks


def _rss_sampler(pid: int, done: threading.Event, peak: list[float]) -> None:
    while not done.wait(0.25):
        try:
            peak[0] = max(peak[0], rss_mib(pid))
        except OSError:
            return


def call_step(side: Side, rate: float, seconds: float, hold_ms: int, workdir: Path,
              signals: bool) -> Row:
    server = side.server
    calls = max(1, int(rate * seconds))
    drops = udp_drops(server.port)
    peak = [rss_mib(server.pid)]
    done = threading.Event()
    sampler = threading.Thread(target=_rss_sampler, args=(server.pid, done, peak), daemon=True)
    sampler.start()
    wall0 = time.time()
    began = time.monotonic()
    spike = _sipp(server, "overload_uac.xml", rate, calls, side.uac_port, workdir / "spike",
                  ["-d", str(hold_ms)])
    # The probe starts when the offered window ends.
    time.sleep(max(0.0, began + seconds - time.monotonic()))
    probe_began = time.monotonic() - began
    probe = _sipp(server, "overload_uac.xml", PROBE_RATE, PROBE_RATE * 4, side.probe_port,
                  workdir / "probe", ["-d", "100"])
    _wait(spike, seconds + hold_ms / 1000 + 60)
    _wait(probe, 60)
    done.set()
    sampler.join()
    rtt = _rtt(workdir / "spike")
    counts = _message_counts(workdir / "spike")
    refused = sum(counts[i] for i in REFUSED_503 if i < len(counts))
    established = counts[INVITE_200] if len(counts) > INVITE_200 else 0
    horizon_ms = (seconds + hold_ms / 1000 + 2) * 1000
    completed = sum(1 for at, _ in rtt[COMPLETED] if at <= horizon_ms)
    pdds = sorted(v for _, v in rtt[PDD])
    back = None
    prompt = [at - v for at, v in _rtt(workdir / "probe")[PDD] if v <= BACK_PDD_MS]
    if prompt:
        # The probe's clock starts with it; its first call left at ~0.
        back = max(0.0, min(prompt) / 1000)
    # The probe sipp started at probe_began (>= seconds): add any late start.
    if back is not None:
        back += max(0.0, probe_began - seconds)
    byes = counts[8] if len(counts) > 8 else 0
    row = Row(side.name, "calls", rate, calls, completed, refused, established, byes, seconds,
              (_pct(pdds, 0.5), _pct(pdds, 0.99)), peak[0], back,
              udp_drops(server.port) - drops)
    if signals:
        row.signals = _signals(server, wall0, time.time())
    return row


# Message lines of register_overload.xml on sipp's screen, in scenario order.
REG_REFUSED, REG_OK = (1, 4), 5
REG_COMPLETED = 2  # rtd 2: the authenticated REGISTER to its 200
REFRESH_USERS = 400  # bindings registered before the steps, refreshed during each spike
REFRESH_RATE = 50    # refreshes/s during each spike


def _injection(path: Path, indices: list[int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("SEQUENTIAL\n" + "".join(
        f"{user(i)};[authentication username={user(i)} password={password(i)}]\n"
        for i in indices))
    return path


def _take_users(side: Side, count: int) -> list[int]:
    first = side.next_user
    side.next_user += count
    return list(range(first, first + count))


def _register_counts(workdir: Path) -> tuple[int, int]:
    """(completed, refused) registrations of one sipp run of register_overload.xml."""
    counts = _message_counts(workdir)
    refused = sum(counts[i] for i in REG_REFUSED if i < len(counts))
    return (counts[REG_OK] if len(counts) > REG_OK else 0), refused


def register_bindings(side: Side, workdir: Path) -> int:
    """Register the refresh pool (from the port its refreshes will come from); how many did."""
    side.refresh_users = _take_users(side, REFRESH_USERS)
    csv = _injection(workdir / "users.csv", side.refresh_users)
    proc = _sipp(side.server, "register_overload.xml", 200, REFRESH_USERS, side.refresh_port,
                 workdir, ["-inf", str(csv)])
    _wait(proc, 60)
    return _register_counts(workdir)[0]


def register_step(side: Side, rate: float, seconds: float, workdir: Path,
                  signals: bool) -> Row:
    """Initial REGISTERs (users never registered) at `rate` for `seconds`; meanwhile
    refreshes of the pool's bindings at REFRESH_RATE, and after the window a probe
    of new users at PROBE_RATE (back: its first registration answered promptly)."""
    server = side.server
    count = max(1, int(rate * seconds))
    spike_csv = _injection(workdir / "spike" / "users.csv", _take_users(side, count))
    refreshes = int(REFRESH_RATE * seconds)
    pool = side.refresh_users
    refresh_csv = _injection(workdir / "refresh" / "users.csv",
                             [pool[k % len(pool)] for k in range(refreshes)])
    probe_csv = _injection(workdir / "probe" / "users.csv", _take_users(side, PROBE_RATE * 4))
    drops = udp_drops(server.port)
    peak = [rss_mib(server.pid)]
    done = threading.Event()
    sampler = threading.Thread(target=_rss_sampler, args=(server.pid, done, peak), daemon=True)
    sampler.start()
    wall0 = time.time()
    began = time.monotonic()
    cpu0 = cpu_seconds(server.pid)
    spike = _sipp(server, "register_overload.xml", rate, count, free_udp_port(),
                  workdir / "spike", ["-inf", str(spike_csv)])
    refresh = _sipp(server, "register_overload.xml", REFRESH_RATE, refreshes, side.refresh_port,
                    workdir / "refresh", ["-inf", str(refresh_csv)])
    time.sleep(max(0.0, began + seconds - time.monotonic()))
    cpu = (cpu_seconds(server.pid) - cpu0) / (time.monotonic() - began)  # over the window
    probe_began = time.monotonic() - began
    probe = _sipp(server, "register_overload.xml", PROBE_RATE, PROBE_RATE * 4, free_udp_port(),
                  workdir / "probe", ["-inf", str(probe_csv)])
    _wait(spike, seconds + 60)
    _wait(refresh, seconds + 60)
    _wait(probe, 60)
    done.set()
    sampler.join()
    horizon_ms = (seconds + 2) * 1000
    completed = sum(1 for at, _ in _rtt(workdir / "spike")[REG_COMPLETED] if at <= horizon_ms)
    _, refused = _register_counts(workdir / "spike")
    refreshed, refresh_refused = _register_counts(workdir / "refresh")
    values = sorted(v for samples in _rtt(workdir / "spike").values() for _, v in samples)
    back = None
    prompt = [at - v for at, v in _rtt(workdir / "probe")[REG_COMPLETED] if v <= BACK_PDD_MS]
    if prompt:
        # The time its authenticated REGISTER left: a registration answered promptly.
        back = max(0.0, min(prompt) / 1000) + max(0.0, probe_began - seconds)
    row = Row(side.name, "register", rate, count, completed, refused, 0, 0, seconds,
              (_pct(values, 0.5), _pct(values, 0.99)), peak[0], back,
              udp_drops(server.port) - drops,
              refresh=(refreshes, refreshed, refresh_refused), cpu=cpu)
    if signals:
        row.signals = _signals(server, wall0, time.time())
    return row


def _pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


def print_header(signals: bool) -> None:
    extra = f"{'lag ms':>8}{'queue':>7}{'KiB':>7}{'tx':>6}" if signals else ""
    print(f"{'tree':<8}{'what':<9}{'offered/s':>10}{'completed/s':>12}{'refused':>8}"
          f"{'failed':>7}{'lost':>6}{'PDD p50/p99 ms':>17}{'RSS MiB':>9}{'back s':>8}"
          f"{'drops':>7}{extra}", flush=True)


def print_register_header(signals: bool) -> None:
    extra = f"{'lag ms':>8}{'queue':>7}{'KiB':>7}{'tx':>6}" if signals else ""
    print(f"{'tree':<8}{'what':<9}{'offered/s':>10}{'completed/s':>12}{'refused':>8}"
          f"{'failed':>7}{'refreshes ok/refused/of':>25}{'RTT p50/p99 ms':>17}{'RSS MiB':>9}"
          f"{'back s':>8}{'drops':>7}{'CPU':>6}{extra}", flush=True)


def _signal_columns(row: Row, signals: bool) -> str:
    if signals and row.signals and "lag_ms" in row.signals:
        s = row.signals
        return (f"{s['lag_ms']:>8.0f}{s['udp_datagrams']:>7.0f}{s['udp_bytes'] / 1024:>7.0f}"
                f"{s['transactions']:>6.0f}")
    return ""


def print_row(row: Row, signals: bool) -> None:
    back = f"{row.back:.1f}" if row.back is not None else ">4"
    extra = _signal_columns(row, signals)
    if row.what == "register":
        attempted, ok, refused = row.refresh or (0, 0, 0)
        refresh = f"{ok}/{refused}/{attempted}"
        print(f"{row.side:<8}{row.what:<9}{row.offered:>10.0f}{row.goodput:>12.0f}"
              f"{row.refused:>8}{row.failed:>7}{refresh:>25}{row.pdd[0]:>9.0f} / "
              f"{row.pdd[1]:<5.0f}{row.rss_peak:>9.0f}{back:>8}{row.drops:>7}"
              f"{100 * row.cpu:>5.0f}%{extra}", flush=True)
        return
    print(f"{row.side:<8}{row.what:<9}{row.offered:>10.0f}{row.goodput:>12.0f}{row.refused:>8}"
          f"{row.failed:>7}{row.lost:>6}{row.pdd[0]:>9.0f} / {row.pdd[1]:<5.0f}"
          f"{row.rss_peak:>9.0f}{back:>8}{row.drops:>7}{extra}", flush=True)


def summarise(sides: list[Side], what: str, clean: float) -> None:
    """The 2x figure against the best at or below the clean rate, per tree."""
    for side in sides:
        rows = [r for r in side.rows if r.what == what]
        best = max((r.goodput for r in rows if r.offered <= clean), default=0.0)
        at2 = [r for r in rows if abs(r.offered - 2 * clean) < 1]
        if best and at2:
            print(f"{side.name} {what}: at 2x offered, completed {at2[0].goodput:.0f}/s = "
                  f"{100 * at2[0].goodput / best:.0f}% of the best at or below the clean "
                  f"rate ({best:.0f}/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, help="a second tree to compare (e.g. main)")
    parser.add_argument("--clean", type=float, default=300, help="the clean call rate, calls/s")
    parser.add_argument("--factors", default="0.5,1,2,3", help="offered rates as multiples")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each spike")
    parser.add_argument("--hold", type=int, default=1000, help="ms each call is held")
    parser.add_argument("--register", action="store_true", help="REGISTER steps too")
    parser.add_argument("--no-calls", action="store_true", help="no call steps")
    parser.add_argument("--register-clean", type=float, default=800,
                        help="the clean REGISTER rate, /s")
    parser.add_argument("--signals", action="store_true",
                        help="log and print the overload signals (after tree)")
    parser.add_argument("--observe", action="store_true",
                        help="the after tree with shedding off (signals only)")
    parser.add_argument("--tune", action="append", default=[], metavar="KEY:VALUE",
                        help="an overload setting for the after tree (repeatable), e.g. "
                        "drop_factor:10, to compare tunings: --before the same tree")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    args = parser.parse_args()
    exit_on_sigterm()
    factors = [float(f) for f in args.factors.split(",")]
    users = int(sum(factors) * args.register_clean * args.seconds * 1.1) + REFRESH_USERS + \
        len(factors) * PROBE_RATE * 4 * 2 + 100 if args.register else 0
    workdir = Path(tempfile.mkdtemp(prefix="bench-overload-"))
    trees = [("after", ROOT)] + ([("before", args.before.resolve())] if args.before else [])
    sides: list[Side] = []
    began = time.monotonic()
    try:
        for name, tree in trees:
            uac, probe, uas = free_udp_port(), free_udp_port(), free_udp_port()
            overload = ""
            if name == "after":
                entries = ("  enabled: false\n" if args.observe else "") + (
                    "  report_interval: 0.25\n" if args.signals or args.observe else "")
                entries += "".join(f"  {item.replace(':', ': ', 1)}\n" for item in args.tune)
                overload = f"overload:\n{entries}" if entries else ""
            # Signalling only (sipp sends no RTP); and two embedded relays
            # would both want the relay's default ports.
            overload += "media:\n  mode: direct\n"
            server = TreeServer(tree, workdir / name, uac, probe, uas, overload, users)
            startup = server.start()
            answerer = Answerer(workdir / name / "uas", uas, 60_000)
            sides.append(Side(name, server, answerer, uac, probe, free_udp_port()))
            print(f"{name}: {tree} on udp:127.0.0.1:{server.port} (pid {server.pid}, "
                  f"ready in {startup:.1f} s)", flush=True)
        if not args.no_calls:
            print(f"calls held {args.hold} ms, spikes of {args.seconds:g} s, clean rate "
                  f"{args.clean:g}/s; the machine is shared: compare the trees, not absolutes")
            print_header(args.signals)
            for factor in factors:
                for side in sides:
                    side.server.wait_idle(limit=40, threshold=0.15)
                    row = call_step(side, args.clean * factor, args.seconds, args.hold,
                                    workdir / side.name / f"calls-{factor:g}", args.signals)
                    side.rows.append(row)
                    print_row(row, args.signals)
        if args.register:
            for side in sides:
                done = register_bindings(side, workdir / side.name / "bindings")
                print(f"{side.name}: {done} of {REFRESH_USERS} bindings registered, refreshed "
                      f"at {REFRESH_RATE}/s during each spike", flush=True)
            print(f"REGISTER with digest (first REGISTER, 401, authenticated REGISTER, 200) "
                  f"over users never registered, spikes of {args.seconds:g} s, clean rate "
                  f"{args.register_clean:g}/s")
            print_register_header(args.signals)
            for factor in factors:
                for side in sides:
                    side.server.wait_idle(limit=40, threshold=0.15)
                    row = register_step(side, args.register_clean * factor, args.seconds,
                                        workdir / side.name / f"register-{factor:g}",
                                        args.signals)
                    side.rows.append(row)
                    print_row(row, args.signals)
        summarise(sides, "calls", args.clean)
        summarise(sides, "register", args.register_clean)
        print(f"run time {time.monotonic() - began:.0f} s")
    finally:
        for side in sides:
            side.uas.stop()
            side.server.stop()
        if args.keep:
            print(f"work dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
