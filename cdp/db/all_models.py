"""Imports every module that defines data-database tables, so that ``SQLModel.metadata`` is whole.

Add a line here for each new model module; the migration-drift test fails if one is missing.
"""

from __future__ import annotations

from sqlmodel import SQLModel

import cdp.access.models  # noqa: F401
import cdp.audit.models  # noqa: F401
import cdp.consent.models  # noqa: F401
import cdp.db.models  # noqa: F401
import cdp.exports.models  # noqa: F401
import cdp.ingest.models  # noqa: F401
import cdp.privacy.models  # noqa: F401
import cdp.profiles.models  # noqa: F401
import cdp.segments.models  # noqa: F401
import cdp.traits.models  # noqa: F401

metadata = SQLModel.metadata
