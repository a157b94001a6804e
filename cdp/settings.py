"""Runtime configuration: one pydantic-settings object, read from ``CDP_*`` variables.

Nothing is built at import time: call :func:`get_settings` (cached) where settings are needed,
and :func:`reset_settings` in tests after changing the environment.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from cdp.errors import ConfigurationError
from cdp.intervals import parse_every


class Settings(BaseSettings):
    """Every setting cdp reads. Each field maps to the variable ``CDP_<FIELD NAME>``."""

    model_config = SettingsConfigDict(env_prefix="CDP_", env_file=None, extra="ignore")

    home: Path = Field(
        default=Path(".cdp"),
        description="Directory holding the embedded SQLite databases and the key file.",
    )
    database_url: SecretStr | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the data database, e.g. "
            "postgresql+psycopg://user@host:5432/cdp. Default: SQLite file HOME/cdp.db."
        ),
    )
    keystore_url: SecretStr | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the key store holding the wrapped data keys; kept apart from the "
            "data database so that a data backup never carries keys. Default: HOME/keys.db."
        ),
    )
    key_file: Path | None = Field(
        default=None,
        description="Path of the master key file (mode 0600). Default: HOME/master-keys.json.",
    )
    master_keys: SecretStr | None = Field(
        default=None,
        description=(
            "The master key material as JSON (the key file's content), for deployments that "
            "inject secrets through the environment. When set, the key file is not read."
        ),
    )
    default_region: str = Field(
        default="US",
        min_length=2,
        max_length=2,
        description="ISO 3166 region used to parse phone numbers written without a country code.",
    )
    dek_cache_size: int = Field(
        default=10_000, ge=0, description="How many unwrapped data keys to keep in memory."
    )
    kek_max_wraps: int = Field(
        default=2**30,
        ge=1,
        le=2**31,
        description=(
            "Refuse to wrap more data keys under one key-encryption key version than this "
            "(AES-GCM with random nonces stays far below 2^32 uses per key); rotate instead."
        ),
    )
    policy_dir: Path | None = Field(
        default=None,
        description=(
            "Directory holding the Casbin access policy (model.conf, policy.csv). "
            "Default: the repository's policies/ directory."
        ),
    )
    policy_reload_seconds: float = Field(
        default=5.0,
        ge=0,
        description=(
            "How often (seconds, at most) a process looks at the policy files and, when they "
            "changed, loads them; 0 never does (restart to apply a change)."
        ),
    )
    auth_cache_seconds: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description=(
            "How long an API or CLI process may reuse a verified bearer token's principal "
            "without reading it again (0: read on every request). A revocation made in the same "
            "process applies at once; one made elsewhere applies within this many seconds. "
            "Expiry is checked on every request."
        ),
    )
    base_currency: str = Field(
        default="CNY",
        min_length=3,
        max_length=3,
        description=(
            "Reporting currency of orders.value_base (analytics: RFM monetary, CLV). CNY by "
            "default because the demo shop and the business guides cdp serves are Chinese "
            "e-commerce; it must be a key of fx_rates."
        ),
    )
    fx_rates: dict[str, float] = Field(
        default_factory=lambda: {
            "CNY": 1.0,
            "USD": 7.10,
            "EUR": 7.70,
            "GBP": 9.00,
            "JPY": 0.047,
        },
        description=(
            "Static exchange rates: the value of one unit of each currency in a common reference "
            "(the defaults are CNY per unit, late-2026 round figures). value_base = amount * "
            "rate[currency] / rate[base_currency]. Orders in a currency not listed are rejected. "
            'Override with CDP_FX_RATES=\'{"CNY": 1, "USD": 7.2}\' (the whole table).'
        ),
    )
    ingest_batch_size: int = Field(
        default=5_000,
        ge=1,
        le=100_000,
        description="Records per ingestion transaction (all or nothing per batch).",
    )
    ingest_max_record_bytes: int = Field(
        default=1_048_576,
        ge=1_024,
        description="Longest input line or record accepted by the batch connectors; longer "
        "ones are rejected (record_too_large) without being read into memory whole.",
    )
    export_dir: Path | None = Field(
        default=None,
        description=(
            "Directory where file exports (CSV, JSON Lines, Meta and Google customer lists) and "
            "every export's manifest are written, one sub-directory per destination. "
            "Default: HOME/exports."
        ),
    )
    export_file_days: int = Field(
        default=7,
        ge=1,
        description=(
            "Days after an export run that retention deletes the files it wrote under "
            "CDP_EXPORT_DIR (adds, removes, the manifest file; the manifest stays in the "
            "database): a hand-off to the destination's tool, not a store."
        ),
    )
    export_schedule_poll_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How often `cdp serve` checks for scheduled exports that are due.",
    )
    shutdown_grace_seconds: int = Field(
        default=25,
        ge=1,
        le=3600,
        description=(
            "How long `cdp serve`, told to stop (SIGTERM, Ctrl+C), waits for the requests in "
            "flight and the background jobs before it exits anyway (see docs/operations.md)."
        ),
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Lowest level written to the log."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto",
        description="Log renderer: JSON lines, human console, or auto (console on a terminal).",
    )
    traits_config: Path | None = Field(
        default=None,
        description=(
            "TOML file with the traits rules (lifecycle windows, value layers, loyalty tiers, "
            "points, CLV, segments; see docs/traits.md). Default: the built-in rules."
        ),
    )
    traits_workers: int = Field(
        default=2,
        ge=1,
        le=16,
        description=(
            "PostgreSQL: how many trait steps of `cdp traits compute` (order traits, tiers, "
            "points ledger) run at once, each on its own connection and server process; 1 runs "
            "them one after another. SQLite always runs them one after another."
        ),
    )
    traits_interval: timedelta | None = Field(
        default=timedelta(days=1),
        description=(
            "How often `cdp serve` recomputes every subject's traits (its traits job), written "
            "like a schedule's --every: 30m, 6h, 1d (one minute to 366 days); 0 or off: never "
            "(run `cdp traits compute` yourself). At start it runs when the stored traits are "
            "older than this or were never computed."
        ),
    )
    audit_verify_workers: int = Field(
        default=0,
        ge=0,
        le=64,
        description=(
            "How many processes `cdp audit verify` uses, each verifying one range of the chain; "
            "0: one per available core (at most 8) once the log holds 100,000 records, "
            "otherwise one."
        ),
    )
    retention_inactive_days: int = Field(
        default=1095,
        ge=1,
        description=(
            "Subjects with no order, event, consent change or profile update for this many days "
            "are erased by `cdp retention run` (no tombstone: they may come back as new)."
        ),
    )
    privacy_package_days: int = Field(
        default=30,
        ge=1,
        description="Days an access package stays downloadable before retention deletes it.",
    )
    privacy_contact: str | None = Field(
        default=None,
        max_length=500,
        description=(
            "Who a person contacts to exercise their rights (the controller's or DPO's name and "
            "address, email or web form), stated in every access package (GDPR art. 13-15)."
        ),
    )
    supervisory_authority: str | None = Field(
        default=None,
        max_length=500,
        description=(
            "The supervisory authority a person may complain to (name and address or web page), "
            "stated in every access package beside the right to lodge a complaint (art. 77)."
        ),
    )

    max_request_bytes: int = Field(
        default=1_048_576,
        ge=600 * 1024,
        description=(
            "Largest request body the API reads (bytes as sent, before gzip); past it 413. "
            "Kept above the Segment routes' own limits (32 KB a message, 500 KB a batch)."
        ),
    )
    rate_limit_principal_per_second: float = Field(
        default=500.0,
        ge=0,
        description=(
            "Requests per second each bearer token may make, per API worker process (token "
            "bucket in memory); 0 turns the limit off. Past it 429 with Retry-After."
        ),
    )
    rate_limit_principal_burst: int = Field(
        default=1000, ge=1, description="Requests a bearer token may make at once (bucket size)."
    )
    rate_limit_source_per_second: float = Field(
        default=200.0,
        ge=0,
        description=(
            "Requests per second each Segment write key may make, per API worker process; "
            "0 turns the limit off. Past it 429 with Retry-After."
        ),
    )
    rate_limit_source_burst: int = Field(
        default=400, ge=1, description="Requests a write key may make at once (bucket size)."
    )
    request_timeout_seconds: float = Field(
        default=30.0,
        ge=0,
        description=(
            "Deadline for an API response to start; past it 504 (the handler's thread is not "
            "stopped, see docs/api-errors.md). 0 turns the deadline off."
        ),
    )

    @field_validator("default_region")
    @classmethod
    def _upper_region(cls, value: str) -> str:
        return value.upper()

    @field_validator("base_currency")
    @classmethod
    def _upper_currency(cls, value: str) -> str:
        return value.upper()

    @field_validator("traits_interval", mode="before")
    @classmethod
    def _parse_interval(cls, value: object) -> timedelta | None:
        if value is None or isinstance(value, timedelta):
            return value
        text = str(value).strip().lower()
        if text in ("0", "off"):
            return None
        return timedelta(seconds=parse_every(text))  # ValueError: the rule broken, not the text

    @field_validator("fx_rates")
    @classmethod
    def _check_rates(cls, value: dict[str, float]) -> dict[str, float]:
        rates = {k.upper(): float(v) for k, v in value.items()}
        if any(not (r > 0) for r in rates.values()):
            raise ValueError("every exchange rate must be a positive number")
        return rates

    @property
    def resolved_key_file(self) -> Path:
        """Where the master key file lives."""
        return self.key_file if self.key_file is not None else self.home / "master-keys.json"

    @property
    def data_url(self) -> str:
        """The data database URL (embedded SQLite by default)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.home / 'cdp.db').resolve()}"

    @property
    def keys_url(self) -> str:
        """The key store URL (embedded SQLite by default, a separate file)."""
        if self.keystore_url is not None:
            return self.keystore_url.get_secret_value()
        return f"sqlite:///{(self.home / 'keys.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment; ``ConfigurationError``
    naming what cannot be used (:func:`settings_problem`)."""
    try:
        return Settings()
    except (ValidationError, SettingsError) as exc:
        raise ConfigurationError(settings_problem(exc)) from None


def reset_settings() -> None:
    """Forget the cached settings (tests, or after changing the environment)."""
    get_settings.cache_clear()


_SETTINGS_FIELD = re.compile(r'field "(\w+)"')


def settings_problem(exc: Exception) -> str:
    """What is wrong with the settings, naming the ``CDP_*`` variables and the rule broken, never
    the values given (a database URL can carry a password)."""
    if isinstance(exc, ValidationError):
        parts = []
        for error in exc.errors(include_input=False, include_url=False):
            name = "CDP_" + str(error["loc"][0]).upper() if error["loc"] else "a setting"
            parts.append(f"{name}: {error['msg']}")
        return "invalid settings: " + "; ".join(dict.fromkeys(parts))
    found = _SETTINGS_FIELD.search(str(exc))
    name = "CDP_" + found.group(1).upper() if found else "a CDP_* setting"
    return f"invalid settings: {name} cannot be read (a list or mapping setting takes JSON)"
