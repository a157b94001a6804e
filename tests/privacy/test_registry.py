"""The registry names every table column that holds subject ids; the check can fail."""

from __future__ import annotations

import sqlalchemy as sa

from cdp.db.all_models import metadata
from cdp.privacy.registry import ENTRIES, Treatment, present_entries, unregistered


def test_every_subject_column_in_the_schema_is_registered() -> None:
    missing = unregistered(metadata)
    assert missing == [], (
        f"tables holding subject ids without a privacy-registry entry: {missing}; "
        "add them to cdp/privacy/registry.py ENTRIES (erasure, access, retention)"
    )


def test_the_check_catches_an_unregistered_table() -> None:
    extra = sa.MetaData()
    sa.Table("subjects", extra, sa.Column("id", sa.String(32), primary_key=True))
    sa.Table(
        "wishlists",
        extra,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("owner", sa.String(32), sa.ForeignKey("subjects.id")),
    )
    sa.Table("coupons_sent", extra, sa.Column("subject_id", sa.String(32), primary_key=True))
    sa.Table("bulk_jobs", extra, sa.Column("subject_ids", sa.Text))
    sa.Table("merges2", extra, sa.Column("merged_id", sa.String(32), primary_key=True))
    sa.Table("products", extra, sa.Column("sku", sa.String(32), primary_key=True))
    assert sorted(unregistered(extra)) == [
        ("bulk_jobs", "subject_ids"),
        ("coupons_sent", "subject_id"),
        ("merges2", "merged_id"),
        ("wishlists", "owner"),
    ]


def test_entries_name_real_columns_and_keep_subjects_last() -> None:
    for entry in present_entries(metadata):
        table = metadata.tables[entry.table]
        assert entry.column in table.c, entry
        for col in (*entry.also_null, entry.time_column, entry.destination_column):
            assert col is None or col in table.c, (entry, col)
        if entry.treatment is Treatment.UNLINK:
            assert table.c[entry.column].nullable, entry
    assert ENTRIES[-1].table == "subjects"
    # a recipients ledger is read before anything else is deleted
    first_delete = next(i for i, e in enumerate(ENTRIES) if e.treatment is Treatment.DELETE)
    assert all(i <= first_delete for i, e in enumerate(ENTRIES) if e.destination_column)


def test_no_erasure_delete_cascades_into_rows_it_does_not_count() -> None:
    """The outcome counts the rows its own statements remove; a foreign key ``ON DELETE
    CASCADE`` into a table erasure deletes from would remove rows it never counted. Every such
    child is a registered delete of its own, on that key, applied before its parent."""
    order = [(e.table, e.column) for e in ENTRIES]
    deleted = {e.table for e in ENTRIES if e.treatment is Treatment.DELETE}
    for table in metadata.sorted_tables:
        for fk in table.foreign_keys:
            parent = fk.column.table.name
            if parent not in deleted or (fk.ondelete or "").upper() != "CASCADE":
                continue
            key = (table.name, fk.parent.name)
            assert key in order, f"{key} cascades from {parent} uncounted"
            entry = ENTRIES[order.index(key)]
            assert entry.treatment is Treatment.DELETE, key
            first_parent = min(i for i, (t, _c) in enumerate(order) if t == parent)
            assert order.index(key) < first_parent, f"{key} is applied after {parent}"
