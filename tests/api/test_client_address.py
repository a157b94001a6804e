"""The client address audit records keep: uvicorn takes it from ``X-Forwarded-For`` when the
connection comes from a trusted proxy (127.0.0.1 by default) and passes on whatever the header
held. Such a value is recorded as ``invalid`` (never echoed); an IP address as it is. A request
with an odd address is answered and audited like any other, and never fails the other requests
whose records share its group-commit batch."""

from __future__ import annotations

import asyncio
import re
from collections import Counter

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from cdp.api.app import create_app
from cdp.api.auth import INVALID_CLIENT, client_address
from cdp.audit import batching
from cdp.audit.batching import GroupCommitter
from cdp.audit.verify import verify_chain
from cdp.audit.writer import LOG, AuditEntry, append, check_entry
from tests.audit.factories import make_entry, make_principal
from tests.conftest import CdpEnv
from tests.factories import make_subject

ODD = ("a b", "<script>", "fe80::1%eth0", "x" * 200, "1.2.3.4.5", "::1%<b c>")


def _audit(env: CdpEnv) -> list[sa.Row[tuple[object, ...]]]:
    with env.runtime.data_engine.connect() as conn:
        return list(conn.execute(sa.select(LOG).order_by(LOG.c.seq)).all())


async def _get_all(requests: list[tuple[str, dict[str, str]]]) -> list[httpx.Response]:
    """Every request at once through the real app behind uvicorn's proxy-headers middleware, as
    ``cdp serve`` runs it (the test transport's peer is 127.0.0.1, a trusted proxy)."""
    app = ProxyHeadersMiddleware(create_app(), trusted_hosts="127.0.0.1")  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://cdp.test") as client:
        return await asyncio.gather(*(client.get(url, headers=h) for url, h in requests))


def test_odd_client_addresses_never_fail_their_batch(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Legitimate reads running beside reads with odd forwarded addresses all succeed, each with
    exactly one audit record (they were failed with the odd entry's error when they shared its
    batch); the odd reads succeed too, recorded with ``invalid``."""
    monkeypatch.setattr(batching, "MAX_GATHER_SECONDS", 60.0)  # every request in flight: 1 batch
    sizes: list[int] = []
    import cdp.audit.service as service

    def counting(conn: sa.Connection, batch: list[AuditEntry], **kw: bool) -> object:
        sizes.append(len(batch))
        return append(conn, batch, **kw)

    monkeypatch.setattr(service, "append", counting)
    rt = cdp_env.runtime
    sid = make_subject(rt, {"email": "a@example.com", "phone": "+14155550123"})
    token = make_principal(rt, ["support"]).token
    base = {"Authorization": f"Bearer {token}", "X-Purpose": "support"}
    requests = [(f"/v1/profiles/{sid}", {**base, "X-Request-ID": f"good-{i}"}) for i in range(30)]
    for i, odd in enumerate(ODD):
        headers = {**base, "X-Request-ID": f"odd-{i}", "X-Forwarded-For": odd}
        requests.insert(4 * i + 1, (f"/v1/profiles/{sid}", headers))
    answers = asyncio.run(_get_all(requests))

    assert [r.status_code for r in answers] == [200] * len(requests), [
        (r.status_code, r.text[:200]) for r in answers if r.status_code != 200
    ]
    assert all(r.json()["email"] == "a@example.com" for r in answers)
    assert max(sizes) > 1  # the batching was exercised: odd and good records together
    rows = _audit(cdp_env)
    per_request = Counter(row.request_id for row in rows)
    assert per_request == Counter(h["X-Request-ID"] for _, h in requests)  # one record each
    clients = {row.request_id: row.client for row in rows}
    assert all(clients[f"good-{i}"] == "127.0.0.1" for i in range(30))
    expected = {"fe80::1%eth0": "fe80::1", "::1%<b c>": "::1"}
    for i, odd in enumerate(ODD):
        assert clients[f"odd-{i}"] == expected.get(odd, INVALID_CLIENT)
    assert {row.outcome for row in rows} == {"allowed"}
    assert verify_chain(runtime=rt).ok


def test_a_denied_request_from_an_odd_address_is_a_403_with_its_record(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt, {"email": "a@example.com"})
    analyst = make_principal(rt, ["analyst"]).token
    headers = {
        "Authorization": f"Bearer {analyst}",
        "X-Purpose": "analytics",
        "X-Forwarded-For": "<script>",
        "X-Request-ID": "denied-1",
    }
    (answer,) = asyncio.run(_get_all([(f"/v1/profiles/{sid}?fields=email", headers)]))
    assert answer.status_code == 403, answer.text
    assert "<script>" not in answer.text
    (row,) = _audit(cdp_env)
    assert (row.outcome, row.request_id, row.client) == ("denied", "denied-1", INVALID_CLIENT)


def test_a_refused_entry_fails_alone(cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """The group committer checks an entry before it joins a batch: an entry the append refuses
    raises for its own caller, and the records queued with it are written."""
    monkeypatch.setattr(batching, "MAX_GATHER_SECONDS", 60.0)
    committer = GroupCommitter(cdp_env.runtime.data_engine)
    entries = [make_entry(request_id=f"r{n}") for n in range(10)]
    entries.insert(5, make_entry(request_id="bad", client="a b"))

    async def submit_all() -> list[object]:
        return await asyncio.gather(
            *(committer.submit_async(e, append) for e in entries), return_exceptions=True
        )

    outcomes = asyncio.run(submit_all())
    assert isinstance(outcomes[5], ValueError)
    del outcomes[5]
    assert [o.request_id for o in outcomes] == [f"r{n}" for n in range(10)]  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="client"):
        committer.submit(make_entry(request_id="bad", client="<x>"), append)
    assert [row.request_id for row in _audit(cdp_env)] == [f"r{n}" for n in range(10)]
    assert verify_chain(runtime=cdp_env.runtime).ok


@given(st.one_of(st.text(max_size=300), st.ip_addresses().map(str)))
def test_every_address_is_one_the_audit_accepts(host: str) -> None:
    """Whatever the peer address holds: an IP address is kept in its standard form (zone id
    dropped), anything else becomes ``invalid``, and the audit accepts the result."""
    kept = client_address(host)
    check_entry(make_entry(client=kept))
    if kept != INVALID_CLIENT:
        assert re.fullmatch(r"[0-9a-f.:]+", kept)
        assert kept == host.split("%")[0].lower() or ":" in host


def test_no_address_is_unknown() -> None:
    assert client_address(None) == "unknown"
    assert client_address("10.1.2.3") == "10.1.2.3"
    assert client_address("2001:DB8::0:1") == "2001:db8::1"


@given(st.text(max_size=300))
def test_every_cli_host_name_is_one_the_audit_accepts(hostname: str) -> None:
    """A host name with a non-ASCII letter (``isalnum`` kept it) made every CLI read fail."""
    from cdp.cli.access import cli_client

    kept = cli_client(hostname)
    check_entry(make_entry(client=kept))
    assert kept.startswith("cli:")
    assert cli_client("hôst-ä.example") == "cli:hst-.example"
