"""The command line: version, init, keys — through the real Typer app and the real stores."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from cdp import __version__
from cdp.cli import COMMANDS, app
from tests.conftest import CdpEnv
from tests.factories import make_subject, read_pii

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.stdout


def test_every_command_has_help() -> None:
    for args in (
        ["--help"],
        ["init", "--help"],
        ["keys", "--help"],
        ["keys", "rotate", "--help"],
        ["keys", "rewrap", "--help"],
        ["keys", "status", "--help"],
        ["keys", "retire", "--help"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, args
        assert "Usage" in result.stdout


def test_commands_names_the_module_of_every_top_level_command() -> None:
    """``cdp X`` imports only ``COMMANDS[X]``: the table must match what the modules register."""
    registered: dict[str, str] = {}
    for command in app.registered_commands:
        assert command.callback is not None
        name = command.name or command.callback.__name__.lower().replace("_", "-")
        registered[name] = command.callback.__module__
    for group in app.registered_groups:
        sub = group.typer_instance
        assert group.name is not None and sub is not None
        registered[group.name] = sub.registered_commands[0].callback.__module__  # type: ignore[union-attr]
    assert registered == {name: f"cdp.cli.{module}" for name, module in COMMANDS.items()}


def test_a_command_imports_only_its_own_module() -> None:
    """Starting ``cdp keys`` does not import the other groups (nor what they need: scipy for the
    CLV models, the API); ``cdp --help`` lists every group."""
    probe = (
        "import sys\n"
        "from cdp.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('MODULES', sorted(m for m in sys.modules if m.startswith('cdp.cli.')),"
        " 'scipy' in sys.modules, 'fastapi' in sys.modules)"
    )

    def run(*args: str) -> tuple[str, str]:
        proc = subprocess.run(
            [sys.executable, "-c", probe, *args], capture_output=True, text=True, check=True
        )
        return proc.stdout, proc.stdout.split("MODULES", 1)[1].strip()

    out, loaded = run("keys", "--help")
    assert "rotate" in out
    assert loaded == "['cdp.cli.keys', 'cdp.cli.root'] False False"
    out, loaded = run("--help")
    assert all(name in out for name in COMMANDS)
    assert all(f"cdp.cli.{module}" in loaded for module in set(COMMANDS.values()))


def test_init_twice_then_keys_lifecycle(cdp_env: CdpEnv) -> None:
    assert runner.invoke(app, ["init"]).exit_code == 0
    second = runner.invoke(app, ["init"])
    assert second.exit_code == 0 and "already present" in second.stdout
    sid = make_subject(cdp_env.runtime, {"email": "a@b.cn"})
    assert runner.invoke(app, ["keys", "rotate"]).exit_code == 0
    refused = runner.invoke(app, ["keys", "retire", "1"])
    assert refused.exit_code != 0 and "rewrap" in str(refused.exception)
    out = runner.invoke(app, ["keys", "rewrap"])
    assert out.exit_code == 0 and "re-wrapped 1" in out.stdout
    assert runner.invoke(app, ["keys", "retire", "1"]).exit_code == 0
    status = runner.invoke(app, ["keys", "status"])
    assert "retired" in status.stdout and "current" in status.stdout
    rt = cdp_env.reopen()
    assert rt.vault.decrypt(sid, "email", read_pii(rt, sid)["email"]) == "a@b.cn"


def test_domain_errors_exit_2_with_a_message_and_no_traceback(cdp_env: CdpEnv) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from cdp.cli import main; main()", "keys", "retire", "7"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "key_error" in proc.stderr and "Traceback" not in proc.stderr
