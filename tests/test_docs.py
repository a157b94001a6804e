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
