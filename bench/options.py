"""OPTIONS throughput of a real `softswitch run`, driven by sipp over UDP on loopback.

Starts the server (log level warning unless --log-level, temporary data dir,
a free port), then runs sipp's OPTIONS scenario (bench/sipp/options.xml) at
increasing rates, each for a bounded number of requests, and prints per
rate: attempted and achieved rate, failures, p50/p99 response time (sipp
rtd, 1 ms resolution), the server's CPU (100% = one core) and sipp's. Ends
with the highest clean rate: < 0.1% failures and >= 90% of it achieved.
sipp shares the machine's cores with the server: read the server CPU
column with it.

Run: .venv/bin/python bench/options.py [--quick] [--rates 1000,2000] [--seconds 5]
     [--profile py-spy|cprofile] [--keep]
Figures only: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.sipp_load import (  # noqa: E402
    ROOT,
    ServerUnderTest,
    StepResult,
    exit_on_sigterm,
    print_header,
    print_row,
    rss_mib,
    run_step,
    summarise_profile,
)

RATES = [1000, 2000, 4000, 6000, 8000, 10000]
QUICK_RATES = [1000, 4000]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", help=f"comma-separated calls/s [default: {','.join(map(str, RATES))}]")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each step")
    parser.add_argument("--quick", action="store_true", help="two short steps")
    parser.add_argument("--log-level", default="warning", choices=["info", "warning", "error"])
    parser.add_argument("--profile", choices=["py-spy", "cprofile"],
                        help="profile the server during the whole run, print its top functions")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, profile)")
    args = parser.parse_args()
    exit_on_sigterm()
    rates = [int(r) for r in args.rates.split(",")] if args.rates else (
        QUICK_RATES if args.quick else RATES)
    seconds = 2.0 if args.quick else args.seconds

    workdir = Path(tempfile.mkdtemp(prefix="bench-options-"))
    server = ServerUnderTest(workdir, ROOT / "conf" / "directory.yaml", args.log_level, args.profile)
    results: list[StepResult] = []
    try:
        server.start()
        print(f"softswitch run on udp:127.0.0.1:{server.port} (pid {server.pid}, log {args.log_level}"
              f"{', profile ' + args.profile if args.profile else ''}); "
              f"{seconds:g} s a step; sipp and the server share the cores")
        print_header(["OPTIONS"])
        began = time.monotonic()
        for rate in rates:
            server.wait_idle()
            result = run_step(server, "options.xml", rate, int(rate * seconds),
                              workdir / f"options-{rate}", timeout=seconds + 15)
            results.append(result)
            print_row(result, [1])
            if result.failure_percent > 20:
                print("more than 20% failures: stopping here")
                break
        print(f"load time {time.monotonic() - began:.0f} s; server RSS at the end: "
              f"{rss_mib(server.pid):.0f} MiB")
    finally:
        server.stop()
    clean = [r for r in results if r.clean]
    if clean:
        best = max(clean, key=lambda r: r.achieved)
        print(f"highest clean rate (< 0.1% failures, >= 90% achieved): {best.rate}/s attempted, "
              f"{best.achieved:,.0f}/s achieved, p50/p99 {best.rtd[1][0]:.0f}/{best.rtd[1][1]:.0f} ms, "
              f"server CPU {best.server_cpu:.0f}%")
    else:
        print("no rate ran with < 0.1% failures")
    if args.profile:
        summarise_profile(server)
    if args.keep or args.profile:
        print(f"work dir kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
