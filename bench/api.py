"""Benchmark: authorised, audited profile reads over HTTP, and `cdp audit verify` speed.

One uvicorn worker serves ``GET /v1/profiles/{id}`` (a support principal, purpose ``support``, so
each response carries decrypted email and phone) on 127.0.0.1; ``wrk`` (Debian package ``wrk``,
installed with ``apt-get install wrk``) generates the load from another process with a Lua script
that picks a random subject per request. The same endpoint is measured, in the same run, four
ways so that each cost shows:

* ``full``     — bearer token checked, policy decided, audit record appended and committed;
* ``no-audit`` — as ``full`` but the read runs in a plain read transaction (in the event loop,
                 as ``full`` does on SQLite), nothing recorded;
* ``no-auth``  — as ``full`` but the authorisation dependency is overridden by a fixed context
                 (no token lookup, no policy decision); the audit record is still written;
* ``bare``     — neither.

The switches exist only in this script (a FastAPI dependency override and a patched function in
the server process it starts); the application has no setting that turns either off.

Then ``verify``: the chain is extended to ``--verify-records`` records and verified as ``cdp audit
verify`` does it (ranges verified at once, one process per core), beside the same in one process
and the cost of only streaming the rows in one process (the floor a single pass pays).

Run: ``python bench/api.py [--subjects 2000] [--duration 10] [--connections 16] [--rounds 2]``.
The server logs at ``warning`` (the per-request info line is not part of what is measured) and
runs with ``CDP_RATE_LIMIT_PRINCIPAL_PER_SECOND=0`` (one token makes every request). Non-2xx
responses are counted and printed: a run with any is not a valid measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MODES = ("full", "no-audit", "no-auth", "bare")


# --------------------------------------------------------------------------- server process


def serve(mode: str, port: int) -> None:
    """Run the API in this process with the bench-only switches of ``mode``."""
    import uvicorn

    from cdp.api.app import create_app
    from cdp.logging import configure_logging

    configure_logging()
    app = create_app()
    if mode in ("no-auth", "bare"):
        _override_authorisation(app)
    if mode in ("no-audit", "bare"):
        _disable_audit()
    # the options ``cdp serve`` runs uvicorn with (its HTTP parser among them)
    from cdp.api.http_server import UVICORN_OPTIONS

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        workers=1,
        log_level="warning",
        access_log=False,
        **UVICORN_OPTIONS,
    )


def _override_authorisation(app: Any) -> None:
    from cdp.access.context import AccessContext
    from cdp.api import profiles

    fixed = AccessContext(
        principal_id="bench0000000000",
        principal_name="bench",
        roles=("support",),
        purpose="support",
        request_id="bench",
        client="127.0.0.1",
    )

    async def fixed_context() -> AccessContext:
        return fixed

    dependency = profiles.ProfileRead.__metadata__[0].dependency
    app.dependency_overrides[dependency] = fixed_context


def _disable_audit() -> None:
    from cdp.audit.service import AuditScope, _loop_reads
    from cdp.profiles import reads

    @contextlib.contextmanager
    def unaudited(*, runtime: Any, **_: Any) -> Iterator[AuditScope]:
        conn = runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED")
        try:
            with conn.begin():
                yield AuditScope(conn)
        finally:
            conn.close()

    async def unaudited_async(body: Any, *, runtime: Any, **_: Any) -> Any:
        # the same connection handling as the audited path (the loop's held connection)
        with _loop_reads(runtime.data_engine).use() as conn, conn.begin():
            return body(AuditScope(conn))

    reads.audited_read = unaudited  # type: ignore[assignment]
    reads.audited_read_async = unaudited_async


# --------------------------------------------------------------------------- set-up


def setup(home: Path, subjects: int) -> tuple[list[str], str]:
    """A fresh installation with ``subjects`` profiles (contact PII) and a support token."""
    os.environ["CDP_HOME"] = str(home)
    import sqlalchemy as sa

    from cdp.access.principals import create
    from cdp.bootstrap import initialize
    from cdp.clock import utcnow
    from cdp.db.models import Subject, new_subject_id
    from cdp.profiles.pii_records import write_sealed
    from cdp.runtime import get_runtime, reset_runtime
    from cdp.settings import get_settings, reset_settings

    reset_settings()
    initialize(get_settings())
    reset_runtime()
    rt = get_runtime()
    ids = [new_subject_id() for _ in range(subjects)]
    rt.vault.create_keys(ids)
    now = utcnow()
    subject_rows = [{"id": s, "created_at": now, "updated_at": now} for s in ids]
    sealed = {
        sid: rt.vault.encrypt_fields(
            sid, {"email": f"bench{i}@example.com", "phone": f"+1415555{i:04d}"[:12]}
        )
        for i, sid in enumerate(ids)
    }
    with rt.data_engine.begin() as conn:
        conn.execute(sa.insert(Subject), subject_rows)
        write_sealed(conn, sealed, existing=(), now=now)
    token = create(runtime=rt, name="bench-support", roles=["support"]).token
    return ids, token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError("the server did not start")


def lua_script(path: Path, ids: list[str], token: str, *, walk: bool = False) -> None:
    """wrk script: a random subject per request, or (``walk``, the warm-up) every subject in
    turn, so the measured run starts with every data key cached (the steady state)."""
    listed = ",".join(f'"{s}"' for s in ids)
    pick = "ids[(n % #ids) + 1]" if walk else "ids[math.random(#ids)]"
    path.write_text(
        f"local ids = {{{listed}}}\n"
        "local n = 0\n"
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        'wrk.headers["X-Purpose"] = "support"\n'
        "request = function()\n"
        "  n = n + 1\n"
        f'  return wrk.format("GET", "/v1/profiles/" .. {pick})\n'
        "end\n"
    )


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        return float("nan")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    port: int, script: Path, duration: int, connections: int, server_pid: int, subjects: int
) -> dict[str, float]:
    """Run wrk (after a warm-up walking every subject, 3 s or longer) and parse requests/s, p50,
    p99 and non-2xx; also the server's CPU milliseconds per request (less sensitive to a busy
    machine than requests/s) and the load average over the last minute."""
    url = f"http://127.0.0.1:{port}"
    warm = script.with_name("warm-up.lua")
    base = ["wrk", "-t1", f"-c{connections}", "--latency", "-s"]
    seconds, walked = 3, 0
    while walked < subjects:  # on a busy machine 3 s may not reach every subject: walk longer
        done = subprocess.run(
            [*base, str(warm), f"-d{seconds}s", url], capture_output=True, check=True, text=True
        ).stdout
        walked = int(re.search(r"(\d+) requests in", done).group(1))  # type: ignore[union-attr]
        seconds = math.ceil(seconds * 1.5 * subjects / max(walked, 1))
    cpu_before = _cpu_seconds(server_pid)
    out = subprocess.run(
        [*base, str(script), f"-d{duration}s", url], capture_output=True, check=True, text=True
    ).stdout
    cpu = _cpu_seconds(server_pid) - cpu_before
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    # Anchored to the latency distribution's lines: "Req/Sec ... 70.50%" also ends in "50%".
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "rps": rps,
        "p50": p50,
        "p99": p99,
        "non2xx": float(bad.group(1)) if bad else 0.0,
        "cpu_ms": 1000 * cpu / max(count, 1),
        "load": os.getloadavg()[0],
    }


def measure(
    mode: str, home: Path, script: Path, duration: int, conns: int, subjects: int
) -> dict[str, float]:
    port = free_port()
    env = {
        **os.environ,
        "CDP_HOME": str(home),
        "CDP_LOG_LEVEL": "warning",
        # One token makes every request: the per-token rate limit (a documented setting) would
        # answer 429 instead of measuring the read path.
        "CDP_RATE_LIMIT_PRINCIPAL_PER_SECOND": "0",
    }
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", mode, "--port", str(port)], env=env
    )
    try:
        wait_ready(port)
        return run_wrk(port, script, duration, conns, server.pid, subjects)
    finally:
        server.terminate()
        server.wait(10)


# --------------------------------------------------------------------------- verify


def extend_chain(target: int) -> int:
    """Append records (valid chain) until the log holds ``target``; return how many exist."""
    from cdp.audit.checkpoint import head_of_log
    from cdp.audit.writer import AuditEntry, append
    from cdp.runtime import get_runtime

    rt = get_runtime()
    have, _ = head_of_log(rt)
    entry = AuditEntry(
        principal_id="bench0000000000",
        principal_name="bench-support",
        roles=("support",),
        action="read",
        resource="profile",
        subject_ids=(secrets.token_hex(16),),
        fields=("subject_id", "created_at", "identity_kinds", "email", "phone"),
        purpose="support",
        outcome="allowed",
        request_id=secrets.token_hex(16),
        client="127.0.0.1",
    )
    while have < target:
        batch = min(20_000, target - have)
        with rt.data_engine.begin() as conn:
            append(conn, [entry] * batch)
        have += batch
    return have


def stream_only() -> float:
    """Seconds to stream every audit row with the verifier's cursor and do nothing else."""
    from cdp.audit.verify import _rows
    from cdp.runtime import get_runtime

    started = time.perf_counter()
    for _batch in _rows(get_runtime()):
        pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=2000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="Best of N interleaved rounds.")
    parser.add_argument("--verify-records", type=int, default=300_000)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    home = Path(tempfile.mkdtemp(prefix="cdp-bench-api-"))
    try:
        ids, token = setup(home / "home", args.subjects)
        script = home / "profiles.lua"
        lua_script(script, ids, token)
        lua_script(home / "warm-up.lua", ids, token, walk=True)
        print(
            f"GET /v1/profiles/{{id}}: {args.subjects} subjects with email+phone, SQLite, "
            f"1 uvicorn worker, wrk -t1 -c{args.connections} -d{args.duration}s (warm-up: every "
            "subject once), "
            f"best of {args.rounds} interleaved rounds; load average before: "
            + " ".join(f"{x:.2f}" for x in os.getloadavg())
        )
        print(
            f"{'mode':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} "
            f"{'server CPU ms/req (least)':>26} {'load 1m':>8}"
        )
        results: dict[str, dict[str, float]] = {}
        modes = args.modes.split(",")
        for _ in range(args.rounds):  # interleaved, so machine noise hits every mode alike
            for mode in modes:
                r = measure(
                    mode, home / "home", script, args.duration, args.connections, args.subjects
                )
                best = results.get(mode)
                least_cpu = min(r["cpu_ms"], best["cpu_ms"]) if best else r["cpu_ms"]
                if best is None or r["rps"] > best["rps"]:
                    results[mode] = r
                # CPU per request: the least of the rounds (other work on the machine only adds)
                results[mode]["cpu_ms"] = least_cpu
        for mode in modes:
            r = results[mode]
            print(
                f"{mode:<10} {r['rps']:>9,.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} "
                f"{int(r['non2xx']):>8} {r['cpu_ms']:>26.3f} {r['load']:>8.2f}"
            )
        if "full" in results and "bare" in results:
            cost = 1 - results["full"]["rps"] / results["bare"]["rps"]
            cpu_cost = 1 - results["bare"]["cpu_ms"] / results["full"]["cpu_ms"]
            print(
                f"authorisation + audit cost: {cost:.1%} of the bare endpoint's throughput; "
                f"{cpu_cost:.1%} of the audited read's server CPU"
            )
        from cdp.audit.verify import verify_chain
        from cdp.runtime import get_runtime

        total = extend_chain(args.verify_records)
        floor = stream_only()
        single = verify_chain(runtime=get_runtime(), workers=1)
        result = verify_chain(runtime=get_runtime())  # as `cdp audit verify` runs it
        cores = len(os.sched_getaffinity(0))
        print(
            f"cdp audit verify: {result.records:,} records in {result.seconds:.2f}s = "
            f"{result.rate:,.0f} records/s (ok={result.ok}; ranges at once, one per core: "
            f"{cores} cores); in one process: {single.rate:,.0f} records/s; streaming the rows "
            f"alone in one process: {total / floor:,.0f} rows/s"
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
