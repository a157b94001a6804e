"""Tables of the audit trail: the append-only log and the one-row head of its hash chain.

``audit_log`` rows are only ever inserted (triggers reject UPDATE and DELETE on both backends, and
TRUNCATE on PostgreSQL; no code path issues them). ``audit_subjects`` indexes the records by subject
for the subject access report: the chain does not cover it, so ``cdp audit verify`` checks it
against the records' ``subject_ids``; PostgreSQL also refuses index rows other than those of the
records being appended (migration 0016a). ``audit_head`` holds the last sequence number and hash, so
that an append locks one row (``SELECT ... FOR UPDATE``) instead of the whole log, and writers in
several processes extend one linear chain. The head is derived state: ``cdp audit verify`` checks
the log itself, and compares the head with it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, Integer, Text
from sqlmodel import Field, SQLModel

from cdp.db.types import UtcDateTime


class AuditLogRow(SQLModel, table=True):
    """One audit record. Never personal data: subject ids are pseudonymous, fields are names."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_principal_at", "principal_id", "at"),
    )

    seq: int = Field(
        sa_column=Column(
            # SQLite: INTEGER makes it the rowid (one B-tree, not a table and an index; 0011)
            BigInteger().with_variant(Integer(), "sqlite"),
            primary_key=True,
            autoincrement=False,
        )
    )
    at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    principal_id: str = Field(max_length=64)
    principal_name: str = Field(max_length=64)
    roles: str = Field(max_length=256, description="Comma-separated roles held at the time.")
    action: str = Field(max_length=32)
    resource: str = Field(max_length=64)
    subject_ids: str = Field(sa_column=Column(Text, nullable=False), description="JSON list.")
    fields: str = Field(sa_column=Column(Text, nullable=False), description="JSON list.")
    purpose: str = Field(max_length=32)
    outcome: str = Field(max_length=8, description="allowed | denied | error")
    request_id: str = Field(max_length=64)
    client: str = Field(max_length=128)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditSubject(SQLModel, table=True):
    """Index of which records name which subject (the subject access report reads it)."""

    __tablename__ = "audit_subjects"
    __table_args__ = {"sqlite_with_rowid": False}  # clustered on its key (migration 0009)

    subject_id: str = Field(primary_key=True, max_length=32)
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))


class AuditHead(SQLModel, table=True):
    """The chain's head: last sequence number and hash (one row, id 1)."""

    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    hash: str = Field(max_length=64)
