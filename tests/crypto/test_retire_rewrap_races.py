"""Retiring and re-wrapping against concurrent processes: a webhook secret wrapped while its KEK
version is being retired, an erasure during a rewrap."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from cdp.cli import keys as keys_cli
from cdp.crypto.key_checks import rotate_kek
from cdp.crypto.keystore_tables import data_keys
from cdp.db.models import new_subject_id
from cdp.errors import ConflictError
from cdp.exports import destinations as dests
from cdp.exports.destinations import DestinationSpec, create_destination
from cdp.exports.signing_secrets import signing_secret
from cdp.runtime import open_runtime
from cdp.settings import get_settings
from tests.conftest import CdpEnv
from tests.factories import in_thread


def test_retire_counts_a_webhook_secret_committed_while_it_waited(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process still on version 1 (inside its one-second look at the key file) wraps a new
    destination's secret while `cdp keys retire 1` runs: the retirement must count it."""
    server = open_runtime(get_settings())  # its key file read: version 1 current
    admin = cdp_env.runtime
    rotate_kek(admin.key_engine, admin.provider)
    server.provider._recheck_at = float("inf")  # type: ignore[attr-defined]
    assert server.provider.current_version() == 1
    inside, release = threading.Event(), threading.Event()
    real = dests.wrapped_secret

    @contextlib.contextmanager
    def paused(*args: Any) -> Iterator[Any]:
        with real(*args) as wrapped:  # version 1 counted, its row locked, secret not stored yet
            inside.set()
            assert release.wait(30)
            yield wrapped

    monkeypatch.setattr(dests, "wrapped_secret", paused)
    spec = DestinationSpec(
        name="hook", kind="webhook", purpose="email_marketing", fields=["email"],
        url="https://hooks.example.com/in",
    )  # fmt: skip
    out: dict[str, Any] = {}
    maker = in_thread(
        "server", lambda: create_destination(runtime=server, spec=spec, created_by="admin"), out
    )
    try:
        assert inside.wait(30)
        retire = in_thread("retire", lambda: keys_cli.retire(version=1), out)
        time.sleep(1.5)  # the retirement reaches the version's lock and waits
    finally:
        release.set()
    maker.join(30)
    retire.join(60)
    assert isinstance(out["retire"], ConflictError), out["retire"]
    assert "1 webhook signing secret(s) are wrapped under KEK version 1" in str(out["retire"])
    assert 1 in admin.provider.material.live_keys("kek")
    assert signing_secret(runtime=admin, destination=out["server"].destination)


def test_rewrap_counts_only_the_keys_it_moved(cdp_env: CdpEnv) -> None:
    """An erasure that destroys a key after rewrap read it (PostgreSQL; SQLite's write lock
    makes the erasure wait) is not counted as re-wrapped."""
    rt = cdp_env.runtime
    ids = sorted(new_subject_id() for _ in range(5))
    rt.keystore.create(ids)
    rotate_kek(rt.key_engine, rt.provider)
    rewrapper, eraser = open_runtime(get_settings()), open_runtime(get_settings())
    reading, go = threading.Event(), threading.Event()
    real_unwrap = rewrapper.provider.unwrap

    def slow_unwrap(*args: Any, **kw: Any) -> bytes:
        reading.set()
        assert go.wait(30)
        return real_unwrap(*args, **kw)

    rewrapper.provider.unwrap = slow_unwrap  # type: ignore[method-assign]
    out: dict[str, Any] = {}
    rewrap = in_thread("rewrap", lambda: rewrapper.keystore.rewrap(batch_size=100), out)
    try:
        assert reading.wait(30)  # the batch is read
        shred = in_thread("shred", lambda: eraser.vault.shred([ids[0]]), out)
        shred.join(2)
        erased_first = not shred.is_alive()
    finally:
        go.set()
    rewrap.join(30)
    shred.join(30)
    assert erased_first == (cdp_env.backend != "sqlite")
    moved = 4 if erased_first else 5
    assert out["rewrap"] == moved
    assert rt.keystore.wraps_per_version()[2] == moved
    with rt.key_engine.connect() as conn:
        left = conn.execute(sa.select(sa.func.count()).select_from(data_keys)).scalar_one()
    assert left == 4
