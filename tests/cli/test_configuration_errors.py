"""A setting or database URL cdp cannot use is one line on stderr, exit status 2: no traceback
(structlog's default would print one with every frame's local variables) and no value given
(a database URL can carry a password)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.crash.helpers import CLI

SECRET = "s3kr1t-pw"


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"CDP_LOG_LEVEL": "loud"}, "CDP_LOG_LEVEL"),
        ({"CDP_FX_RATES": "garbage"}, "CDP_FX_RATES"),
        ({"CDP_AUTH_CACHE_SECONDS": "-5"}, "CDP_AUTH_CACHE_SECONDS"),
        ({"CDP_TRAITS_INTERVAL": "garbage"}, "CDP_TRAITS_INTERVAL: Value error, must look like"),
        ({"CDP_TRAITS_INTERVAL": "10s"}, "CDP_TRAITS_INTERVAL: Value error, must be at least"),
        (
            {"CDP_DATABASE_URL": f"postgresql+psycopg://u:{SECRET}@h:notaport/db"},
            "cannot be parsed",
        ),
        ({"CDP_DATABASE_URL": f"nosuch://u:{SECRET}@h/db"}, "no database driver for 'nosuch'"),
        # dialects SQLAlchemy knows, whose drivers cdp does not install
        (
            {"CDP_DATABASE_URL": f"postgresql+psycopg2://u:{SECRET}@h/db"},
            "no database driver for 'postgresql+psycopg2': cdp runs on sqlite and "
            "postgresql+psycopg",
        ),
        (
            {"CDP_KEYSTORE_URL": f"postgresql+asyncpg://u:{SECRET}@h/keys"},
            "no database driver for 'postgresql+asyncpg'",
        ),
        ({"CDP_DATABASE_URL": f"mysql://u:{SECRET}@h/db"}, "no database driver for 'mysql'"),
    ],
)
def test_a_setting_cdp_cannot_use_is_one_line(
    tmp_path: Path, env: dict[str, str], says: str
) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CDP_")}
    base.update(CDP_HOME=str(tmp_path), COLUMNS="200")
    subprocess.run([*CLI, "init"], env=base, capture_output=True, timeout=120, check=True)
    done = subprocess.run(
        [*CLI, "keys", "status"],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and "(configuration_error)" in lines[0] and says in lines[0], output
    assert SECRET not in output and "garbage" not in output and "loud" not in output
