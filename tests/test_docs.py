"""The README stays true: every setting is documented in its configuration table."""

from __future__ import annotations

from pathlib import Path

from cdp.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    missing = [
        f"CDP_{name.upper()}"
        for name in Settings.model_fields
        if f"`CDP_{name.upper()}`" not in README
    ]
    assert missing == [], f"settings missing from README's configuration table: {missing}"


def test_every_setting_has_a_description() -> None:
    assert all(f.description for f in Settings.model_fields.values())


def _numeric_defaults_in_tables(text: str) -> list[tuple[str, str]]:
    """(variable, documented default) of every markdown table row naming `CDP_…` settings in a
    table with a "default" column; "a / b" rows name two settings and two defaults."""
    out: list[tuple[str, str]] = []
    column: int | None = None
    for line in text.splitlines():
        if not line.startswith("|"):
            column = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if column is None:
            column = cells.index("default") if "default" in cells else -1
            continue
        if column < 0 or len(cells) <= column or not cells[0].startswith("`CDP_"):
            continue
        names = [n.strip().strip("`") for n in cells[0].split("/")]
        values = [v.strip() for v in cells[column].split("/")]
        if len(names) == len(values):
            out.extend(zip(names, values, strict=True))
    return out


_UNITS = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


def _number(shown: str) -> float:
    """``1,000``, ``1_048_576``, ``1 MiB (at least 600 KiB)`` -> the number."""
    words = shown.strip("`").replace(",", "").replace("_", "").split()
    if len(words) >= 2 and words[1] in _UNITS:
        return float(words[0]) * _UNITS[words[1]]
    return float(words[0]) if words else float("nan")


def test_documented_numeric_defaults_match_the_settings() -> None:
    """A table said the per-token rate limit defaults to 50 / 100 while it is 500 / 1000."""
    root = Path(__file__).resolve().parents[1]
    docs = [README, *(p.read_text() for p in sorted((root / "docs").glob("*.md")))]
    fields = Settings.model_fields
    wrong = []
    checked = 0
    for text in docs:
        for name, shown in _numeric_defaults_in_tables(text):
            field = fields.get(name.removeprefix("CDP_").lower())
            if field is None or isinstance(field.default, bool):
                continue
            if not isinstance(field.default, int | float):
                continue
            checked += 1
            try:
                value = _number(shown)
            except ValueError:
                wrong.append((name, shown, field.default))
                continue
            if value != float(field.default):
                wrong.append((name, shown, field.default))
    assert checked > 5
    assert wrong == [], f"documented defaults that differ from the code: {wrong}"
