"""Tests of the access vocabulary, the shipped policy and the decision engine.

The expected answers are written out here as data; they are not derived from ``policy.csv``.
"""

from __future__ import annotations

import hashlib
import itertools
import shutil
import threading
from pathlib import Path

import casbin
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.access import (
    ACTIONS,
    CATEGORIES,
    CATEGORY_RESOURCES,
    FIELD_CATEGORY,
    PII_FIELDS,
    PURPOSE_DESCRIPTIONS,
    PURPOSES,
    RESOURCES,
    PolicyEngine,
    PolicyError,
    Purpose,
    category_of,
    default_policy_dir,
    fields_in,
    resource_for,
)
from cdp.errors import ConfigurationError

REPO_POLICIES = Path(__file__).resolve().parents[2] / "policies"
ROLES = ("admin", "dpo", "support", "analyst", "marketer", "ingest", "auditor")
ALL_ACTIONS = ("read", "write", "create", "run", "delete", "admin")
PII = ("pii:contact", "pii:identity", "pii:address")
CONSENT = ("email_marketing", "sms_marketing", "push_marketing", "personalization", "ad_audiences")

# Everything each role may do: (resources, actions, purposes) groups. Anything else is denied.
GRANTS: dict[str, list[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]] = {
    "admin": [
        (("principals", "keys", "sources", "destinations", "ops"), ALL_ACTIONS, ("operations",))
    ],
    "dpo": [
        (("privacy_requests",), ("read", "create", "write", "run"), ("privacy_request",)),
        (PII, ("read", "write", "delete"), ("privacy_request",)),
        (("data:behaviour", "data:traits", "profile"), ("read", "delete"), ("privacy_request",)),
        (("data:consent",), ("read", "write"), ("privacy_request",)),
        (("data:consent",), ("read",), ("audit",)),
        (("audit_reports",), ("read", "create"), ("audit", "privacy_request")),
    ],
    "support": [(("profile", "pii:contact"), ("read",), ("support",))],
    "analyst": [
        (
            ("profile", "data:traits", "data:behaviour", "segments", "metrics"),
            ("read",),
            ("analytics",),
        )
    ],
    "marketer": [
        (("segments",), ("read", "create"), ("marketing", *CONSENT)),
        (("destinations",), ("read",), ("marketing", *CONSENT)),
        (("exports",), ("read",), ("marketing",)),
        (("exports",), ("read", "create", "run"), CONSENT),
    ],
    "ingest": [(("ingest",), ("write",), ("operations",))],
    "auditor": [(("audit_log", "audit_reports"), ("read",), ("audit",))],
}
ALLOWED = {
    (role, res, act, purp)
    for role, groups in GRANTS.items()
    for resources, actions, purposes in groups
    for res, act, purp in itertools.product(resources, actions, purposes)
}

# The privacy core, readable at a glance: category resource -> role -> purposes allowed to read.
CATEGORY_READS: dict[str, dict[str, set[str]]] = {
    "pii:contact": {"dpo": {"privacy_request"}, "support": {"support"}},
    "pii:identity": {"dpo": {"privacy_request"}},
    "pii:address": {"dpo": {"privacy_request"}},
    "data:behaviour": {"dpo": {"privacy_request"}, "analyst": {"analytics"}},
    "data:traits": {"dpo": {"privacy_request"}, "analyst": {"analytics"}},
    "data:consent": {"dpo": {"privacy_request", "audit"}},
    "profile": {"dpo": {"privacy_request"}, "support": {"support"}, "analyst": {"analytics"}},
}


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine(REPO_POLICIES)


def make_dir(tmp_path: Path, policy: str) -> Path:
    shutil.copy(REPO_POLICIES / "model.conf", tmp_path / "model.conf")
    (tmp_path / "policy.csv").write_text(policy)
    return tmp_path


# --- vocabulary -------------------------------------------------------------------------------


def test_names_are_exactly_these() -> None:
    assert CATEGORIES == ("contact", "identity", "address", "behaviour", "traits", "consent")
    assert list(CATEGORY_RESOURCES) == [*PII, "data:behaviour", "data:traits", "data:consent"]
    assert ACTIONS == ALL_ACTIONS
    assert set(RESOURCES) == {
        *CATEGORY_RESOURCES, "profile", "principals", "keys", "sources", "destinations",
        "segments", "exports", "metrics", "audit_log", "audit_reports", "privacy_requests",
        "ingest", "ops",
    }  # fmt: skip
    assert list(PURPOSES) == [
        "support", "privacy_request", "analytics", "marketing", "audit", "operations", *CONSENT,
    ]  # fmt: skip
    assert set(PURPOSE_DESCRIPTIONS) == set(PURPOSES)
    assert all(PURPOSE_DESCRIPTIONS[p] for p in PURPOSES)
    assert Purpose.AUDIT.description == PURPOSE_DESCRIPTIONS["audit"]


def test_fields_and_categories() -> None:
    assert fields_in("contact") == ("email", "phone")
    assert fields_in("identity") == ("first_name", "last_name", "birthday", "gender")
    assert fields_in("address") == ("street", "city", "postal_code", "state", "country")
    assert fields_in("behaviour") == ("orders", "events")
    assert fields_in("traits") == ("traits",) and fields_in("consent") == ("consent",)
    assert set(PII_FIELDS) == {
        "email", "phone", "first_name", "last_name", "birthday", "gender",
        "street", "city", "postal_code", "state", "country",
    }  # fmt: skip
    assert all(category_of(f) == c for c in CATEGORIES for f in fields_in(c))
    assert len(FIELD_CATEGORY) == sum(len(fields_in(c)) for c in CATEGORIES)
    assert [resource_for(c) for c in CATEGORIES] == list(CATEGORY_RESOURCES)
    for bad in (lambda: fields_in("pii"), lambda: category_of("ssn"), lambda: resource_for("x")):
        with pytest.raises(ValueError):
            bad()


# --- the shipped policy: truth tables ---------------------------------------------------------


def test_policy_roles_are_the_documented_ones(engine: PolicyEngine) -> None:
    assert engine.roles == set(ROLES)


@pytest.mark.parametrize("resource", list(CATEGORY_READS))
@pytest.mark.parametrize("role", ROLES)
def test_category_read_truth_table(engine: PolicyEngine, role: str, resource: str) -> None:
    expected = CATEGORY_READS[resource].get(role, set())
    got = {p for p in PURPOSES if engine.decide([role], resource, "read", p).allowed}
    assert got == expected


def test_full_truth_table(engine: PolicyEngine) -> None:
    wrong = [
        (combo, engine.decide([combo[0]], *combo[1:]).allowed)
        for combo in itertools.product(ROLES, RESOURCES, ACTIONS, PURPOSES)
        if engine.decide([combo[0]], *combo[1:]).allowed != (combo in ALLOWED)
    ]
    assert wrong == []


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("purpose", PURPOSES)
def test_allowed_categories(engine: PolicyEngine, role: str, purpose: str) -> None:
    expected = {c for c, r in zip(CATEGORIES, CATEGORY_RESOURCES, strict=True)
                if purpose in CATEGORY_READS[r].get(role, set())}  # fmt: skip
    assert engine.allowed_categories([role], purpose) == expected


@pytest.mark.parametrize("role", ["analyst", "marketer"])
def test_pii_denied_by_explicit_rows(engine: PolicyEngine, role: str) -> None:
    for res, act, purp in itertools.product(PII, ACTIONS, PURPOSES):
        d = engine.decide([role], res, act, purp)
        assert not d.allowed and d.matched_rule is not None
        rule = d.matched_rule
        assert (rule.role, rule.effect, rule.purpose) == (role, "deny", "*")


def test_mistaken_allow_cannot_open_pii(tmp_path: Path) -> None:
    text = (REPO_POLICIES / "policy.csv").read_text()
    text += "p, analyst, pii:contact, read, analytics, allow\n"
    text += "p, marketer, pii:address, read, email_marketing, allow\n"
    eng = PolicyEngine(make_dir(tmp_path, text))
    assert not eng.decide(["analyst"], "pii:contact", "read", "analytics").allowed
    assert not eng.decide(["marketer"], "pii:address", "read", "email_marketing").allowed


def test_allow_reports_its_rule(engine: PolicyEngine) -> None:
    d = engine.decide(["support"], "pii:contact", "read", "support")
    assert d.allowed and str(d.matched_rule) == "p, support, pii:contact, read, support, allow"
    assert d.policy_version == engine.policy_version
    assert engine.decide(["support"], "pii:contact", "read", "marketing").matched_rule is None


# --- unknown inputs, empty policy --------------------------------------------------------------


@pytest.mark.parametrize(
    ("roles", "resource", "action", "purpose"),
    [
        (["nobody"], "pii:contact", "read", "support"),
        ([], "pii:contact", "read", "support"),
        (["support"], "pii:contact", "read", "shopping"),
        (["support"], "pii:contact", "read", "*"),
        (["support"], "pii:contacts", "read", "support"),
        (["support"], "pii:contact", "READ", "support"),
        (["admin"], "ops", "read", ""),
    ],
)
def test_unknown_inputs_deny(
    engine: PolicyEngine, roles: list[str], resource: str, action: str, purpose: str
) -> None:
    d = engine.decide(roles, resource, action, purpose)
    assert (d.allowed, d.matched_rule) == (False, None)


def test_one_string_as_roles_is_refused(engine: PolicyEngine) -> None:
    with pytest.raises(TypeError):
        engine.decide("support", "pii:contact", "read", "support")


@pytest.mark.parametrize("text", ["", "# nothing here\n\n", "g, support, analyst\n"])
def test_empty_policy_denies_everything(tmp_path: Path, text: str) -> None:
    eng = PolicyEngine(make_dir(tmp_path, text))
    combos = itertools.product(ROLES, RESOURCES, ACTIONS, PURPOSES)
    assert not any(eng.decide([r], *rest).allowed for r, *rest in combos)
    assert all(eng.allowed_categories(ROLES, p) == frozenset() for p in PURPOSES)


# --- deny wins, role inheritance, several roles ------------------------------------------------

INHERITANCE = """
p, base, pii:contact, read, support, allow
p, restricted, pii:contact, read, *, deny
g, agent, base
g, agent, restricted
g, senior, base
p, senior, pii:identity, read, support, allow
g, junior, senior
p, parent, pii:address, read, *, deny
g, child, parent
p, child, pii:address, read, support, allow
g, kid, base
p, kid, pii:contact, read, support, deny
"""


def test_deny_beats_inherited_allow(tmp_path: Path) -> None:
    eng = PolicyEngine(make_dir(tmp_path, INHERITANCE))

    def allowed(role: str, res: str) -> bool:
        return eng.decide([role], res, "read", "support").allowed

    assert allowed("base", "pii:contact")
    d = eng.decide(["agent"], "pii:contact", "read", "support")
    assert not d.allowed and d.matched_rule is not None and d.matched_rule.role == "restricted"
    assert allowed("junior", "pii:contact") and allowed("junior", "pii:identity")  # two levels
    assert not allowed("child", "pii:address")  # a parent's deny beats the child's own allow
    assert not allowed("kid", "pii:contact")  # own deny beats the inherited allow
    assert allowed("base", "pii:contact")  # a child's deny never reaches the parent


def test_several_roles(engine: PolicyEngine) -> None:
    def allowed(roles: list[str], res: str, act: str, purp: str) -> bool:
        return engine.decide(roles, res, act, purp).allowed

    assert allowed(["support", "dpo"], "pii:contact", "read", "support")
    assert allowed(["support", "dpo"], "pii:identity", "read", "privacy_request")
    assert allowed(["admin", "auditor"], "keys", "admin", "operations")
    assert allowed(["admin", "auditor"], "audit_log", "read", "audit")
    assert allowed(["ingest", "nobody"], "ingest", "write", "operations")
    assert allowed(["admin", "dpo"], "pii:contact", "read", "privacy_request")  # no admin deny
    # a deny on any role wins: an analyst who is also support cannot read contact data
    d = engine.decide(["support", "analyst"], "pii:contact", "read", "support")
    assert not d.allowed and d.matched_rule is not None and d.matched_rule.role == "analyst"
    assert not allowed(["dpo", "marketer"], "pii:identity", "read", "privacy_request")
    assert allowed(["dpo", "marketer"], "segments", "create", "marketing")
    assert engine.allowed_categories(["support", "analyst"], "support") == frozenset()
    assert engine.allowed_categories(["support", "dpo"], "support") == {"contact"}


@settings(max_examples=300, deadline=None)
@given(
    roles=st.lists(st.sampled_from([*ROLES, "nobody"]), max_size=4),
    resource=st.sampled_from(RESOURCES),
    action=st.sampled_from(ACTIONS),
    purpose=st.sampled_from(PURPOSES),
)
def test_multi_role_semantic(
    engine: PolicyEngine, roles: list[str], resource: str, action: str, purpose: str
) -> None:
    singles = [engine.decide([r], resource, action, purpose) for r in roles]
    denied = any(s.matched_rule is not None and s.matched_rule.effect == "deny" for s in singles)
    expected = any(s.allowed for s in singles) and not denied
    assert engine.decide(roles, resource, action, purpose).allowed == expected
    assert engine.decide(tuple(reversed(roles)), resource, action, purpose).allowed == expected


# --- cache, reload, version ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def stock_answers() -> dict[tuple[str, str, str, str], bool]:
    """Every single-role answer of a stock Casbin Enforcer reading the files directly."""
    stock = casbin.Enforcer(str(REPO_POLICIES / "model.conf"), str(REPO_POLICIES / "policy.csv"))
    combos = itertools.product(ROLES, RESOURCES, ACTIONS, PURPOSES)
    return {c: bool(stock.enforce(*c)) for c in combos}


def test_cache_agrees_with_stock_enforcer(
    engine: PolicyEngine, stock_answers: dict[tuple[str, str, str, str], bool]
) -> None:
    for (role, res, act, purp), expected in stock_answers.items():
        first = engine.decide([role], res, act, purp)
        assert first.allowed == expected
        assert engine.decide((role,), res, act, purp) is first  # a hit returns the cached answer


@pytest.mark.parametrize("cache_size", [1, 5])
def test_tiny_cache_still_agrees(
    cache_size: int, stock_answers: dict[tuple[str, str, str, str], bool]
) -> None:
    eng = PolicyEngine(REPO_POLICIES, cache_size=cache_size)
    for (role, res, act, purp), expected in stock_answers.items():
        if role in ("dpo", "marketer") and res in (*CATEGORY_RESOURCES, "exports", "segments"):
            assert eng.decide([role], res, act, purp).allowed == expected
            assert eng.decide([role], res, act, purp).allowed == expected


def test_version_is_sha256_of_the_files(tmp_path: Path) -> None:
    d = make_dir(tmp_path, "p, support, pii:contact, read, support, allow\n")
    eng = PolicyEngine(d)
    raw = (d / "model.conf").read_bytes() + (d / "policy.csv").read_bytes()
    assert eng.policy_version == hashlib.sha256(raw).hexdigest()[:16]
    old = eng.policy_version
    assert eng.reload() == old  # same bytes, same version
    (d / "policy.csv").write_text("p, support, pii:contact, read, support, deny\n")
    assert eng.decide(["support"], "pii:contact", "read", "support").allowed  # not yet reloaded
    new = eng.reload()
    assert new != old and eng.policy_version == new
    d2 = eng.decide(["support"], "pii:contact", "read", "support")
    assert not d2.allowed and d2.policy_version == new


@pytest.mark.parametrize(
    "bad",
    [
        "p, support, pii:contacts, read, support, allow",
        "p, support, pii:contact, peek, support, allow",
        "p, support, pii:contact, read, shopping, allow",
        "p, support, pii:contact, read, support, maybe",
        "p, support, pii:contact, read, *, allow",
        "p, support, pii:contact, read, support",
        "p, sup port, pii:contact, read, support, allow",
        "g, support",
        "x, support, pii:contact",
    ],
)
def test_invalid_policy_is_refused_and_old_one_kept(tmp_path: Path, bad: str) -> None:
    d = make_dir(tmp_path, "p, support, pii:contact, read, support, allow\n")
    eng = PolicyEngine(d)
    version = eng.policy_version
    (d / "policy.csv").write_text(f"p, support, profile, read, support, allow\n{bad}\n")
    with pytest.raises(PolicyError, match="line 2"):
        eng.reload()
    assert eng.policy_version == version
    assert eng.decide(["support"], "pii:contact", "read", "support").allowed
    with pytest.raises(PolicyError):
        PolicyEngine(d)


def test_invalid_model_and_missing_files(tmp_path: Path) -> None:
    assert issubclass(PolicyError, ConfigurationError)  # the API maps it with the other errors
    d = make_dir(tmp_path, "")
    (d / "model.conf").write_text("[request_definition]\nr = sub, obj, act\n")
    with pytest.raises(PolicyError):
        PolicyEngine(d)
    with pytest.raises(PolicyError):
        PolicyEngine(tmp_path / "absent")


def test_default_policy_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CDP_POLICY_DIR", raising=False)
    assert default_policy_dir() == REPO_POLICIES
    monkeypatch.setenv("CDP_POLICY_DIR", str(tmp_path))
    assert default_policy_dir() == tmp_path
    monkeypatch.setenv("CDP_POLICY_DIR", str(tmp_path / "absent"))
    with pytest.raises(PolicyError):
        default_policy_dir()


POLICY_A = """
p, support, pii:contact, read, support, allow
p, analyst, data:traits, read, analytics, allow
p, dpo, pii:contact, read, privacy_request, allow
p, dpo, pii:identity, read, privacy_request, allow
"""
POLICY_B = """
p, support, pii:contact, read, support, deny
p, analyst, pii:contact, read, support, allow
p, marketer, data:traits, read, analytics, allow
g, support, marketer
p, dpo, pii:address, read, privacy_request, allow
p, dpo, data:traits, read, privacy_request, allow
"""


@pytest.mark.slow
def test_concurrent_reload_never_mixes_policies(tmp_path: Path) -> None:
    dirs = {}
    for name, text in (("a", POLICY_A), ("b", POLICY_B)):
        (tmp_path / name).mkdir()
        dirs[name] = make_dir(tmp_path / name, text)
    oracle = {PolicyEngine(d).policy_version: PolicyEngine(d) for d in dirs.values()}
    assert len(oracle) == 2
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(dirs["a"] / "model.conf", live / "model.conf")
    shutil.copy(dirs["a"] / "policy.csv", live / "policy.csv")
    eng = PolicyEngine(live)
    roles = [["support"], ["analyst"], ["marketer"], ["support", "analyst"], ["dpo"]]
    combos = list(itertools.product(roles, ["pii:contact", "data:traits"], ["read"],
                                    ["support", "analytics", "privacy_request"]))  # fmt: skip
    cats = {v: o.allowed_categories(["dpo"], "privacy_request") for v, o in oracle.items()}
    assert len(set(cats.values())) == 2
    expected = {
        v: {i: o.decide(*c).allowed for i, c in enumerate(combos)} for v, o in oracle.items()
    }
    assert len({tuple(e.values()) for e in expected.values()}) == 2  # the policies disagree
    errors: list[str] = []
    seen: set[str] = set()
    stop = threading.Event()
    start = threading.Barrier(9)

    def reader() -> None:
        start.wait()
        try:
            while not stop.is_set():
                for i, combo in enumerate(combos):
                    d = eng.decide(*combo)
                    seen.add(d.policy_version)
                    if d.allowed != expected.get(d.policy_version, {}).get(i):
                        errors.append(f"{combo} -> {d}")
                if eng.allowed_categories(["dpo"], "privacy_request") not in cats.values():
                    errors.append("categories mixed two policies")
        except Exception as exc:  # surfaced by the assertion below
            errors.append(repr(exc))

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for t in threads:
        t.start()
    start.wait()
    try:
        for n in range(40):
            src = dirs["b" if n % 2 == 0 else "a"] / "policy.csv"
            shutil.copy(src, live / "policy.next")
            (live / "policy.next").replace(live / "policy.csv")
            eng.reload()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert seen == set(oracle)
