"""Micro-benchmark of access decisions on the shipped policy (not a test).

Compares, on one thread, decisions per second of:
  - PolicyEngine.decide with a warm decision cache (the request path);
  - PolicyEngine.decide on a cold cache (every call a miss: what the first requests after a reload
    pay);
  - a stock casbin Enforcer;
  - a casbin FastEnforcer indexing policy rows on (resource, action), when pycasbin has it.

Usage: python bench/policy.py [--rounds N] [--sample N]
"""

from __future__ import annotations

import argparse
import itertools
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import casbin

from cdp.access import ACTIONS, PURPOSES, RESOURCES, PolicyEngine, parse_policy

POLICY_DIR = Path(__file__).resolve().parents[1] / "policies"
Request = tuple[str, str, str, str]


def rate(label: str, fn: Callable[[Request], object], requests: Sequence[Request]) -> float:
    """Time ``fn`` over ``requests`` and print decisions per second."""
    start = time.perf_counter()
    for request in requests:
        fn(request)
    elapsed = time.perf_counter() - start
    per_second = len(requests) / elapsed
    print(f"{label:<44} {per_second:>12,.0f} /s {elapsed / len(requests) * 1e6:>10.2f} µs")
    return per_second


def main() -> None:
    """Run the comparison and print one line per contender."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="passes over all requests (cached)")
    parser.add_argument("--sample", type=int, default=3000, help="requests for uncached runs")
    args = parser.parse_args()

    model, policy = POLICY_DIR / "model.conf", POLICY_DIR / "policy.csv"
    rows = parse_policy(policy.read_text())
    roles = sorted({r[1] for r in rows})
    space = list(itertools.product(roles, RESOURCES, ACTIONS, PURPOSES))
    rng = random.Random(7)
    rng.shuffle(space)
    sample = space[: args.sample]
    print(f"policy: {len(rows)} rows; request space {len(space)}; uncached sample {len(sample)}")

    engine = PolicyEngine(POLICY_DIR)
    print(f"policy_version {engine.policy_version}")
    cold = PolicyEngine(POLICY_DIR)
    cold_rate = rate(
        "PolicyEngine.decide, cold cache (misses)", lambda q: cold.decide([q[0]], *q[1:]), sample
    )
    for request in space:
        engine.decide((request[0],), *request[1:])
    tuples = [((q[0],), q[1], q[2], q[3]) for q in space] * args.rounds
    warm = rate("PolicyEngine.decide, warm cache", lambda q: engine.decide(*q), tuples)

    stock = casbin.Enforcer(str(model), str(policy))
    stock_rate = rate("casbin Enforcer.enforce", lambda q: stock.enforce(*q), sample)
    fast_cls = getattr(casbin, "FastEnforcer", None)
    if fast_cls is None:
        print("casbin FastEnforcer: not available in this pycasbin")
    else:
        fast = fast_cls(str(model), str(policy), cache_key_order=[1, 2])
        rate("casbin FastEnforcer.enforce (obj, act)", lambda q: fast.enforce(*q), sample)
        disagree = sum(fast.enforce(*q) != stock.enforce(*q) for q in sample)
        print(f"FastEnforcer disagreements with Enforcer: {disagree}")
    print(f"warm cache vs stock Enforcer: {warm / stock_rate:,.0f}x; "
          f"cold engine vs stock: {cold_rate / stock_rate:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
