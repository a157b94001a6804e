"""A failed run stores one of cdp's error codes, never a library's: SQLAlchemy's exceptions carry a
``code`` of their own (``gkpj`` for an IntegrityError, ``e3q8`` for an OperationalError), which
the run's ``error_code`` used to take over; a Ctrl+C stored ``KeyboardInterrupt``."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import cdp.exports.sync as sync
from cdp.errors import NotFoundError
from cdp.exports.run import run_export
from tests.exports.conftest import World


def _export(world: World) -> None:
    run_export(
        runtime=world.rt,
        ctx=world.ctx("email_marketing"),
        segment="everyone",
        destination="mail",
        clock=world.clock,
    )


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key")), "internal_error"),
        (sa.exc.OperationalError("SELECT", {}, Exception("server closed")), "database_unavailable"),
        (KeyboardInterrupt(), "interrupted"),
    ],
)
def test_a_failed_run_stores_a_cdp_error_code(
    world: World, monkeypatch: pytest.MonkeyPatch, error: BaseException, code: str
) -> None:
    world.person({"email": "a@example.com"})
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)

    def broken(*_a: object, **_k: object) -> None:
        raise error

    monkeypatch.setattr(sync, "apply", broken)
    with pytest.raises(type(error)):
        _export(world)
    [(_, status, stored)] = world.runs()
    assert (status, stored) == ("failed", code)


def test_an_unknown_segment_is_refused_before_a_run_is_stored(world: World) -> None:
    """Exporting a segment nobody defined is the caller's mistake (404 through the API): no run
    is stored for it, so the runs list and the error log hold no failed run."""
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    with pytest.raises(NotFoundError):
        run_export(
            runtime=world.rt,
            ctx=world.ctx("email_marketing"),
            segment="no-such-segment",
            destination="mail",
            clock=world.clock,
        )
    assert world.runs() == []
