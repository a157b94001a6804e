"""The access decision engine: Casbin model and policy files behind a decision cache.

A request is (roles, resource, action, purpose). The engine asks Casbin once per role and combines
the answers: allowed when at least one role is allowed and none of them is explicitly denied; a
request that no rule matches is denied. Answers depend only on those four values, a small finite
space, so they are cached per policy snapshot.

A snapshot is the enforcer, its cache and its version, built together from the same file bytes.
``reload()`` builds a new snapshot and swaps it in with one assignment, so a concurrent reader sees
either the complete old policy or the complete new one, never a mix.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import casbin
from casbin.persist import Adapter, load_policy_line

from cdp.access.categories import CATEGORIES, PURPOSES
from cdp.access.vocabulary import (
    ACTIONS,
    ANY_PURPOSE,
    CATEGORY_RESOURCES,
    RESOURCES,
    Action,
    Effect,
)
from cdp.errors import ConfigurationError

DEFAULT_CACHE_SIZE: Final = 65_536
"""Decision cache entries kept per snapshot before the cache is emptied and refilled."""

MODEL_FILE: Final = "model.conf"
POLICY_FILE: Final = "policy.csv"

_RESOURCE_SET: Final = frozenset(RESOURCES)
_ACTION_SET: Final = frozenset(ACTIONS)
_PURPOSE_SET: Final = frozenset(PURPOSES)
_ROLE_NAME: Final = re.compile(r"[A-Za-z0-9_.:-]+")
# Casbin compiles the matcher with ast.parse on every enforce call, and CPython 3.11's parser is not
# safe to enter from several threads at once; misses are rare, so one process-wide lock is cheap.
_CASBIN_LOCK: Final = threading.Lock()
_REQUEST_TOKENS: Final = ["r_sub", "r_obj", "r_act", "r_purpose"]
_POLICY_TOKENS: Final = ["p_sub", "p_obj", "p_act", "p_purpose", "p_eft"]


class PolicyError(ConfigurationError):
    """The model or policy files are missing or invalid; the policy in force is unchanged."""

    code = "policy_error"


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``p`` row of the policy, as matched for a decision."""

    role: str
    resource: str
    action: str
    purpose: str
    effect: str

    def __str__(self) -> str:
        """The row as written in ``policy.csv``."""
        return f"p, {self.role}, {self.resource}, {self.action}, {self.purpose}, {self.effect}"


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one request.

    ``matched_rule`` explains it: for an allow, an allow row that matched; for an explicit deny,
    the deny row that won; ``None`` when nothing matched (default deny). ``policy_version`` names
    the policy that decided.
    """

    allowed: bool
    matched_rule: Rule | None
    policy_version: str


def default_policy_dir() -> Path:
    """Return the policy directory: ``$CDP_POLICY_DIR`` if set, else the repository's ``policies/``.

    The repository path is found relative to this package, which only works from a source
    checkout; an installed cdp must be given the directory (environment or settings).
    """
    configured = os.environ.get("CDP_POLICY_DIR")
    directory = Path(configured) if configured else Path(__file__).resolve().parents[2] / "policies"
    if not directory.is_dir():
        raise PolicyError(f"policy directory not found: {directory} (set CDP_POLICY_DIR)")
    return directory


def policy_version(model_bytes: bytes, policy_bytes: bytes) -> str:
    """Return a policy's version: first 16 hex digits of SHA-256(model bytes + policy bytes)."""
    return hashlib.sha256(model_bytes + policy_bytes).hexdigest()[:16]


def _check_row(number: int, tokens: list[str]) -> None:
    """Validate one tokenised policy line; raise ``PolicyError`` naming the line."""
    kind = tokens[0]
    where = f"policy line {number}"
    if kind == "g":
        if len(tokens) != 3 or not all(_ROLE_NAME.fullmatch(t) for t in tokens[1:]):
            raise PolicyError(f"{where}: expected 'g, role, inherited role'")
        return
    if kind != "p" or len(tokens) != 6:
        raise PolicyError(f"{where}: expected 'p, role, resource, action, purpose, effect'")
    _, role, resource, action, purpose, effect = tokens
    if not _ROLE_NAME.fullmatch(role):
        raise PolicyError(f"{where}: invalid role name {role!r}")
    if resource not in _RESOURCE_SET:
        raise PolicyError(f"{where}: unknown resource {resource!r}")
    if action not in _ACTION_SET:
        raise PolicyError(f"{where}: unknown action {action!r}")
    if effect not in (Effect.ALLOW, Effect.DENY):
        raise PolicyError(f"{where}: effect must be 'allow' or 'deny', not {effect!r}")
    if purpose == ANY_PURPOSE:
        if effect != Effect.DENY:
            raise PolicyError(f"{where}: purpose '*' is only for deny rows; name the purpose")
    elif purpose not in _PURPOSE_SET:
        raise PolicyError(f"{where}: unknown purpose {purpose!r}")


def parse_policy(text: str) -> list[list[str]]:
    """Tokenise and validate policy text; return its rows (``p`` and ``g``) in file order.

    Blank lines and ``#`` comments are skipped. Every resource, action and purpose must be one cdp
    knows, so a misspelt row fails loudly instead of silently matching nothing.
    """
    rows: list[list[str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tokens = [t.strip() for t in line.split(",")]
        _check_row(number, tokens)
        rows.append(tokens)
    return rows


class _RowsAdapter(Adapter):  # type: ignore[misc]
    """A read-only Casbin adapter over rows already parsed and validated."""

    def __init__(self, rows: list[list[str]]) -> None:
        self._rows = rows

    def load_policy(self, model: Any) -> None:
        """Load every row into ``model``."""
        for row in self._rows:
            load_policy_line(", ".join(row), model)


@dataclass(slots=True)
class _Snapshot:
    """One loaded policy: the enforcer, its version and its caches, never mutated once swapped in
    except for filling the caches."""

    enforcer: Any
    version: str
    roles: frozenset[str]
    cache_size: int
    allowed_pairs: frozenset[tuple[str, str]] = frozenset()
    """(resource, action) of every allow row: what :meth:`PolicyEngine.allows_purpose` asks."""
    decisions: dict[tuple[tuple[str, ...], str, str, str], Decision] = field(default_factory=dict)
    categories: dict[tuple[tuple[str, ...], str], frozenset[str]] = field(default_factory=dict)


def _build_snapshot(model_bytes: bytes, policy_bytes: bytes, cache_size: int) -> _Snapshot:
    """Build a snapshot from file bytes; raise ``PolicyError`` if they are not a valid policy."""
    try:
        model_text = model_bytes.decode("utf-8")
        policy_text = policy_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"policy files must be UTF-8: {exc}") from None
    rows = parse_policy(policy_text)
    try:
        model = casbin.Enforcer.new_model(text=model_text)
        request_tokens = model["r"]["r"].tokens
        policy_tokens = model["p"]["p"].tokens
    except Exception as exc:  # casbin raises assorted errors on a malformed model
        raise PolicyError(f"invalid model: {exc}") from None
    if request_tokens != _REQUEST_TOKENS or policy_tokens != _POLICY_TOKENS:
        raise PolicyError("model must define r = sub, obj, act, purpose and p = ..., purpose, eft")
    try:
        enforcer = casbin.Enforcer(model, _RowsAdapter(rows))
        with _CASBIN_LOCK:  # compile the matcher once now, so a broken one fails the load
            enforcer.enforce_ex("", "", "", "")
    except Exception as exc:
        raise PolicyError(f"policy does not load: {exc}") from None
    roles = frozenset(r[1] for r in rows) | frozenset(r[2] for r in rows if r[0] == "g")
    pairs = frozenset((r[2], r[3]) for r in rows if r[0] == "p" and r[5] == Effect.ALLOW)
    return _Snapshot(enforcer, policy_version(model_bytes, policy_bytes), roles, cache_size, pairs)


def _evaluate(snap: _Snapshot, roles: tuple[str, ...], res: str, act: str, purp: str) -> Decision:
    """Ask the enforcer once per role; any explicit deny wins, else any allow allows."""
    allow: Rule | None = None
    with _CASBIN_LOCK:
        for role in dict.fromkeys(roles):
            allowed, explain = snap.enforcer.enforce_ex(role, res, act, purp)
            if allowed:
                if allow is None:
                    allow = Rule(*explain)
            elif explain and explain[4] == Effect.DENY:
                return Decision(False, Rule(*explain), snap.version)
    return Decision(allow is not None, allow, snap.version)


class PolicyEngine:
    """Thread-safe, cached access decisions over the Casbin model and policy files.

    ``policy_dir`` holds ``model.conf`` and ``policy.csv`` (default: ``default_policy_dir()``);
    ``model_path`` and ``policy_path`` override either file. Construction loads the policy and
    raises ``PolicyError`` if it is invalid.
    """

    def __init__(
        self,
        policy_dir: str | os.PathLike[str] | None = None,
        *,
        model_path: str | os.PathLike[str] | None = None,
        policy_path: str | os.PathLike[str] | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        if model_path is None or policy_path is None:
            directory = Path(policy_dir) if policy_dir is not None else default_policy_dir()
            model_path = model_path if model_path is not None else directory / MODEL_FILE
            policy_path = policy_path if policy_path is not None else directory / POLICY_FILE
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self._model_path = Path(model_path)
        self._policy_path = Path(policy_path)
        self._cache_size = cache_size
        self._reload_lock = threading.Lock()
        self._stamp = self._file_stamp()
        self._snapshot = self._load()

    @property
    def model_path(self) -> Path:
        """The model file."""
        return self._model_path

    @property
    def policy_path(self) -> Path:
        """The policy file."""
        return self._policy_path

    @property
    def policy_version(self) -> str:
        """Version of the policy in force (exports record it in their manifest)."""
        return self._snapshot.version

    @property
    def roles(self) -> frozenset[str]:
        """Role names the policy in force mentions; any other role is denied everything."""
        return self._snapshot.roles

    def _load(self) -> _Snapshot:
        try:
            model_bytes = self._model_path.read_bytes()
            policy_bytes = self._policy_path.read_bytes()
        except OSError as exc:
            raise PolicyError(f"cannot read policy files: {exc}") from None
        return _build_snapshot(model_bytes, policy_bytes, self._cache_size)

    def reload(self) -> str:
        """Load the files into a new enforcer, swap it in with an empty cache; return its version.

        Raises ``PolicyError`` and keeps the policy in force if the files are invalid.
        """
        with self._reload_lock:
            stamp = self._file_stamp()  # taken first: a write finishing during the load is seen
            try:
                snapshot = self._load()
            except PolicyError:
                self._stamp = stamp  # these files do not load: not tried again until they change
                raise
            self._snapshot, self._stamp = snapshot, stamp
        return snapshot.version

    def _file_stamp(self) -> tuple[tuple[int, int], ...]:
        """Size and modification time (ns) of both files; ``(-1, -1)`` for one that cannot be
        read."""
        stamps = []
        for path in (self._model_path, self._policy_path):
            try:
                st = path.stat()
                stamps.append((st.st_size, st.st_mtime_ns))
            except OSError:
                stamps.append((-1, -1))
        return tuple(stamps)

    def files_changed(self) -> bool:
        """Whether the files differ (size or modification time) from those last loaded or last
        found not to load (:meth:`reload`)."""
        return self._file_stamp() != self._stamp

    def decide(self, roles: Sequence[str], resource: str, action: str, purpose: str) -> Decision:
        """Decide whether a principal holding ``roles`` may do ``action`` on ``resource`` for
        ``purpose``.

        Allowed when at least one role is allowed and no role is explicitly denied. An empty role
        list, an unknown role, resource, action or purpose is denied.
        """
        return self._decide(self._snapshot, roles, resource, action, purpose)

    def allowed_categories(self, roles: Sequence[str], purpose: str) -> frozenset[str]:
        """Return the data categories (``contact``, ``traits``, ...) ``roles`` may read for
        ``purpose``; all are judged against the same policy snapshot."""
        snap = self._snapshot
        key = (_role_tuple(roles), purpose)
        found = snap.categories.get(key)
        if found is not None:
            return found
        found = frozenset(
            category
            for category, resource in zip(CATEGORIES, CATEGORY_RESOURCES, strict=True)
            if self._decide(snap, key[0], resource, Action.READ, purpose).allowed
        )
        if purpose in _PURPOSE_SET:
            _store(snap.categories, key, found, snap.cache_size)
        return found

    def allows_purpose(self, roles: Sequence[str], purpose: str) -> bool:
        """Whether ``roles`` may do anything at all (any resource, any action) for ``purpose``,
        deny rows and inheritance applied as in :meth:`decide`."""
        snap = self._snapshot
        role_tuple = _role_tuple(roles)
        return any(
            self._decide(snap, role_tuple, resource, action, purpose).allowed
            for resource, action in sorted(snap.allowed_pairs)
        )

    @staticmethod
    def _decide(
        snap: _Snapshot, roles: Sequence[str], resource: str, action: str, purpose: str
    ) -> Decision:
        key = (_role_tuple(roles), resource, action, purpose)
        decision = snap.decisions.get(key)
        if decision is not None:
            return decision
        known = resource in _RESOURCE_SET and action in _ACTION_SET and purpose in _PURPOSE_SET
        if not known:
            # Not cached: the caller controls these strings and the cache must stay bounded.
            return Decision(False, None, snap.version)
        decision = _evaluate(snap, key[0], resource, action, purpose)
        _store(snap.decisions, key, decision, snap.cache_size)
        return decision


def _role_tuple(roles: Sequence[str]) -> tuple[str, ...]:
    if type(roles) is tuple:
        return roles
    if isinstance(roles, str):
        raise TypeError("roles must be a sequence of role names, not one string")
    return tuple(roles)


def _store(cache: dict[Any, Any], key: Any, value: Any, limit: int) -> None:
    """Insert into a snapshot cache, emptying it first when it is full (it refills quickly)."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
