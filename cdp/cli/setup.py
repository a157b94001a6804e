"""``cdp init``."""

from __future__ import annotations

from cdp.bootstrap import initialize
from cdp.cli.root import app, console, styled
from cdp.runtime import reset_runtime
from cdp.settings import get_settings


@app.command()
def init() -> None:
    """Create or upgrade the databases and create the key file (safe to run twice)."""
    report = initialize(get_settings())
    reset_runtime()
    if report.key_file_created:
        console.print(
            styled(("created", "green"), f" key file {report.key_file} (mode 0600) — back it up")
        )
    else:
        console.print(f"key file {report.key_file} already present")
    console.print(
        f"data database ({report.data_backend}) at revision {report.data_revision}; "
        f"key store ({report.keystore_backend}) at revision {report.keystore_revision}"
    )
