"""The process's assembled services (engines, key provider, key store, vault, tokenizer).

Built on first use from the settings and cached; nothing is built at import time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from cdp.crypto.keyfile import KeyFile, KeyMaterial
from cdp.crypto.keystore import KeyStore
from cdp.crypto.provider import LocalKeyProvider
from cdp.crypto.tokens import Tokenizer
from cdp.crypto.vault import Vault
from cdp.db.engine import dispose_engines, get_engine
from cdp.db.revisions import schema_state
from cdp.db.separation import check_separate
from cdp.errors import ConfigurationError, KeyFileMissingError, KeyMaterialError
from cdp.logging import get_logger
from cdp.settings import Settings, get_settings

log = get_logger("cdp.runtime")


@dataclass
class Runtime:
    """Everything a service function needs to reach storage and keys."""

    settings: Settings
    data_engine: Engine
    key_engine: Engine
    key_file: KeyFile
    provider: LocalKeyProvider
    keystore: KeyStore
    vault: Vault
    tokenizer: Tokenizer

    def __repr__(self) -> str:
        return f"Runtime(data={self.data_engine.dialect.name}, keys={self.key_engine.dialect.name})"


def key_file_for(settings: Settings) -> KeyFile:
    inline = settings.master_keys.get_secret_value() if settings.master_keys else None
    return KeyFile(None if inline else settings.resolved_key_file, inline_json=inline)


def check_separation(settings: Settings) -> None:
    """The key store must never live in the data database: the same URL is refused before
    connecting; :func:`~cdp.db.separation.check_separate` then compares what the two engines
    reach, however their URLs are written."""
    if settings.data_url == settings.keys_url:
        raise ConfigurationError(
            "CDP_KEYSTORE_URL must name a different database than CDP_DATABASE_URL"
        )


def _missing_key_file(key_file: KeyFile, data_engine: Engine, key_engine: Engine) -> Exception:
    """The error for a missing key file: `cdp init` only where there is no data yet."""
    from cdp.crypto.inventory import holds_data_keys, holds_subjects

    if holds_data_keys(key_engine) or holds_subjects(data_engine):
        return KeyMaterialError(
            f"the key file {key_file.path} does not exist, but the databases hold data that only "
            "it can read: restore it from its backup (do not run `cdp init`; see 'Lost key file "
            "or key store' in docs/operations.md)"
        )
    return KeyMaterialError(f"the key file {key_file.path} does not exist; run `cdp init`")


_NAMES = {"data": "the data database", "keystore": "the key store"}


def check_schemas(key_file: KeyFile, data_engine: Engine, key_engine: Engine) -> None:
    """Refuse databases whose schema is not at this code's migration heads, before anything
    reads them (a missing table would fail the command half-way, or an older schema serve it
    wrongly): the check ``/readyz`` makes (:func:`cdp.db.revisions.schema_state`, one small
    query per database).

    ``ConfigurationError`` says which database is at which revision and that ``cdp init``
    upgrades (or creates) it, or that this release does not know a revision. A key store
    without a schema beside a data database that holds subjects is what a lost key store looks
    like: the ``KeyMaterialError`` ``cdp init`` gives there
    (:func:`cdp.crypto.inventory.refuse_new_keys_beside_data`), not advice to run it."""
    states = (schema_state(data_engine, "data"), schema_state(key_engine, "keystore"))
    off = [state for state in states if not state.at_heads]
    if not off:
        return
    unknown = [state for state in off if state.unknown]
    if unknown:
        raise ConfigurationError(
            " and ".join(
                f"{_NAMES[s.store]} is at schema revision {','.join(s.unknown)}" for s in unknown
            )
            + ", which this cdp does not know (a newer release's, or another application's "
            "database): run the cdp release that migrated it"
        )
    if not states[1].applied:
        from cdp.crypto.inventory import refuse_new_keys_beside_data

        refuse_new_keys_beside_data(key_file, data_engine, key_engine)
    where = " and ".join(
        f"{_NAMES[s.store]} is at schema revision {','.join(s.applied)}"
        if s.applied
        else f"{_NAMES[s.store]} has no schema"
        for s in off
    )
    it = "it" if len(off) == 1 else "them"
    if not any(s.applied for s in off):
        raise ConfigurationError(f"{where}: run `cdp init` to create {it}")
    heads = " and ".join(",".join(s.heads) for s in off)
    raise ConfigurationError(f"{where}, behind this cdp's {heads}: run `cdp init` to upgrade {it}")


def check_key_material(data_engine: Engine, key_engine: Engine, material: KeyMaterial) -> None:
    """Refuse key material that disagrees with the key store's key-check values, and record the
    values of versions it has none of yet (:mod:`cdp.crypto.key_checks`). A key store whose
    schema is behind (no ``key_checks`` yet; only a server opens the runtime on one, see
    :func:`check_schemas`) is not checked: ``cdp init`` upgrades it, and ``/readyz`` answers
    503 meanwhile."""
    try:
        _verify_changed_file(data_engine, key_engine, material)
    except (OperationalError, ProgrammingError) as exc:
        log.warning("key-check values not compared", error_type=type(exc).__name__)


def _verify_changed_file(data_engine: Engine, key_engine: Engine, material: KeyMaterial) -> None:
    from cdp.crypto.key_checks import secrets_in_use_for, verify_and_record

    verify_and_record(key_engine, material, secrets_in_use=secrets_in_use_for(data_engine))


def open_runtime(
    settings: Settings, *, check_keys: bool = True, check_schema: bool = True
) -> Runtime:
    """The services for ``settings``. ``check_keys``: compare the key file with the key
    store's key-check values first (off only for ``cdp keys status``, which shows the
    mismatches instead of failing on them). ``check_schema``: refuse databases whose schema is
    not at this code's migration heads (:func:`check_schemas`; off only for the API server and
    ``cdp serve``'s jobs, which start anyway and answer ``/readyz`` 503)."""
    check_separation(settings)
    key_file = key_file_for(settings)
    data_engine = get_engine(settings.data_url)
    key_engine = get_engine(settings.keys_url)
    check_separate(data_engine, key_engine)
    try:
        provider = LocalKeyProvider(key_file)
    except KeyFileMissingError:
        raise _missing_key_file(key_file, data_engine, key_engine) from None
    if check_schema:
        check_schemas(key_file, data_engine, key_engine)
    keystore = KeyStore(key_engine, provider, max_wraps=settings.kek_max_wraps)
    material = provider.material
    if check_keys:
        check_key_material(data_engine, key_engine, material)
        # a key file changed under the running process is checked before use, strictly: a
        # comparison that cannot be made (a database error) fails the reload, it does not pass
        provider.guard_reloads(lambda new: _verify_changed_file(data_engine, key_engine, new))
    shared = key_file.shared_mode()
    if shared is not None:
        log.warning("key file readable by other users; chmod 600 it", mode=f"{shared:o}")
    tokenizer = Tokenizer(
        material.live_keys("pseudonym"),
        current=material.current("pseudonym"),
        default_region=settings.default_region,
    )
    return Runtime(
        settings=settings,
        data_engine=data_engine,
        key_engine=key_engine,
        key_file=key_file,
        provider=provider,
        keystore=keystore,
        vault=Vault(keystore, cache_size=settings.dek_cache_size),
        tokenizer=tokenizer,
    )


_runtime: Runtime | None = None
_schema_checked = False
_lock = threading.Lock()


def get_runtime(*, check_schema: bool = True) -> Runtime:
    """The process-wide runtime (built on first use). ``check_schema``: refuse databases whose
    schema is not at this code's migration heads (:func:`check_schemas`), checked once per
    process; off only for the API server and ``cdp serve``'s jobs, which start and serve
    anyway (``/readyz`` answers 503 until ``cdp init`` upgraded the schema)."""
    global _runtime, _schema_checked
    with _lock:
        if _runtime is None:
            _runtime = open_runtime(get_settings(), check_schema=check_schema)
            _schema_checked = check_schema
        elif check_schema and not _schema_checked:
            check_schemas(_runtime.key_file, _runtime.data_engine, _runtime.key_engine)
            _schema_checked = True
        return _runtime


def reset_runtime() -> None:
    """Forget the runtime and close its connections (tests, after `cdp init`)."""
    global _runtime, _schema_checked
    with _lock:
        _runtime = None
        _schema_checked = False
    dispose_engines()
