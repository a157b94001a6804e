"""Imports every module that defines data-database tables, so that ``SQLModel.metadata`` is whole.

Add a line here for each new model module; the migration-drift test fails if one is missing.
"""

from __future__ import annotations

from sqlmodel import SQLModel

import cdp.access.models
import cdp.audit.models
import cdp.consent.models
import cdp.db.models
import cdp.exports.models
import cdp.ingest.models
import cdp.privacy.models
import cdp.profiles.models
import cdp.segments.models
import cdp.traits.models  # noqa: F401

metadata = SQLModel.metadata
