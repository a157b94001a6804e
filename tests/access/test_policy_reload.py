"""A running process picks up changed policy files by itself (``CDP_POLICY_RELOAD_SECONDS``):
no restart, no signal; files that do not load leave the policy in force."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cdp.access.engine import get_policy_engine, reset_policy_engine
from cdp.api.app import create_app
from cdp.settings import reset_settings
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv
from tests.factories import make_subject

REPO_POLICIES = Path(__file__).resolve().parents[2] / "policies"
DENY_SUPPORT = "p, support, pii:contact, read, *, deny\n"


@pytest.fixture
def policy_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    target = tmp_path / "policies"
    shutil.copytree(REPO_POLICIES, target)
    monkeypatch.setenv("CDP_POLICY_DIR", str(target))
    monkeypatch.setenv("CDP_POLICY_RELOAD_SECONDS", "0.05")
    reset_settings()
    reset_policy_engine()
    yield target
    reset_policy_engine()
    reset_settings()


def _allowed() -> bool:
    return get_policy_engine().decide(["support"], "pii:contact", "read", "support").allowed


def _after_the_interval() -> None:
    time.sleep(0.1)


def test_a_changed_policy_applies_without_a_restart(policy_dir: Path) -> None:
    assert _allowed()
    before = get_policy_engine().policy_version
    policy = policy_dir / "policy.csv"
    policy.write_text(policy.read_text() + DENY_SUPPORT)
    _after_the_interval()
    assert not _allowed()
    assert get_policy_engine().policy_version != before

    without_deny = policy.read_text().replace(DENY_SUPPORT, "")
    policy.write_text(without_deny + "p, support, no-such-resource, read, support, allow\n")
    _after_the_interval()
    assert not _allowed()  # the invalid files are refused: the policy in force (deny) stays
    policy.write_text(without_deny)
    _after_the_interval()
    assert _allowed() and get_policy_engine().policy_version == before


def test_zero_never_looks(policy_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDP_POLICY_RELOAD_SECONDS", "0")
    reset_settings()
    reset_policy_engine()
    assert _allowed()
    policy = policy_dir / "policy.csv"
    policy.write_text(policy.read_text() + DENY_SUPPORT)
    _after_the_interval()
    assert _allowed()


def test_the_api_answers_by_the_changed_policy(cdp_env: CdpEnv, policy_dir: Path) -> None:
    sid = make_subject(cdp_env.runtime, {"email": "reload@example.com"})
    token = make_principal(cdp_env.runtime, ["support"]).token
    headers = {"Authorization": f"Bearer {token}", "X-Purpose": "support"}
    with TestClient(create_app()) as client:
        url = f"/v1/profiles/{sid}?fields=email"
        assert client.get(url, headers=headers).status_code == 200
        policy = policy_dir / "policy.csv"
        policy.write_text(policy.read_text() + DENY_SUPPORT)
        _after_the_interval()
        assert client.get(url, headers=headers).status_code == 403


def test_a_file_finished_while_a_torn_one_failed_to_load_is_loaded_next(
    policy_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-atomic write caught half-way fails to load; the write finishing during that load
    must still be seen as a change (the files' stamp is the one taken before the load)."""
    from cdp.access.policy import PolicyEngine

    assert _allowed()
    policy = policy_dir / "policy.csv"
    final = policy.read_text() + DENY_SUPPORT
    policy.write_text(final[: len(final) // 2] + "\np, torn")  # caught half-way
    load = PolicyEngine._load

    def load_while_the_write_finishes(self: PolicyEngine) -> object:
        try:
            return load(self)
        finally:
            time.sleep(0.02)  # a later modification time than the torn file's
            policy.write_text(final)

    monkeypatch.setattr(PolicyEngine, "_load", load_while_the_write_finishes)
    _after_the_interval()
    _allowed()  # looks: the torn file fails to load, the write finishes meanwhile
    monkeypatch.setattr(PolicyEngine, "_load", load)
    _after_the_interval()
    assert not _allowed()  # the finished file was seen as a change and loaded
