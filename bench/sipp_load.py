"""Load steps with sipp against a real `softswitch run`, for bench/options.py and bench/register.py.

`ServerUnderTest` starts the server on a free loopback UDP port with a
temporary data dir (optionally under py-spy or cProfile) and reads its CPU
time and memory from /proc. `run_step` runs one sipp scenario at one rate
for a bounded number of calls and returns what a table row needs: attempted
and achieved rate, failures, p50/p99 of a response-time distribution
(`-trace_rtt`), the server's CPU share and sipp's own.
"""

from __future__ import annotations

import collections
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = Path(__file__).resolve().parent / "sipp"
TICKS = os.sysconf("SC_CLK_TCK")
MAX_FAILURE_PERCENT = 0.1  # "clean" rate: fewer failures than this...
MIN_ACHIEVED = 0.9         # ...and at least this share of the attempted rate achieved


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def exit_on_sigterm() -> None:
    """SIGTERM ends the benchmark through its `finally`, which stops the server."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()  # the name may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _probe(port: int, timeout: float) -> bool:
    """One OPTIONS over UDP; True when any answer comes back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(timeout)
        local = s.getsockname()[1]
        branch = "z9hG4bK" + uuid.uuid4().hex
        request = (
            f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch={branch};rport\r\n"
            f"From: <sip:probe@127.0.0.1:{local}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:127.0.0.1:{port}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
        s.sendto(request, ("127.0.0.1", port))
        try:
            s.recvfrom(65536)
        except TimeoutError:
            return False
        return True


class ServerUnderTest:
    """`softswitch run` on 127.0.0.1:<free port>/udp, its files in `workdir`.

    profile: None, "py-spy" (attached sampler, raw collapsed stacks) or
    "cprofile" (the server runs under `python -m cProfile`; costs ~2x speed).
    """

    def __init__(self, workdir: Path, directory: Path, log_level: str = "warning",
                 profile: str | None = None, extra_config: str = "") -> None:
        self.workdir = workdir
        self.port = free_udp_port()
        self.data_dir = workdir / "data"
        self.log_path = workdir / "server.log"
        self.profile = profile
        self.profile_path = workdir / ("server.pyspy.txt" if profile == "py-spy" else "server.prof")
        self.config_path = workdir / "softswitch.yaml"
        self.config_path.write_text(
            f"listen:\n  - udp:127.0.0.1:{self.port}\n"
            f"directory: {directory}\n"
            f"dialplan: {ROOT / 'conf' / 'dialplan.yaml'}\n"
            f"log:\n  format: json\n  level: {log_level}\n{extra_config}")
        self.process: subprocess.Popen[bytes] | None = None
        self.spy: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 120.0) -> float:
        """Start and wait until it answers OPTIONS; returns the start time in seconds."""
        cmd = [sys.executable]
        if self.profile == "cprofile":
            cmd += ["-m", "cProfile", "-o", str(self.profile_path)]
        cmd += ["-m", "softswitch", "run", "--config", str(self.config_path),
                "--data-dir", str(self.data_dir)]
        began = time.monotonic()
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=dict(os.environ, PYTHONUNBUFFERED="1"))
        deadline = began + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_tail()}")
            if _probe(self.port, 0.2):
                break
        else:
            self.stop()
            raise RuntimeError(f"server not ready after {timeout}s:\n{self.log_tail()}")
        started = time.monotonic() - began
        if self.profile == "py-spy":
            spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
            if spy is None:
                raise RuntimeError("py-spy not found: .venv/bin/pip install py-spy")
            self.spy = subprocess.Popen(
                [spy, "record", "--pid", str(self.pid), "--format", "raw", "--rate", "100",
                 "--nonblocking", "-o", str(self.profile_path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return started

    def restart(self, timeout: float = 600.0) -> float:
        """Stop (SIGTERM) and start again on the same port and data dir, unprofiled."""
        self.stop()
        self.profile = None
        self.spy = None
        return self.start(timeout)

    def wait_idle(self, limit: float = 10.0, threshold: float = 0.25) -> None:
        """Wait (at most `limit` s) until the server uses < threshold of a core."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            before = cpu_seconds(self.pid)
            time.sleep(0.3)
            if (cpu_seconds(self.pid) - before) / 0.3 < threshold:
                return

    def stop(self) -> None:
        if self.spy is not None and self.spy.poll() is None:
            self.spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                self.spy.wait(30)
            except subprocess.TimeoutExpired:
                self.spy.kill()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


@dataclass
class StepResult:
    rate: int
    calls: int
    successful: int
    failed: int
    retransmissions: int
    achieved: float          # successful calls per second of the step
    rtd: dict[int, tuple[float, float]]  # rtd number -> (p50, p99) in ms
    server_cpu: float        # percent of one core
    sipp_cpu: float
    wall: float

    @property
    def failure_percent(self) -> float:
        return 100.0 * (self.calls - self.successful) / self.calls if self.calls else 100.0

    @property
    def clean(self) -> bool:
        return (self.failure_percent < MAX_FAILURE_PERCENT
                and self.achieved >= MIN_ACHIEVED * self.rate)


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(len(values) * p))]


def run_step(server: ServerUnderTest, scenario: str, rate: int, calls: int, workdir: Path,
             extra: list[str] | None = None, timeout: float = 60.0,
             limit: int | None = None, local_port: int | None = None) -> StepResult:
    """One sipp run: `calls` calls of `scenario` at `rate` calls/s, UDP, then its figures.

    `limit` caps the calls in progress (sipp -l): a closed loop that runs as
    fast as the server answers, up to `rate`, without flooding its socket.
    `local_port`: sipp's port; keep one across steps so that a user's
    Contact stays the same and registering again refreshes its binding.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    screen, errors = workdir / "screen.log", workdir / "errors.log"
    cmd = ["sipp", f"127.0.0.1:{server.port}", "-sf", str(SCENARIOS / scenario),
           "-i", "127.0.0.1", "-p", str(local_port or free_udp_port()),
           "-r", str(rate), "-rp", "1000", "-m", str(calls), "-l", str(limit or max(1000, rate * 5)),
           "-buff_size", "4194304", "-timeout", f"{int(timeout)}s", "-timeout_error",
           "-nostdin", "-trace_screen", "-screen_file", str(screen),
           "-trace_err", "-error_file", str(errors),
           "-trace_rtt", "-rtt_freq", "100", *(extra or [])]
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_before = cpu_seconds(server.pid)
    began = time.monotonic()
    try:
        subprocess.run(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=timeout + 15, check=False)
    except subprocess.TimeoutExpired:
        pass
    wall = time.monotonic() - began
    server_cpu = 100.0 * (cpu_seconds(server.pid) - cpu_before) / wall
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    sipp_cpu = 100.0 * ((children.ru_utime - children_before.ru_utime)
                        + (children.ru_stime - children_before.ru_stime)) / wall

    text = screen.read_text(errors="replace") if screen.exists() else ""
    successful = _counter(text, "Successful call")
    failed = _counter(text, "Failed call")
    retrans = 0
    for line in text.splitlines():
        if "---------->" in line:  # a message sipp sends: "NAME ---> [RTD] count retrans ..."
            numbers = [int(t) for t in line.split("---------->", 1)[1].split() if t.isdigit()]
            retrans += numbers[1] if len(numbers) > 1 else 0
    times: dict[int, list[float]] = collections.defaultdict(list)
    last_ms = 0.0
    for rtt_file in workdir.glob("*_rtt.csv"):
        with rtt_file.open() as fh:
            next(fh, None)
            for line in fh:
                parts = line.strip().split(";")
                if len(parts) == 3:
                    last_ms = max(last_ms, float(parts[0]))
                    times[int(parts[2])].append(float(parts[1]))
        rtt_file.unlink()  # a step's file is large and read once
    rtd = {}
    for number, values in sorted(times.items()):
        values.sort()
        rtd[number] = (_percentile(values, 0.50), _percentile(values, 0.99))
    # Each successful call records one value per rtd; sipp writes them in
    # batches of -rtt_freq, so count what was written against its last time.
    answered = len(times[max(times)]) if times else 0
    achieved = answered / (last_ms / 1000) if last_ms > 0 else 0.0
    return StepResult(rate, calls, successful, failed, retrans, achieved, rtd,
                      server_cpu, sipp_cpu, wall)


def _counter(text: str, name: str) -> int:
    # The last statistics screen: "Successful call | <periodic> | <cumulative>"
    values = re.findall(rf"{name}\s*\|\s*\d+\s*\|\s*(\d+)", text)
    return int(values[-1]) if values else 0


def print_header(rtd_names: list[str]) -> None:
    cols = "".join(f"{name + ' p50/p99 ms':>26}" for name in rtd_names)
    print(f"{'rate/s':>8}{'achieved/s':>12}{'calls':>9}{'fail %':>8}{'retrans':>9}{cols}"
          f"{'server CPU':>12}{'sipp CPU':>10}", flush=True)


def print_row(r: StepResult, rtd_numbers: list[int]) -> None:
    cols = ""
    for n in rtd_numbers:
        p50, p99 = r.rtd.get(n, (float("nan"), float("nan")))
        cols += f"{p50:>16.0f} / {p99:<7.0f}"
    print(f"{r.rate:>8}{r.achieved:>12,.0f}{r.calls:>9}{r.failure_percent:>8.2f}"
          f"{r.retransmissions:>9}{cols}{r.server_cpu:>11.0f}%{r.sipp_cpu:>9.0f}%", flush=True)


def summarise_profile(server: ServerUnderTest, top: int = 15) -> None:
    """Print the top functions by own time and by inclusive time."""
    path = server.profile_path
    if not path.exists():
        print(f"no profile written ({path})")
        return
    print(f"\nprofile: {path}")
    if server.profile == "cprofile":
        import pstats
        stats = pstats.Stats(str(path))
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
        return
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        print("empty profile")
        return
    for title, counter in (("own time", own), ("inclusive time", inclusive)):
        print(f"top {top} by {title} ({total} samples of the busy server):")
        for frame, count in counter.most_common(top):
            print(f"  {100.0 * count / total:5.1f}%  {_short(frame)}")


def _short(frame: str) -> str:
    # "func (/long/path/site-packages/twisted/x.py)" -> "func (twisted/x.py)"
    return re.sub(r"\((?:.*/site-packages/|.*/work/main/|/usr/lib/python3[.\d]*/)", "(", frame)
