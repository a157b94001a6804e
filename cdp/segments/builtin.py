"""Segments every shop gets, installed on first use (and never overwritten once edited).

* ``win_back``: dormant customers who currently consent to email marketing.
* ``vip``: RFM champions in the top loyalty tier.
* ``new_customer_onboarding``: customers in the ``new`` lifecycle stage.
* ``high_value_at_risk``: the high value layer, slipping away (lifecycle at risk or dormant, or
  RFM at risk / can't lose, or flagged by the churn model).
"""

from __future__ import annotations

from typing import Any

from cdp.traits.config import TraitsConfig


def builtin_segments(cfg: TraitsConfig) -> dict[str, tuple[str, dict[str, Any]]]:
    """name -> (description, rule)."""
    return {
        "win_back": (
            "Dormant customers with email consent: win-back campaign.",
            {"all": [{"lifecycle_stage": ["dormant"]}, {"consent": "email_marketing"}]},
        ),
        "vip": (
            "RFM champions in the top loyalty tier.",
            {"all": [{"rfm_segment": ["champions"]}, {"tier": [cfg.loyalty.top_tier]}]},
        ),
        "new_customer_onboarding": (
            "Customers whose first order is recent: onboarding series.",
            {"lifecycle_stage": ["new"]},
        ),
        "high_value_at_risk": (
            "High-value customers who are slipping away.",
            {
                "all": [
                    {"value_layer": ["high"]},
                    {
                        "any": [
                            {"lifecycle_stage": ["at_risk", "dormant"]},
                            {"rfm_segment": ["at_risk", "cant_lose"]},
                            {"trait": {"name": "churn_flag", "op": "eq", "value": True}},
                        ]
                    },
                ]
            },
        ),
    }
