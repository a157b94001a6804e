"""CI gate over pip-audit: fail on any known vulnerability that has a fixed release.

Policy (docs/security.md, "Supply chain"):
- pip-audit asks the PyPI vulnerability service (the PyPA advisory database, OSV format) about
  every package installed in this environment (cdp itself, editable, is skipped). That database
  carries no severity scores, so "fail on high severity" cannot be applied literally; instead the
  gate fails on every known vulnerability that has a fix version: all of them are actionable by
  upgrading, whatever their severity. Vulnerabilities without any fixed release are printed as
  warnings (nothing to upgrade to yet); they are reviewed by hand in the security doc.
- A vulnerability accepted after review is listed in ACCEPTED with its reason.
- If the service cannot be reached the gate fails with a clear message (an audit that did not
  run must not look like a pass). Set CDP_CI_SKIP_PIP_AUDIT=1 to skip it explicitly, offline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ACCEPTED: dict[str, str] = {
    # "GHSA-xxxx-xxxx-xxxx": "why it does not apply to cdp, who reviewed it, until when",
}


def main() -> int:
    if os.environ.get("CDP_CI_SKIP_PIP_AUDIT") == "1":
        print("pip-audit: SKIPPED on request (CDP_CI_SKIP_PIP_AUDIT=1)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "audit.json"
        cmd = [
            sys.executable, "-m", "pip_audit", "--skip-editable", "--progress-spinner", "off",
            "--format", "json", "--output", str(report),
        ]  # fmt: skip
        for attempt in (1, 2):
            proc = subprocess.run(  # noqa: S603 (fixed argv, no shell)
                cmd, capture_output=True, text=True, timeout=600, check=False
            )
            if report.exists() and report.stat().st_size:
                break
            print(f"pip-audit: attempt {attempt} produced no report", file=sys.stderr)
        else:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            print("pip-audit: FAILED - the vulnerability service could not be queried:")
            print("\n".join("  " + line for line in tail))
            print("  (offline? set CDP_CI_SKIP_PIP_AUDIT=1 to skip explicitly)")
            return 1
        data = json.loads(report.read_text())
    fixable, unfixed = [], []
    for dep in data.get("dependencies", []):
        for vuln in dep.get("vulns", []):
            if vuln["id"] in ACCEPTED:
                continue
            line = f"{dep['name']} {dep['version']}: {vuln['id']}"
            if vuln.get("fix_versions"):
                fixable.append(f"{line} (fixed in {', '.join(vuln['fix_versions'])})")
            else:
                unfixed.append(f"{line} (no fixed release yet)")
    for line in unfixed:
        print(f"pip-audit: WARNING {line}")
    for line in fixable:
        print(f"pip-audit: VULNERABLE {line}")
    audited = len(data.get("dependencies", []))
    if fixable:
        print(f"pip-audit: FAILED - {len(fixable)} fixable vulnerabilities; upgrade them")
        return 1
    print(f"pip-audit: ok ({audited} packages, {len(unfixed)} without a fix)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
