"""Authenticated REGISTER throughput and location-store capacity of a real `softswitch run`.

Generates a temporary directory.yaml with N distinct users (domain
pbx.example.com offering MD5 only, since sipp answers MD5 alone) and sipp
injection files, starts the server (log level warning unless --log-level,
temporary data dir, a free UDP port) and then:

1. capacity, first point: registers the first 10,000 users (Expires 7200)
   in a closed loop (at most --capacity-window REGISTERs in progress, so as
   fast as the server answers without flooding it);
2. rate steps: sipp's REGISTER-with-auth scenario (bench/sipp/register.xml:
   REGISTER, 401, authenticated REGISTER, 200) at increasing rates over
   users not registered yet; per rate: achieved rate, failures, p50/p99 of
   the 401 and of the authenticated round trip, server and sipp CPU;
3. capacity, last point: registers the remaining users up to 100,000.

At each capacity point it prints the bindings the server holds (its SQLite
file, opened read-only) and its RSS (VmRSS). The first row is the server
with the directory loaded and no binding; the last is taken again after
--settle seconds, once the UDP transactions (Timer J, 32 s) have ended.

Run: .venv/bin/python bench/register.py [--quick] [--users 10000,100000]
     [--rates 500,1000] [--seconds 5] [--capacity-rate 3000] [--settle 35]
     [--profile py-spy|cprofile] [--keep]
Figures only: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.sipp_load import (  # noqa: E402
    ServerUnderTest,
    StepResult,
    exit_on_sigterm,
    free_udp_port,
    print_header,
    print_row,
    rss_mib,
    run_step,
    summarise_profile,
)

DOMAIN = "pbx.example.com"
FIRST_USER = 200000  # users are "200000", "200001", ...
RATES = [250, 500, 1000, 1500, 2000, 3000]
QUICK_RATES = [500, 1500]
USERS = [10000, 100000]
QUICK_USERS = [1000, 5000]
SIPP_PORT = free_udp_port()  # one Contact per user for the whole run


def user(i: int) -> str:
    return str(FIRST_USER + i)


def password(i: int) -> str:
    return f"pw{FIRST_USER + i}"


def write_directory(path: Path, users: int) -> None:
    """One domain, MD5 only, `users` accounts with clear-text passwords."""
    lines = ["domains:", f"  - name: {DOMAIN}", "    algorithms: [MD5]", "    users:"]
    lines += [f'      - {{user: "{user(i)}", password: "{password(i)}"}}' for i in range(users)]
    path.write_text("\n".join(lines) + "\n")


def write_injection(path: Path, indices: range | list[int]) -> None:
    """sipp injection file: user;[authentication ...] per line, used in order."""
    lines = ["SEQUENTIAL"]
    lines += [f"{user(i)};[authentication username={user(i)} password={password(i)}]"
              for i in indices]
    path.write_text("\n".join(lines) + "\n")


def registered_aors(server: ServerUnderTest) -> set[str]:
    db = server.data_dir / "location.sqlite"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {row[0] for row in conn.execute("SELECT DISTINCT aor FROM bindings")}
    finally:
        conn.close()


def count_bindings(server: ServerUnderTest) -> int:
    db = server.data_dir / "location.sqlite"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM bindings").fetchone()[0])
    finally:
        conn.close()


def register_users(server: ServerUnderTest, workdir: Path, indices: range | list[int], rate: int,
                   window: int, name: str) -> StepResult:
    csv = workdir / f"{name}.csv"
    write_injection(csv, indices)
    calls = len(indices)
    # Bounded by time: 300/s is well below what the server does.
    return run_step(server, "register.xml", rate, calls, workdir / name,
                    extra=["-inf", str(csv)], timeout=calls / 300 + 30, limit=window,
                    local_port=SIPP_PORT)


def print_capacity(server: ServerUnderTest, label: str, result: StepResult | None) -> None:
    took = f"{result.wall:6.1f} s, {result.achieved:,.0f}/s, " \
           f"{result.failure_percent:.2f}% failed" if result else ""
    print(f"{label:<28}{count_bindings(server):>10,}{rss_mib(server.pid):>10.0f} MiB   {took}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", help="comma-separated binding counts to reach "
                        f"[default: {','.join(map(str, USERS))}]")
    parser.add_argument("--rates", help=f"comma-separated REGISTER/s [default: {','.join(map(str, RATES))}]")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each rate step")
    parser.add_argument("--capacity-rate", type=int, default=3000,
                        help="highest REGISTER/s for the capacity runs")
    parser.add_argument("--capacity-window", type=int, default=50,
                        help="REGISTERs in progress at most in the capacity runs")
    parser.add_argument("--settle", type=float, default=35.0,
                        help="seconds to wait before the last RSS reading (0: skip it)")
    parser.add_argument("--quick", action="store_true", help="small counts, two short steps")
    parser.add_argument("--log-level", default="warning", choices=["info", "warning", "error"])
    parser.add_argument("--profile", choices=["py-spy", "cprofile"],
                        help="profile the server during the whole run, print its top functions")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, profile)")
    args = parser.parse_args()
    exit_on_sigterm()
    counts = sorted(int(n) for n in args.users.split(",")) if args.users else (
        QUICK_USERS if args.quick else USERS)
    rates = [int(r) for r in args.rates.split(",")] if args.rates else (
        QUICK_RATES if args.quick else RATES)
    seconds = 2.0 if args.quick else args.seconds
    total = counts[-1]

    workdir = Path(tempfile.mkdtemp(prefix="bench-register-"))
    directory = workdir / "directory.yaml"
    write_directory(directory, total)
    server = ServerUnderTest(workdir, directory, args.log_level, args.profile)
    steps: list[StepResult] = []
    try:
        started = server.start(timeout=600)
        print(f"softswitch run on udp:127.0.0.1:{server.port} (pid {server.pid}, log "
              f"{args.log_level}{', profile ' + args.profile if args.profile else ''}); "
              f"{total:,} users in the directory, ready in {started:.1f} s")
        print(f"\n{'capacity':<28}{'bindings':>10}{'RSS':>14}   registering took")
        print_capacity(server, "directory loaded", None)
        result: StepResult | None = register_users(server, workdir, range(0, counts[0]), args.capacity_rate,
                                args.capacity_window, f"capacity-{counts[0]}")
        done = counts[0]
        print_capacity(server, f"after {counts[0]:,} users", result)

        print(f"\nREGISTER with digest, {seconds:g} s a step, distinct users; "
              f"sipp and the server share the cores")
        print_header(["401", "auth REGISTER"])
        for rate in rates:
            calls = int(rate * seconds)
            # Users not registered yet while there are some, then refreshes.
            indices = [(done + k) % total for k in range(calls)]
            done += calls
            csv = workdir / f"rate-{rate}.csv"
            write_injection(csv, indices)
            server.wait_idle()
            step = run_step(server, "register.xml", rate, calls, workdir / f"rate-{rate}",
                            extra=["-inf", str(csv)], timeout=seconds + 15,
                            local_port=SIPP_PORT)
            steps.append(step)
            print_row(step, [1, 2])
            if step.failure_percent > 20:
                print("more than 20% failures: stopping here")
                break
        clean = [r for r in steps if r.clean]
        if clean:
            best = max(clean, key=lambda r: r.achieved)
            print(f"highest clean rate (< 0.1% failures, >= 90% achieved): {best.rate}/s "
                  f"attempted, {best.achieved:,.0f}/s achieved, p50/p99 401 "
                  f"{best.rtd[1][0]:.0f}/{best.rtd[1][1]:.0f} ms, auth REGISTER "
                  f"{best.rtd[2][0]:.0f}/{best.rtd[2][1]:.0f} ms, server CPU {best.server_cpu:.0f}%")
        else:
            print("no rate ran with < 0.1% failures")

        print(f"\n{'capacity':<28}{'bindings':>10}{'RSS':>14}   registering took")
        print_capacity(server, f"after {counts[0]:,} users + steps", None)
        for count in counts[1:]:
            start = min(done, count)
            if start < count:
                server.wait_idle()
                result = register_users(server, workdir, range(start, count), args.capacity_rate,
                                        args.capacity_window, f"capacity-{count}")
                done = count
            else:
                result = None
            print_capacity(server, f"after {count:,} users", result)
            aors = registered_aors(server)
            missing = [i for i in range(count) if f"{user(i)}@{DOMAIN}" not in aors]
            if missing:
                # Seen here: the server's table of live nonces (65,536, kept
                # 300 s) fills and further credentials are challenged again.
                # A restart empties it; the bindings come back from SQLite.
                print(f"{len(missing):,} users not registered: restarting the server "
                      f"(nonce-count table) and registering them")
                took = server.restart()
                print_capacity(server, f"restarted ({took:.0f} s)", None)
                result = register_users(server, workdir, missing, args.capacity_rate,
                                        args.capacity_window, f"capacity-{count}-rest")
                print_capacity(server, f"after {count:,} users", result)
        settle = 0.0 if args.quick else args.settle
        if settle > 0:
            time.sleep(settle)
            print_capacity(server, f"{settle:g} s later", None)
    finally:
        server.stop()
    if args.profile:
        summarise_profile(server)
    if args.keep or args.profile:
        print(f"work dir kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
