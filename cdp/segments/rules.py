"""The segment rule language: JSON clauses parsed into pydantic models.

A rule is one clause; a clause is an object with exactly one key naming its kind:

* ``{"all": [clause, ...]}``, ``{"any": [clause, ...]}``, ``{"not": clause}``
* ``{"trait": {"name": "total_value", "op": "ge", "value": 100}}`` — ops eq, ne, lt, le, gt,
  ge, in, not_in (``value`` a list for in/not_in); see :data:`TRAITS` for the names
* ``{"orders_in_last_days": {"days": 30, "min": 1, "max": null}}`` — completed orders
* ``{"bought_category": {"category": "shoes", "within_days": 90}}`` (within_days optional)
* ``{"rfm_segment": ["champions", ...]}``, ``{"lifecycle_stage": [...]}``,
  ``{"value_layer": [...]}``, ``{"tier": [...]}``
* ``{"clv_quantile": {"min": 4, "max": 5}}`` — CLV quintile, 5 = highest
* ``{"consent": "email_marketing"}`` — the purpose's current consent state is granted

A malformed rule raises :class:`InvalidInputError` whose ``field`` is the path of the bad
clause (e.g. ``rule.all[1].trait.op``); the path keeps only the schema's names (a key the input
chose is ``(unknown field)``, :func:`cdp.validation.safe_location`) and no value is echoed.

Types are strict: a number is a JSON number (not ``"30"``), an integer is not ``true``. Numbers
are finite (no NaN or Infinity) and integers fit the databases' 64-bit integers, so that a stored
rule always compiles and means what it says.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from cdp.consent.purposes import PURPOSE_NAMES
from cdp.errors import InvalidInputError
from cdp.traits.lifecycle import LAYERS, STAGES
from cdp.traits.rfm import SEGMENTS
from cdp.validation import safe_location, text_problem

NUMERIC: Final = "number"
TEXT: Final = "text"
FLAG: Final = "flag"

TRAITS: Final[dict[str, str]] = {
    "orders": NUMERIC,
    "occasions": NUMERIC,
    "total_value": NUMERIC,
    "avg_order_value": NUMERIC,
    "repurchase_cycle_days": NUMERIC,
    "days_since_last_order": NUMERIC,
    "recency_score": NUMERIC,
    "frequency_score": NUMERIC,
    "monetary_score": NUMERIC,
    "expected_purchases": NUMERIC,
    "p_alive": NUMERIC,
    "churn_probability": NUMERIC,
    "clv": NUMERIC,
    "clv_quantile": NUMERIC,
    "rfm_segment": TEXT,
    "lifecycle_stage": TEXT,
    "value_layer": TEXT,
    "tier": TEXT,
    "churn_flag": FLAG,
}
MAX_DEPTH: Final = 12
MAX_LIST: Final = 200
MAX_CLAUSES: Final = 1000
"""Clauses in a whole rule, ``all``/``any``/``not`` included: the per-level and depth bounds
alone admit 200 x 200 leaves, a rule whose SQL took a minute of CPU to plan and run each time
the segment is computed (an export recomputes it)."""
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1
"""The 64-bit integer range of SQLite and PostgreSQL: a larger integer cannot be a parameter."""

Op = Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "not_in"]
Int64 = Annotated[int, Field(ge=INT_MIN, le=INT_MAX)]
Scalar = bool | Int64 | float | str
Count = Annotated[int, Field(ge=0, le=INT_MAX)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _scalar_problem(v: Any) -> str | None:
    """Why ``v`` cannot be a compared value (None when it can)."""
    if isinstance(v, float) and not math.isfinite(v):
        return "numbers must be finite (no NaN or Infinity)"
    if isinstance(v, int) and not isinstance(v, bool) and not INT_MIN <= v <= INT_MAX:
        return "integers must be between -2^63 and 2^63-1"
    if not isinstance(v, bool | int | float | str):
        return "a value is a number, text, true or false (a list of them for in/not_in)"
    if isinstance(v, str):
        return text_problem(v)
    return None


class TraitCmp(_Model):
    name: str
    op: Op
    value: Scalar | list[Scalar]

    @field_validator("value", mode="before")
    @classmethod
    def _plain_values(cls, value: Any) -> Any:
        """One clear reason for a bad value (the union's members would each give theirs)."""
        for v in value if isinstance(value, list) else [value]:
            problem = _scalar_problem(v)
            if problem is not None:
                raise PydanticCustomError("rule_value", problem)
        return value


class OrdersInLast(_Model):
    days: int = Field(ge=1, le=36500)
    min: Count = 1
    max: Count | None = None


class BoughtCategory(_Model):
    category: str = Field(min_length=1, max_length=128)
    within_days: int | None = Field(None, ge=1, le=36500)

    @field_validator("category")
    @classmethod
    def _storable(cls, value: str) -> str:
        problem = text_problem(value)
        if problem is not None:
            raise PydanticCustomError("rule_value", problem)
        return value


class ClvQuantile(_Model):
    min: int = Field(1, ge=1, le=5)
    max: int = Field(5, ge=1, le=5)


class InList(_Model):
    kind: Literal["rfm_segment", "lifecycle_stage", "value_layer", "tier"]
    values: tuple[str, ...]


class Consent(_Model):
    purpose: str


class AllOf(_Model):
    clauses: tuple[Clause, ...]


class AnyOf(_Model):
    clauses: tuple[Clause, ...]


class Not(_Model):
    clause: Clause


Clause = (
    AllOf | AnyOf | Not | TraitCmp | OrdersInLast | BoughtCategory | ClvQuantile | InList | Consent
)
for _m in (AllOf, AnyOf, Not):
    _m.model_rebuild()

_ENUMS: Final[dict[str, tuple[str, ...]]] = {
    "rfm_segment": SEGMENTS,
    "lifecycle_stage": STAGES,
    "value_layer": LAYERS,
}


def _bad(path: str, why: str) -> InvalidInputError:
    return InvalidInputError(f"invalid rule clause at {path}: {why}", field=path)


def _validate(model: type[_Model], value: Any, path: str) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = safe_location(err["loc"], err["type"])
        where = f"{path}.{loc}" if loc else path
        raise _bad(where, err["msg"]) from None


def _check_trait(cmp: TraitCmp, path: str, tiers: tuple[str, ...]) -> None:
    kind = TRAITS.get(cmp.name)
    if kind is None:
        raise _bad(f"{path}.name", "unknown trait")
    listed = cmp.op in ("in", "not_in")
    if listed != isinstance(cmp.value, list):
        raise _bad(f"{path}.value", "in/not_in take a list, other operators one value")
    values = cmp.value if isinstance(cmp.value, list) else [cmp.value]
    if listed and not 1 <= len(values) <= MAX_LIST:
        raise _bad(f"{path}.value", f"a list needs 1 to {MAX_LIST} values")
    for v in values:
        if kind == NUMERIC and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise _bad(f"{path}.value", "this trait compares with numbers")
        if kind == TEXT and not isinstance(v, str):
            raise _bad(f"{path}.value", "this trait compares with text")
        if kind == FLAG and not isinstance(v, bool):
            raise _bad(f"{path}.value", "this trait compares with true or false")
    if kind != NUMERIC and cmp.op in ("lt", "le", "gt", "ge"):
        raise _bad(f"{path}.op", "ordering operators need a numeric trait")
    allowed = tiers if cmp.name == "tier" else _ENUMS.get(cmp.name)
    if allowed is not None and any(v not in allowed for v in values):
        raise _bad(f"{path}.value", f"allowed values: {', '.join(allowed)}")


def _clauses(data: Any, limit: int) -> int:
    """How many clauses the raw rule holds (every object counts; the walk stops once past
    ``limit``, and at the nesting bound, which :func:`parse_rule` then reports)."""
    count, stack = 0, [(data, 0)]
    while stack and count <= limit:
        item, depth = stack.pop()
        if not isinstance(item, dict) or depth > MAX_DEPTH:
            continue
        count += 1
        for key in ("all", "any", "not"):
            inner = item.get(key)
            if isinstance(inner, list):
                stack.extend((v, depth + 1) for v in inner[: MAX_LIST + 1])
            elif inner is not None:
                stack.append((inner, depth + 1))
    return count


def parse_rule(data: Any, *, tiers: tuple[str, ...], path: str = "rule", depth: int = 0) -> Clause:
    """Parse and check a rule (JSON-decoded); InvalidInputError names the bad clause."""
    if depth == 0 and _clauses(data, MAX_CLAUSES) > MAX_CLAUSES:
        raise _bad(path, f"a rule holds at most {MAX_CLAUSES} clauses")
    if depth > MAX_DEPTH:
        raise _bad(path, f"rules nest at most {MAX_DEPTH} levels")
    if not isinstance(data, dict) or len(data) != 1:
        raise _bad(path, "a clause is an object with exactly one key")
    ((key, value),) = data.items()
    here = (
        f"{path}.{key}" if isinstance(key, str) and key.isidentifier() and len(key) < 40 else path
    )
    if key in ("all", "any"):
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_LIST:
            raise _bad(here, f"needs a list of 1 to {MAX_LIST} clauses")
        parts = tuple(
            parse_rule(v, tiers=tiers, path=f"{here}[{i}]", depth=depth + 1)
            for i, v in enumerate(value)
        )
        return AllOf(clauses=parts) if key == "all" else AnyOf(clauses=parts)
    if key == "not":
        return Not(clause=parse_rule(value, tiers=tiers, path=here, depth=depth + 1))
    if key == "trait":
        cmp = _validate(TraitCmp, value, here)
        _check_trait(cmp, here, tiers)
        return cmp  # type: ignore[no-any-return]
    if key == "orders_in_last_days":
        o: OrdersInLast = _validate(OrdersInLast, value, here)
        if o.max is not None and o.max < o.min:
            raise _bad(f"{here}.max", "max is below min")
        return o
    if key == "bought_category":
        return _validate(BoughtCategory, value, here)  # type: ignore[no-any-return]
    if key == "clv_quantile":
        q: ClvQuantile = _validate(ClvQuantile, value, here)
        if q.max < q.min:
            raise _bad(f"{here}.max", "max is below min")
        return q
    if key in ("rfm_segment", "lifecycle_stage", "value_layer", "tier"):
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_LIST:
            raise _bad(here, "needs a non-empty list of names")
        allowed = tiers if key == "tier" else _ENUMS[key]
        if any(not isinstance(v, str) or v not in allowed for v in value):
            raise _bad(here, f"allowed values: {', '.join(allowed)}")
        return InList(kind=key, values=tuple(value))
    if key == "consent":
        if not isinstance(value, str) or value not in PURPOSE_NAMES:
            raise _bad(here, f"a purpose name: {', '.join(PURPOSE_NAMES)}")
        return Consent(purpose=value)
    raise _bad(path, "unknown clause kind")


def dump_rule(clause: Clause) -> dict[str, Any]:
    """The canonical JSON form of a parsed rule (what is stored and versioned)."""
    if isinstance(clause, AllOf | AnyOf):
        key = "all" if isinstance(clause, AllOf) else "any"
        return {key: [dump_rule(c) for c in clause.clauses]}
    if isinstance(clause, Not):
        return {"not": dump_rule(clause.clause)}
    if isinstance(clause, TraitCmp):
        return {"trait": clause.model_dump()}
    if isinstance(clause, OrdersInLast):
        return {"orders_in_last_days": clause.model_dump()}
    if isinstance(clause, BoughtCategory):
        return {"bought_category": clause.model_dump()}
    if isinstance(clause, ClvQuantile):
        return {"clv_quantile": clause.model_dump()}
    if isinstance(clause, InList):
        return {clause.kind: list(clause.values)}
    return {"consent": clause.purpose}


def canonical_json(clause: Clause) -> str:
    return json.dumps(dump_rule(clause), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _names(values: tuple[str, ...] | None) -> dict[str, Any]:
    items: dict[str, Any] = {"type": "string"} if values is None else {"enum": list(values)}
    return {"type": "array", "minItems": 1, "maxItems": MAX_LIST, "items": items}


_CLAUSE_SHAPE: Final[dict[str, Any]] = {"type": "object", "minProperties": 1, "maxProperties": 1}
RULE_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": 1,
    "additionalProperties": False,
    "description": (
        "One clause: an object with exactly one key naming its kind (docs/segments.md); an empty "
        f"or unknown clause is refused with 422 naming its path. Lists hold 1 to {MAX_LIST} "
        f"items; rules nest at most {MAX_DEPTH} levels and hold at most {MAX_CLAUSES} clauses."
    ),
    "properties": {
        "all": {**_names(None), "items": _CLAUSE_SHAPE},
        "any": {**_names(None), "items": _CLAUSE_SHAPE},
        "not": _CLAUSE_SHAPE,
        "trait": {"type": "object", "required": ["name", "op", "value"]},
        "orders_in_last_days": {"type": "object", "required": ["days"]},
        "bought_category": {"type": "object", "required": ["category"]},
        "clv_quantile": {"type": "object"},
        "rfm_segment": _names(_ENUMS["rfm_segment"]),
        "lifecycle_stage": _names(_ENUMS["lifecycle_stage"]),
        "value_layer": _names(_ENUMS["value_layer"]),
        "tier": _names(None),
        "consent": {"type": "string", "enum": list(PURPOSE_NAMES)},
    },
}
"""The rule's JSON Schema in the OpenAPI document: what :func:`parse_rule` refuses, as far as a
schema without references says it (inner clauses are checked for their shape only)."""
