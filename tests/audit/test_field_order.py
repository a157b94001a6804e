"""The fields an audit record lists for a profile read come in the profile's declared order, so
the same read is recorded the same way by every process. Before, they came in a set's order,
which changes with each process's string hashing: reports listed one read's fields differently
from run to run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

CODE = """
import json
from cdp.profiles.views import ProfileView
view = ProfileView(subject_id="s", email="e", phone="p", city="c", country="DE",
                   first_name="f", signed_up_at=None, identity_kinds=["email"])
print(json.dumps(view.shown()))
"""
DECLARED = ["subject_id", "signed_up_at", "identity_kinds", "email", "phone", "first_name",
            "city", "country"]  # fmt: skip


def test_shown_fields_are_in_declared_order_whatever_the_hash_seed() -> None:
    for seed in ("1", "2", "3", "4", "5"):
        done = subprocess.run(
            [sys.executable, "-c", CODE],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(done.stdout) == DECLARED, seed
