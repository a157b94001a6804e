"""The command line: traits compute, metrics with a chart, clv fit/predict, segments."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cdp.cli import app
from tests.conftest import CdpEnv
from tests.traits.factories import generate_shop

runner = CliRunner()


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_end_to_end(cdp_env: CdpEnv, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with cdp_env.runtime.data_engine.begin() as conn:
        generate_shop(conn, customers=400, end=now - timedelta(days=1), seed=5)
    out = _ok(["traits", "compute"])
    assert "traits of 400 subjects computed" in out and "CLV predictions" in out
    chart = tmp_path / "m.html"
    out = _ok(["metrics", "--chart", str(chart)])
    assert "repurchase rate" in out and chart.read_text().count("<svg") == 2
    fit = json.loads(_ok(["clv", "fit", "--json"]))
    assert fit["summary_source"] == "facts"  # today's traits run covers yesterday
    fresh = json.loads(_ok(["clv", "fit", "--json", "--from-orders"]))
    assert fresh["summary_source"] == "orders"
    assert fresh["bg_nbd"]["params"] == pytest.approx(fit["bg_nbd"]["params"], rel=1e-9)
    assert fresh["bg_nbd"]["n_customers"] == fit["bg_nbd"]["n_customers"]
    assert set(fit["bg_nbd"]["params"]) == {"r", "alpha", "a", "b"}
    assert fit["bg_nbd"]["n_customers"] > 0 and "log_likelihood" in fit["bg_nbd"]
    assert set(fit["gamma_gamma"]["params"]) == {"p", "q", "gamma"}
    text = _ok(["clv", "fit", "--calibration-end", (now - timedelta(days=60)).strftime("%Y-%m-%d")])
    assert "r=" in text and "gamma=" in text and "log-likelihood" in text
    assert "summaries from every completed order" in text  # not yesterday: from the orders
    assert "buyers over 52 weeks" in _ok(["clv", "predict", "--horizon", "52"])
    rule = json.dumps({"rfm_segment": ["champions"]})
    assert "created at version 1" in _ok(["segments", "create", "best", "--rule", rule])
    bad = runner.invoke(app, ["segments", "create", "worse", "--rule", '{"tier": ["gold", 1]}'])
    assert bad.exit_code != 0
    assert "win_back" in _ok(["segments", "list"])
    assert "members" in _ok(["segments", "compute", "--all"])
    assert json.loads(_ok(["segments", "show", "best"]))["version"] == 1
    denied = runner.invoke(app, ["segments", "members", "best"])
    assert denied.exit_code != 0  # member ids need a principal's token
