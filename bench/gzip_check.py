"""What the whole-file gzip check costs against the ingest it guards.

    python bench/gzip_check.py --orders 1000000          # generates the orders, gzip -6
    python bench/gzip_check.py --file orders.jsonl.gz    # an existing orders file

Two child processes on a fresh SQLite home, one after the other: the first only checks the file
(``cdp.ingest.gzip_check.verify_gzip``: wall and CPU seconds, peak resident memory as VmHWM),
the second ingests it (``ingest_file``, which checks it too: its seconds include the check).
Prints the check's share of the ingest. ``--skip-ingest`` times the check alone.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

PEAK = """
def peak_mb():
    # VmHWM: this process's own peak (ru_maxrss may carry the parent's from before exec)
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""

CHECK = """
import json, resource, time
from pathlib import Path
from cdp.ingest.gzip_check import verify_gzip
path = Path({path!r})
wall, cpu = time.perf_counter(), time.process_time()
with path.open("rb") as handle:
    verify_gzip(handle, path)
print(json.dumps({{"seconds": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                  "maxrss_mb": peak_mb()}}))
"""

INGEST = """
import json, resource, time
from pathlib import Path
from cdp.bootstrap import initialize
from cdp.settings import get_settings
from cdp.runtime import get_runtime, reset_runtime
initialize(get_settings()); reset_runtime()
from cdp.ingest.pipeline import ingest_file
cpu = time.process_time()
s = ingest_file(runtime=get_runtime(), kind="orders", path=Path({path!r}))
print(json.dumps({{"read": s.read, "inserted": s.inserted, "seconds": s.seconds,
                  "cpu": time.process_time() - cpu,
                  "maxrss_mb": peak_mb()}}))
"""


def _child(code: str, home: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_")}
    env.update(CDP_HOME=str(home), CDP_LOG_LEVEL="warning")
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"child failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _orders_file(work: Path, orders: int) -> Path:
    from cdp.demo.generator import generate_shop

    shop = generate_shop(work, customers=max(1, orders // 6), orders=orders, events=0, seed=2)
    packed = shop.orders.with_name(shop.orders.name + ".gz")
    with shop.orders.open("rb") as src, gzip.open(packed, "wb", compresslevel=6) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return packed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--file", type=Path, default=None)
    parser.add_argument("--skip-ingest", action="store_true")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="cdp-gzcheck-") as tmp:
        work = Path(tmp)
        path = args.file.resolve() if args.file else _orders_file(work / "shop", args.orders)
        plain = 0
        with gzip.open(path, "rb") as unpacked:
            while chunk := unpacked.read(1 << 20):
                plain += len(chunk)
        size = path.stat().st_size
        print(f"file {path.name}: {size / 1e6:,.1f} MB gzip, {plain / 1e6:,.1f} MB unpacked")
        check = _child(PEAK + CHECK.format(path=str(path)), work / "home-check")
        print(
            f"check   {check['seconds']:8.2f} s wall {check['cpu']:8.2f} s CPU "
            f"{plain / 1e6 / check['seconds']:,.0f} MB/s unpacked, peak RSS "
            f"{check['maxrss_mb']:,.0f} MB"
        )
        if args.skip_ingest:
            return
        run = _child(PEAK + INGEST.format(path=str(path)), work / "home-ingest")
        print(
            f"ingest  {run['seconds']:8.2f} s wall {run['cpu']:8.2f} s CPU "
            f"{run['read']:,} read, {run['inserted']:,} inserted, peak RSS "
            f"{run['maxrss_mb']:,.0f} MB"
        )
        print(f"the check is {check['seconds'] / run['seconds']:.1%} of the ingest's wall time")


if __name__ == "__main__":
    main()
