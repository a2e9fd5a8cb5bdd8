"""The documentation: the mkdocs site builds strictly, and the README points at it.

``mkdocs build --strict`` fails on any warning: a broken link, a page missing
from the nav, an API reference entry that does not resolve, or a snippet whose
file (the example plugin, the changelog) is gone.
"""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


class TestSite:
    """The mkdocs site."""

    def test_builds_strictly(self, tmp_path: Path) -> None:
        """``mkdocs build --strict`` succeeds, and the API reference has content."""
        site = tmp_path / "site"
        result = subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=240,
            env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
        )
        assert result.returncode == 0, result.stdout + result.stderr
        reference = (site / "reference" / "eventbus" / "index.html").read_text()
        assert "publish_sync" in reference
        guide = (site / "writing-a-plugin" / "index.html").read_text()
        assert "LargeWithdrawalPlugin" in guide  # included from the example package

    def test_every_nav_page_exists(self) -> None:
        """Each ``.md`` named in mkdocs.yml is in docs/."""
        config = (ROOT / "mkdocs.yml").read_text()
        pages = re.findall(r":\s*([\w/.-]+\.md)\s*$", config, flags=re.MULTILINE)
        assert len(pages) >= 15
        missing = [page for page in pages if not (ROOT / "docs" / page).is_file()]
        assert missing == []


class TestChangelog:
    """CHANGELOG.md follows Keep a Changelog."""

    def test_keep_a_changelog_layout(self) -> None:
        """An Unreleased section, then versions with ISO dates, newest first."""
        text = (ROOT / "CHANGELOG.md").read_text()
        assert text.startswith("# Changelog\n")
        assert "## [Unreleased]" in text
        versions = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", text, re.MULTILINE)
        assert versions
        assert versions[0][0] == __import__("eventbus").__version__
        sections = set(re.findall(r"^### (\w+)$", text, re.MULTILINE))
        assert sections <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


class TestReadme:
    """The README's entry points into the docs."""

    @pytest.fixture(name="readme")
    def _readme(self) -> str:
        return (ROOT / "README.md").read_text()

    def test_quickstart_commands_are_unchanged(self, readme: str) -> None:
        """The two commands a newcomer copies are exactly these."""
        assert 'pip install -e ".[sse]" && eventbus demo' in readme
        assert 'pip install -e ".[test]" && pytest' in readme

    def test_screenshot_is_a_real_png(self, readme: str) -> None:
        """The README shows docs/img/demo.png, a real screenshot-sized PNG."""
        assert "](docs/img/demo.png)" in readme
        data = (ROOT / "docs" / "img" / "demo.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        assert width >= 800
        assert height >= 400

    def test_links_to_the_guides(self, readme: str) -> None:
        """Usage, Writing a plugin and Docs sections exist and point into docs/."""
        for heading in ("## Usage", "## Writing a plugin", "## Docs"):
            assert heading in readme
        assert "docs/writing-a-plugin.md" in readme
        assert "mkdocs serve" in readme
