"""``cdp serve`` writes no request line of its own: uvicorn's access log prints the query string
(a lookup's email or phone) outside the redacting log pipeline."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.audit.factories import make_principal
from tests.conftest import CdpEnv
from tests.crash.helpers import start_server
from tests.factories import make_subject

EMAIL = "serve.log.person@example.com"


def test_a_lookup_through_cdp_serve_leaves_no_email_in_its_output(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt, {"email": EMAIL}, identities={"email": EMAIL})
    token = make_principal(rt, ["support"]).token
    log = tmp_path / "server.log"
    proc, base = start_server(log)
    try:
        answer = httpx.get(
            f"{base}/v1/profiles",
            params={"email": EMAIL},
            headers={"Authorization": f"Bearer {token}", "X-Purpose": "support"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        assert sid in answer.text
    finally:
        proc.terminate()
        proc.wait(30)
    output = log.read_text()
    assert '"route": "/v1/profiles"' in output  # the app's own request line, by route template
    assert EMAIL not in output
    assert "serve.log.person" not in output
