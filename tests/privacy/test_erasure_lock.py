"""Erasure waits for a running export, and exports may run side by side."""

from __future__ import annotations

import threading

from cdp.privacy.erasure import erase_subject
from cdp.privacy.erasure_lock import erasure_guard, export_guard
from tests.conftest import CdpEnv
from tests.factories import make_subject


def test_erasure_waits_for_a_running_export(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt, {"email": "a@b.cn"})
    done = threading.Event()

    def erase() -> None:
        erase_subject(runtime=rt, subject_id=sid)
        done.set()

    with export_guard(rt):
        worker = threading.Thread(target=erase)
        worker.start()
        assert not done.wait(0.5), "erasure committed while an export was running"
        assert rt.vault.has_key(sid)
    assert done.wait(30)
    worker.join()
    rt.vault.forget_cached()
    assert not rt.vault.has_key(sid)


def test_exports_share_the_guard_and_erasure_holds_new_exports_off(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    with export_guard(rt), export_guard(rt):
        pass  # two exports at once: no wait
    entered = threading.Event()

    def export() -> None:
        with export_guard(rt):
            entered.set()

    with erasure_guard(rt):
        worker = threading.Thread(target=export)
        worker.start()
        assert not entered.wait(0.5), "an export started during an erasure"
    assert entered.wait(30)
    worker.join()
