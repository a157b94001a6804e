"""``cdp init``: create the home directory, the key file and both schemas (idempotent)."""

from __future__ import annotations

from dataclasses import dataclass

from cdp.crypto.inventory import refuse_new_keys_beside_data
from cdp.crypto.key_checks import forget_key_records
from cdp.db import migrate
from cdp.db.engine import get_engine
from cdp.db.separation import check_separate
from cdp.runtime import check_key_material, check_separation, key_file_for
from cdp.settings import Settings


@dataclass(frozen=True)
class InitReport:
    key_file_created: bool
    key_file: str
    data_revision: str
    keystore_revision: str
    data_backend: str
    keystore_backend: str


def initialize(settings: Settings) -> InitReport:
    """Create or upgrade everything cdp needs; safe to run any number of times.

    Refuses (``KeyMaterialError``, nothing created) to create a key file or an empty key store
    beside existing data: :func:`cdp.crypto.inventory.refuse_new_keys_beside_data`."""
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
