"""``cdp init``: create the home directory, the key file and both schemas (idempotent)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from cdp.crypto.inventory import holds_data_keys, holds_subjects
from cdp.crypto.key_checks import forget_key_records
from cdp.crypto.keyfile import KeyFile
from cdp.db import migrate
from cdp.db.engine import get_engine
from cdp.db.separation import check_separate
from cdp.errors import KeyMaterialError
from cdp.runtime import check_key_material, check_separation, key_file_for
from cdp.settings import Settings

RECOVERY = "see 'Lost key file or key store' in docs/operations.md"


@dataclass(frozen=True)
class InitReport:
    key_file_created: bool
    key_file: str
    data_revision: str
    keystore_revision: str
    data_backend: str
    keystore_backend: str


def refuse_new_keys_beside_data(key_file: KeyFile, data_engine: Engine, key_engine: Engine) -> None:
    """Refuse to mint key material, or an empty key store, beside data that needs the old ones.

    A new key file cannot read the data keys already in the key store (another KEK) and tokenises
    every identity anew (another pseudonym key: each person would be ingested again as someone
    new); an empty key store has none of the data keys that decrypt the data database's subjects.
    Both are what a lost or deleted file looks like, and the answer is to restore it."""
    keys = holds_data_keys(key_engine)
    subjects = holds_subjects(data_engine)
    if not key_file.exists() and (keys or subjects):
        holder = "the key store holds data keys" if keys else "the data database holds subjects"
        raise KeyMaterialError(
            f"the key file {key_file.path} does not exist but {holder} that only it can read: "
            f"restore the key file from its backup (cdp init creates none beside data; {RECOVERY})"
        )
    if subjects and not keys:
        raise KeyMaterialError(
            "the key store holds no data keys but the data database holds subjects: restore the "
            f"key store from the backup taken with the data (cdp init creates no empty key store "
            f"beside data; {RECOVERY})"
        )


def initialize(settings: Settings) -> InitReport:
    """Create or upgrade everything cdp needs; safe to run any number of times.

    Refuses (``KeyMaterialError``, nothing created) to create a key file or an empty key store
    beside existing data: :func:`refuse_new_keys_beside_data`."""
    check_separation(settings)
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.home.chmod(0o700)  # the embedded databases and the key file are private
    key_file = key_file_for(settings)
    data_engine = get_engine(settings.data_url)
    key_engine = get_engine(settings.keys_url)
    check_separate(data_engine, key_engine)
    refuse_new_keys_beside_data(key_file, data_engine, key_engine)
    created = key_file.create()
    material = key_file.load()  # fail fast on unusable material
    migrate.upgrade(data_engine, "data")
    migrate.upgrade(key_engine, "keystore")
    if created:  # no data (checked above): what the key store knew of older material is moot
        forget_key_records(key_engine)
    check_key_material(data_engine, key_engine, material)  # records a new installation's
    return InitReport(
        key_file_created=created,
        key_file="CDP_MASTER_KEYS" if key_file.read_only else str(key_file.path),
        data_revision=migrate.current_revision(data_engine, "data"),
        keystore_revision=migrate.current_revision(key_engine, "keystore"),
        data_backend=data_engine.dialect.name,
        keystore_backend=key_engine.dialect.name,
    )
