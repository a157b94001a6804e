"""Consent history of a chunk of customers, as an append-only ledger export.

Per customer, in time order:

* the cookie banner on the first visit (a few minutes before signing up) decides analytics,
  personalization and ad_audiences: accept all, reject all (written as ``withdrawn``), a custom
  choice, or no answer (no row);
* the sign-up form opts in to email (~60%) and SMS (market-dependent) marketing; customers
  migrated from the old CRM have these rows with mechanism ``import`` instead;
* installing the app asks for push notifications;
* later changes: unsubscribes, STOP replies, late opt-ins at checkout, cookie-setting changes,
  and Global Privacy Control signals that withdraw ad_audiences (~3% of customers).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
from numpy.typing import NDArray

from cdp.demo import fastfmt as ff
from cdp.demo.chunkids import ChunkIds
from cdp.demo.locales import MARKETS
from cdp.demo.population import Population
from cdp.demo.timeline import DAY, Timeline

I64 = NDArray[np.int64]
Bools = NDArray[np.bool_]

PURPOSES = (
    "email_marketing", "sms_marketing", "push_marketing", "personalization", "analytics",
    "ad_audiences",
)  # fmt: skip
STATUSES = ("granted", "withdrawn")
MECHANISMS = ("checkbox", "banner", "import", "api", "gpc")
SOURCES = (
    "signup_form", "cookie_banner", "crm_import", "mobile_app", "unsubscribe_link",
    "preference_center", "checkout", "sms_reply", "privacy_settings", "browser_signal",
)  # fmt: skip
EMAIL, SMS, PUSH, PERSONALIZATION, ANALYTICS, ADS = range(6)
CHECKBOX, BANNER, IMPORT, API, GPC = range(5)
(SIGNUP_FORM, COOKIE_BANNER, CRM_IMPORT, MOBILE_APP, UNSUBSCRIBE, PREFERENCES, CHECKOUT,
 SMS_REPLY, PRIVACY_SETTINGS, BROWSER_SIGNAL) = range(10)  # fmt: skip

GPC_RATE = 0.03


@dataclass(frozen=True, slots=True)
class ChunkConsents:
    """Rendered rows plus each customer's email-marketing consent window."""

    data: bytes
    """The rendered CSV rows."""
    rows: int
    email_from: I64
    """Seconds when email marketing was granted, -1 if it never was."""
    email_until: I64
    """Seconds when it was withdrawn, or the end of the period."""


class _Ledger:
    """Columns of consent rows being collected for a chunk."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.parts: list[tuple[I64, I64, int, int, int, int]] = []

    def add(
        self, who: I64, at: I64, purpose: int, status: int, mechanism: int, source: int
    ) -> None:
        keep = at < self.timeline.end
        self.parts.append((who[keep], at[keep], purpose, status, mechanism, source))

    def add_mixed(
        self, who: I64, at: I64, purpose: int, granted: Bools, mechanism: I64, source: I64
    ) -> None:
        """Rows whose status, mechanism and source vary per row."""
        for status, chosen in ((0, granted), (1, ~granted)):
            for mech in np.unique(mechanism[chosen]).tolist():
                for src in np.unique(source[chosen & (mechanism == mech)]).tolist():
                    mask = chosen & (mechanism == mech) & (source == src)
                    self.add(who[mask], at[mask], purpose, status, mech, src)


def make_consents(
    canvas: ff.Canvas, rng: np.random.Generator, timeline: Timeline, pop: Population, ids: ChunkIds
) -> ChunkConsents:
    """Generate and render the consent rows of the customers in `pop` (a chunk)."""
    n = pop.size
    everyone = np.arange(n)
    signup = pop.signup
    ledger = _Ledger(timeline)

    # Cookie banner on the first visit.
    visit = np.maximum(signup - rng.exponential(300.0, n).astype(np.int64), timeline.start)
    answer = rng.choice(4, size=n, p=[0.55, 0.20, 0.15, 0.10])  # all, none, custom, ignored
    for purpose, custom_rate in ((ANALYTICS, 0.7), (PERSONALIZATION, 0.5), (ADS, 0.25)):
        custom = rng.random(n) < custom_rate
        granted = (answer == 0) | ((answer == 2) & custom)
        answered = answer != 3
        decided = everyone[answered]
        ledger.add_mixed(
            decided, visit[answered], purpose, granted[answered],
            np.full(len(decided), BANNER), np.full(len(decided), COOKIE_BANNER),
        )  # fmt: skip
        later = answered & (rng.random(n) < 0.08)
        flip_at = visit + _days(rng, 200.0, n)
        ledger.add_mixed(
            everyone[later], flip_at[later], purpose, ~granted[later],
            np.full(int(later.sum()), BANNER), np.full(int(later.sum()), PRIVACY_SETTINGS),
        )  # fmt: skip

    # Sign-up form (or the CRM migration) for email and SMS.
    imported = rng.random(n) < 0.08
    mechanism = np.where(imported, IMPORT, CHECKBOX)
    source = np.where(imported, CRM_IMPORT, SIGNUP_FORM)
    email = rng.random(n) < 0.6
    ledger.add_mixed(everyone[email], signup[email], EMAIL, np.ones(int(email.sum()), bool),
                     mechanism[email], source[email])  # fmt: skip
    email_from = np.where(email, signup, -1)
    email_until = np.full(n, timeline.end, dtype=np.int64)
    unsubscribe = email & (rng.random(n) < 0.15)
    unsub_at = signup + _days(rng, 180.0, n)
    via_link = rng.random(n) < 0.7
    ledger.add_mixed(
        everyone[unsubscribe], unsub_at[unsubscribe], EMAIL,
        np.zeros(int(unsubscribe.sum()), bool),
        np.where(via_link, API, CHECKBOX)[unsubscribe],
        np.where(via_link, UNSUBSCRIBE, PREFERENCES)[unsubscribe],
    )  # fmt: skip
    email_until = np.where(unsubscribe, np.minimum(unsub_at, timeline.end), email_until)
    late = ~email & (rng.random(n) < 0.10)
    late_at = signup + _days(rng, 120.0, n)
    ledger.add(everyone[late], late_at[late], EMAIL, 0, CHECKBOX, CHECKOUT)
    email_from = np.where(late & (late_at < timeline.end), late_at, email_from)

    sms_rate = np.array([m.sms_consent_rate for m in MARKETS])[pop.market]
    sms = rng.random(n) < sms_rate
    ledger.add_mixed(everyone[sms], signup[sms], SMS, np.ones(int(sms.sum()), bool),
                     mechanism[sms], source[sms])  # fmt: skip
    stop = sms & (rng.random(n) < 0.15)
    ledger.add(everyone[stop], (signup + _days(rng, 150.0, n))[stop], SMS, 1, API, SMS_REPLY)

    # The mobile app asks for push notifications when installed.
    install = signup + _days(rng, 30.0, n)
    push = (rng.random(n) < 0.3) & (rng.random(n) < 0.75)
    ledger.add(everyone[push], install[push], PUSH, 0, API, MOBILE_APP)
    mute = push & (rng.random(n) < 0.2)
    ledger.add(everyone[mute], (install + _days(rng, 90.0, n))[mute], PUSH, 1, API, MOBILE_APP)

    # Global Privacy Control: the browser signals an opt-out of ad audiences.
    weight = np.array([m.gpc_weight for m in MARKETS])
    share = np.array([m.share for m in MARKETS])
    gpc_prob = GPC_RATE * weight / float((weight * share).sum() / share.sum())
    gpc = rng.random(n) < gpc_prob[pop.market]
    ledger.add(everyone[gpc], (visit + _days(rng, 45.0, n))[gpc], ADS, 1, GPC, BROWSER_SIGNAL)

    data, rows = _render(canvas, timeline, ledger, ids)
    return ChunkConsents(data, rows, email_from, email_until)


def _days(rng: np.random.Generator, mean_days: float, n: int) -> I64:
    """Exponential waiting times in whole seconds (at least a minute)."""
    result: I64 = 60 + rng.exponential(mean_days * DAY, n).astype(np.int64)
    return result


def _render(
    canvas: ff.Canvas, timeline: Timeline, ledger: _Ledger, ids: ChunkIds
) -> tuple[bytes, int]:
    """CSV rows sorted by customer, then time, then the order they were added in."""
    if not ledger.parts:
        return b"", 0
    who = np.concatenate([p[0] for p in ledger.parts])
    at = np.concatenate([p[1] for p in ledger.parts])
    part = np.repeat(np.arange(len(ledger.parts)), [len(p[0]) for p in ledger.parts])
    order = np.lexsort((part, at, who))
    who, at, part = who[order], at[order], part[order]
    middle = ff.table([f",{PURPOSES[p]},{STATUSES[s]}," for _, _, p, s, _, _ in ledger.parts])
    source = ff.table([f",{SOURCES[src]}," for *_, src in ledger.parts])
    mechanism = ff.table([f",{MECHANISMS[m]}\n" for _, _, _, _, m, _ in ledger.parts])
    labels, starts = notices(timeline)
    notice = np.searchsorted(starts, at, side="right") - 1
    blocks: list[ff.Block] = [
        (ids.id_rows, who), (middle, part), ff.timestamps(at), (source, part),
        (ff.table(labels), notice), (mechanism, part),
    ]  # fmt: skip
    return canvas.render(len(who), blocks), len(who)


def notices(timeline: Timeline) -> tuple[list[str], I64]:
    """Privacy notice versions and when each took effect: every 15 January and 15 July."""
    anchors = [
        (date(y, m, 15), f"{y}-{m:02d}")
        for y in range(timeline.start_day.year - 1, timeline.end_day.year + 1)
        for m in (1, 7)
    ]
    starts = np.array([(a - date(1970, 1, 1)).days * DAY for a, _ in anchors], dtype=np.int64)
    return [label for _, label in anchors], starts
