"""The ``eventbus`` command: ``plugins`` (and ``--json``) and argument parsing.

``main()`` is called in-process (fast); one test runs the installed console
script. The environment variables that steer plugin loading are set per test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from eventbus.cli import build_parser, main

FIRST_PARTY = {"logging", "networth", "sse", "redis"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENTBUS_BLOCK_PLUGINS", raising=False)
    monkeypatch.delenv("EVENTBUS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("EVENTBUS_REDIS_URL", raising=False)


def run_json(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, dict[str, Any]]]:
    """Run ``eventbus plugins --json``; return the exit code and the rows by name."""
    code = main(["plugins", "--json"])
    rows = json.loads(capsys.readouterr().out)
    return code, {row["name"]: row for row in rows}


@pytest.fixture(name="broken_dist")
def _broken_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A real (metadata-only) distribution whose ``eventbus`` entry point cannot import."""
    info = tmp_path / "broken_plugin-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[eventbus]\nbroken = no_such_module_xyz:Plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "broken"


class TestPluginsJson:
    """``eventbus plugins --json``."""

    def test_lists_the_first_party_plugins_loaded(self, capsys: pytest.CaptureFixture[str]) -> None:
        """logging, networth, sse and redis are all discovered and load."""
        code, rows = run_json(capsys)
        assert code == 0
        assert set(rows) >= FIRST_PARTY
        for name in FIRST_PARTY:
            row = rows[name]
            assert (row["status"], row["blocked"], row["error"]) == ("loaded", False, None)
            assert (row["distribution"], row["version"]) == ("eventbus", "0.1.0")
            assert row["entry_point"].startswith(f"eventbus_{name}:")
            assert row["hooks"]
            assert set(row["hooks"]) <= {
                "eventbus_register",
                "eventbus_startup",
                "eventbus_shutdown",
            }

    def test_reports_subscriptions_with_priorities(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Each subscription names its event type, handler, priority and kinds (async, fleet)."""
        _, rows = run_json(capsys)
        subs = rows["networth"]["subscriptions"]
        assert "AccountBalanceUpdated" in {s["event_type"] for s in subs}
        assert [s["fleet"] for s in subs] == [True]  # net worth is kept in the fleet's order
        assert not any(s["fleet"] for s in rows["logging"]["subscriptions"])  # logs once
        for sub in (s for row in rows.values() for s in row["subscriptions"]):
            assert set(sub) == {"event_type", "handler", "priority", "is_async", "fleet"}
            assert isinstance(sub["priority"], int)
        assert any(s["event_type"] == "DomainEvent" for s in rows["logging"]["subscriptions"])

    def test_blocked_plugins_are_listed_as_blocked(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A name in EVENTBUS_BLOCK_PLUGINS is reported, blocked, without hooks."""
        monkeypatch.setenv("EVENTBUS_BLOCK_PLUGINS", "redis, sse")
        code, rows = run_json(capsys)
        assert code == 0
        for name in ("redis", "sse"):
            assert (rows[name]["status"], rows[name]["blocked"]) == ("blocked", True)
            assert rows[name]["hooks"] == []
            assert rows[name]["distribution"] == "eventbus"
        assert rows["networth"]["status"] == "loaded"

    def test_autoload_disabled(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With EVENTBUS_DISABLE_PLUGIN_AUTOLOAD=1 every plugin is listed as disabled."""
        monkeypatch.setenv("EVENTBUS_DISABLE_PLUGIN_AUTOLOAD", "1")
        code, rows = run_json(capsys)
        assert code == 0
        assert {rows[name]["status"] for name in FIRST_PARTY} == {"disabled"}

    def test_a_broken_plugin_is_reported_and_hides_nothing(
        self, capsys: pytest.CaptureFixture[str], broken_dist: str
    ) -> None:
        """An entry point that fails to import is an error row; the others still load."""
        code, rows = run_json(capsys)
        assert code == 1
        row = rows[broken_dist]
        assert (row["status"], row["distribution"], row["version"]) == (
            "error",
            "broken-plugin",
            "0.3",
        )
        assert "no_such_module_xyz" in row["error"]
        assert "broken-plugin 0.3" in row["error"]
        assert {rows[name]["status"] for name in FIRST_PARTY} == {"loaded"}


class TestPluginsText:
    """``eventbus plugins`` without ``--json``."""

    def test_prints_one_block_per_plugin(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Each plugin line carries its status and distribution, then hooks and subscriptions."""
        assert main(["plugins"]) == 0
        out = capsys.readouterr().out
        for name in FIRST_PARTY:
            assert f"{name}  [loaded]  eventbus 0.1.0" in out
        assert "on AccountBalanceUpdated (priority " in out
        assert "hooks: eventbus_register" in out

    def test_prints_the_error_of_a_broken_plugin(
        self, capsys: pytest.CaptureFixture[str], broken_dist: str
    ) -> None:
        """The load error is shown under the plugin, and the exit code is 1."""
        assert main(["plugins"]) == 1
        out = capsys.readouterr().out
        assert "broken  [error]  broken-plugin 0.3" in out
        assert "error: failed to load eventbus plugin entry point 'broken'" in out


class TestParser:
    """Arguments are validated with messages that name the option."""

    def test_demo_defaults(self) -> None:
        """The defaults are the README's: loopback, port 8000, 3 users, until Ctrl-C."""
        args = build_parser().parse_args(["demo"])
        assert (args.host, args.port, args.users, args.duration) == ("127.0.0.1", 8000, 3, None)
        assert (args.interval, args.redis, args.seed) == (1.0, None, None)

    @pytest.mark.parametrize(
        ("argv", "option"),
        [
            (["demo", "--users", "-1"], "--users"),
            (["demo", "--duration", "-1"], "--duration"),
            (["demo", "--interval", "abc"], "--interval"),
        ],
    )
    def test_demo_rejects_bad_values(
        self, argv: list[str], option: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A bad value exits with status 2 and names the option."""
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args(argv)
        assert info.value.code == 2
        assert option in capsys.readouterr().err

    def test_a_subcommand_is_required(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Bare ``eventbus`` prints usage listing the subcommands."""
        with pytest.raises(SystemExit):
            build_parser().parse_args([])
        err = capsys.readouterr().err
        assert "demo" in err
        assert "plugins" in err


class TestConsoleScript:
    """The installed ``eventbus`` script."""

    def test_plugins_json_from_the_console_script(self) -> None:
        """``eventbus plugins --json`` (the real script) lists the first-party plugins."""
        script = shutil.which("eventbus") or pytest.fail("the eventbus script is not installed")
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTBUS_")}
        result = subprocess.run(
            [script, "plugins", "--json"], capture_output=True, text=True, env=env, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert {row["name"] for row in json.loads(result.stdout)} >= FIRST_PARTY
