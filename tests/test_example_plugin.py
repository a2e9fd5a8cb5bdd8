"""The docs' example plugin package: it builds, installs, and is discovered by entry point.

The package in ``docs/examples/eventbus-example-plugin`` is what the "Writing a
plugin" guide walks through, so it must keep working. It is pip-installed (offline:
no index, no build isolation; hatchling comes with the ``test`` extra) into a
target directory, and everything that imports it runs in a subprocess with that
directory on ``PYTHONPATH``. That way the test process's event registry and
entry points stay exactly as they were.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.test_docs import ROOT, code_blocks, plugin_sections, run_command

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "eventbus-example-plugin"

# Loads every discovered plugin except the other first-party ones (this test is
# about the example), publishes one large withdrawal and reports what happened.
_PROBE = textwrap.dedent(
    """
    import dataclasses, json
    from decimal import Decimal
    from importlib.metadata import entry_points
    from uuid import uuid4

    from eventbus import EventBus
    from eventbus.portfolio import AccountBalanceUpdated
    from eventbus.testing import capture_events
    from eventbus_example import LargeWithdrawalPlugin

    bus = EventBus(raise_errors=True)
    for ep in entry_points(group="eventbus"):
        if ep.name != "example":
            bus.block_plugin(ep.name)
    loaded = bus.load_entry_points()
    event = AccountBalanceUpdated.from_change(
        user_id=uuid4(), account_id=uuid4(), previous_balance=Decimal("5000"),
        new_balance=Decimal("100"), currency="USD",
    )
    with capture_events(bus) as events:
        bus.publish_sync(event)
    print(json.dumps({
        "loaded": loaded,
        "plugins": [dataclasses.asdict(p) for p in bus.plugins()],
        "published": [type(e).__name__ for e in events],
        "plugin_class": type(bus.get_plugin(LargeWithdrawalPlugin)).__qualname__,
    }))
    """
)


@pytest.fixture(name="site", scope="module")
def _site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example package, pip-installed into a fresh target directory."""
    work = tmp_path_factory.mktemp("example-plugin")
    source = shutil.copytree(EXAMPLE, work / "src", ignore=shutil.ignore_patterns("__pycache__"))
    target = work / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return target


def _run(site: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("EVENTBUS_BLOCK_PLUGINS", None)
    env.pop("EVENTBUS_DISABLE_PLUGIN_AUTOLOAD", None)
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


class TestExamplePlugin:
    """The example package installs and behaves like any third-party plugin."""

    def test_installs_with_its_entry_point(self, site: Path) -> None:
        """pip writes the package and its ``eventbus`` entry point into the target."""
        (dist_info,) = site.glob("eventbus_example_plugin-*.dist-info")
        assert (
            "example = eventbus_example:LargeWithdrawalPlugin"
            in (dist_info / "entry_points.txt").read_text()
        )
        assert (site / "eventbus_example" / "py.typed").exists()

    def test_is_discovered_and_loaded_through_entry_points(self, site: Path) -> None:
        """``load_entry_points()`` finds it via importlib.metadata and it handles events."""
        result = _run(site, "-c", _PROBE)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["loaded"] == ["example"]
        assert report["plugin_class"] == "LargeWithdrawalPlugin"
        (info,) = report["plugins"]
        assert (info["distribution"], info["version"]) == ("eventbus-example-plugin", "1.0.0")
        assert info["entry_point"] == "eventbus_example:LargeWithdrawalPlugin"
        assert [(s["event_type"], s["priority"]) for s in info["subscriptions"]] == [
            ("AccountBalanceUpdated", -10)
        ]
        assert report["published"] == ["AccountBalanceUpdated", "LargeWithdrawal"]

    def test_eventbus_plugins_lists_it(self, site: Path) -> None:
        """The ``eventbus plugins --json`` command reports the installed distribution."""
        result = _run(site, "-m", "eventbus.cli", "plugins", "--json")
        assert result.returncode == 0, result.stderr
        by_name = {p["name"]: p for p in json.loads(result.stdout)}
        assert by_name["example"]["distribution"] == "eventbus-example-plugin"
        assert by_name["example"]["version"] == "1.0.0"

    def test_the_guides_eventbus_plugins_session_is_real(self, site: Path) -> None:
        """writing-a-plugin.md shows the ``example`` lines that ``eventbus plugins`` prints."""
        page = ROOT / "docs" / "writing-a-plugin.md"
        (block,) = [
            b for b in code_blocks(page) if b.lang == "text" and b.code.startswith("example ")
        ]
        shown = block.code.removesuffix("...\n")
        real = plugin_sections(run_command("eventbus plugins", extra_path=str(site)))
        assert shown == real["example"]

    def test_its_own_test_suite_passes(self, site: Path, tmp_path: Path) -> None:
        """The package's tests, which use the ``event_bus``/``captured_events`` fixtures, pass."""
        tests = shutil.copytree(EXAMPLE / "tests", tmp_path / "tests")
        result = _run(
            site,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "-o",
            "asyncio_mode=auto",
            str(tests),
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert " passed" in result.stdout
