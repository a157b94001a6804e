"""What a Segment ``alias``'s ``previousId`` names: the person's previous ``userId`` or their
``anonymousId`` (Segment's spec allows both, and the message does not say which).

It is read as a **customer id** when a stored subject holds it as one (under any pseudonym-key
version), when it is an erased customer id (so that the alias is refused as ``erased`` and links
nothing to the erased person), or when a message of the same request carries it as ``userId``;
otherwise as an **anonymous id**. A customer id wins when the same text is both. Looked up inside
the request's transaction, so a concurrent identify is seen or not as a whole.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from cdp.crypto.normalize import IdentityKind, normalize_opaque_id
from cdp.db.models import Identity, Tombstone
from cdp.ingest.batch import BatchContext, claim_of
from cdp.ingest.customer_record import CustomerRecord
from cdp.ingest.customers import record_claim
from cdp.profiles.resolve import Claim, lookup

_CUSTOMER = IdentityKind.CUSTOMER_ID


def _customer_id(value: str) -> str:
    return normalize_opaque_id(value, kind="customer_id")


def previous_user_ids(
    ctx: BatchContext, previous: Collection[str], request_user_ids: Collection[str]
) -> set[str]:
    """The ``previousId`` values (as given) to read as customer ids."""
    tokenizer = ctx.runtime.tokenizer
    known = {_customer_id(u) for u in request_user_ids}
    out = {p for p in previous if _customer_id(p) in known}
    tokens: dict[str, list[str]] = {
        p: tokenizer.values_of_normalized(_CUSTOMER, _customer_id(p))
        for p in previous
        if p not in out
    }
    if not tokens:
        return out
    wanted = {_CUSTOMER.value: {t for toks in tokens.values() for t in toks}}
    found = lookup(ctx.conn, Identity, wanted).keys() | lookup(ctx.conn, Tombstone, wanted).keys()
    out.update(p for p, toks in tokens.items() if any((_CUSTOMER.value, t) in found for t in toks))
    return out


def customer_claims(
    ctx: BatchContext,
    items: list[tuple[int, CustomerRecord]],
    aliases: Mapping[int, str],
    request_user_ids: Collection[str],
) -> list[Claim]:
    """The identities each customer record claims: its own fields, except that an alias (its
    record holds ``previousId`` as ``anonymous_id``) whose ``previousId`` is a customer id claims
    it as one."""
    previous = {aliases[i] for i, _ in items if i in aliases}
    as_user = previous_user_ids(ctx, previous, request_user_ids) if previous else set()
    claims: list[Claim] = []
    for i, r in items:
        if i in aliases and aliases[i] in as_user:
            claims.append(claim_of(customer_id=r.customer_id) + claim_of(customer_id=aliases[i]))
        else:
            claims.append(record_claim(r))
    return claims
