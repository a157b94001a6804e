"""Access control: who may do what to which data, and for which purpose.

``PolicyEngine`` answers (roles, resource, action, purpose) from the Casbin files in ``policies/``;
``categories`` names the data categories, their fields and the purposes of use.
"""

from cdp.access.categories import (
    CATEGORIES,
    CONSENT_PURPOSES,
    FIELD_CATEGORY,
    PII_CATEGORIES,
    PII_FIELDS,
    PURPOSE_DESCRIPTIONS,
    PURPOSES,
    Category,
    Purpose,
    category_of,
    fields_in,
    resource_for,
)
from cdp.access.policy import (
    Decision,
    PolicyEngine,
    PolicyError,
    Rule,
    default_policy_dir,
    parse_policy,
    policy_version,
)
from cdp.access.vocabulary import (
    ACTIONS,
    ANY_PURPOSE,
    CATEGORY_RESOURCES,
    RESOURCES,
    Action,
    Effect,
    Resource,
)

__all__ = [
    "ACTIONS",
    "ANY_PURPOSE",
    "CATEGORIES",
    "CATEGORY_RESOURCES",
    "CONSENT_PURPOSES",
    "FIELD_CATEGORY",
    "PII_CATEGORIES",
    "PII_FIELDS",
    "PURPOSES",
    "PURPOSE_DESCRIPTIONS",
    "RESOURCES",
    "Action",
    "Category",
    "Decision",
    "Effect",
    "PolicyEngine",
    "PolicyError",
    "Purpose",
    "Resource",
    "Rule",
    "category_of",
    "default_policy_dir",
    "fields_in",
    "parse_policy",
    "policy_version",
    "resource_for",
]
