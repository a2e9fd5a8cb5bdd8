"""The documentation: it builds, its code type-checks, and it matches the code it shows.

* The mkdocs site builds with ``--strict`` (a broken link, a page missing from
  the nav, an API reference entry that does not resolve), and a snippet marker
  left as text in a rendered page fails the build (docs/_hooks/snippet_markers.py).
* Every python block in README.md and docs/ passes ``mypy --strict`` and pyright,
  as a user would copy it (see "code in the docs" below for the markers).
* Blocks that show a file (the example plugin's) equal that file, byte for byte.
* The terminal sessions in docs/cli.md are what the real commands print.
* The README's commands: the quickstart, the docs server's port, and the
  "two workers, one user" walk-through, run for real against redis-server.
"""

from __future__ import annotations

import ast
import asyncio
import difflib
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from tests.support import free_port, require_binary, wait_until, wait_until_async

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_SRC = ROOT / "docs" / "examples" / "eventbus-example-plugin" / "src"

#: Set to 1 to rewrite docs/cli.md's terminal sessions from the real commands.
UPDATE_ENV = "EVENTBUS_UPDATE_DOCS"


def _mkdocs(cwd: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )


def _load_hook() -> ModuleType:
    path = ROOT / "docs" / "_hooks" / "snippet_markers.py"
    spec = importlib.util.spec_from_file_location("snippet_markers", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestSite:
    """The mkdocs site."""

    def test_builds_strictly(self, tmp_path: Path) -> None:
        """``mkdocs build --strict`` succeeds, and the pages have their content."""
        site = tmp_path / "site"
        result = _mkdocs(ROOT, site)
        assert result.returncode == 0, result.stdout + result.stderr
        reference = (site / "reference" / "eventbus" / "index.html").read_text()
        assert "publish_sync" in reference
        guide = (site / "writing-a-plugin" / "index.html").read_text()
        assert "LargeWithdrawalPlugin" in guide
        logging_page = (site / "plugins" / "logging" / "index.html").read_text()
        assert "JSONLinesFormatter" in logging_page
        assert "Keep a Changelog" in (site / "changelog" / "index.html").read_text()
        hook = _load_hook()
        shown = {
            page.relative_to(site).as_posix(): found
            for page in site.rglob("*.html")
            if (found := hook.find_markers(page.read_text()))
        }
        assert shown == {}

    def test_every_nav_page_exists(self) -> None:
        """Each ``.md`` named in mkdocs.yml is in docs/."""
        config = (ROOT / "mkdocs.yml").read_text()
        pages = re.findall(r":\s*([\w/.-]+\.md)\s*$", config, flags=re.MULTILINE)
        assert len(pages) >= 15
        missing = [page for page in pages if not (ROOT / "docs" / page).is_file()]
        assert missing == []


class TestSnippetMarkers:
    """A snippet include that was not expanded fails the docs build (the mkdocs hook)."""

    @pytest.mark.parametrize(
        "text",
        [
            '--8<-- "docs/examples/logging_json.py"',
            '--8 < --"docs/examples/logging_json.py"',  # what ruff format once made of it
            "-- 8 <-- 'a.py'",
            "-8<-",
            ";--8<-- escaped",
        ],
    )
    def test_finds_every_form(self, text: str) -> None:
        """The marker is found in any spacing, in code blocks, escaped or split by spans."""
        hook = _load_hook()
        escaped = text.replace("<", "&lt;")
        assert hook.find_markers(f"<p>{escaped}</p>") == [text]
        highlighted = escaped.replace("8", '<span class="mi">8</span>')
        assert hook.find_markers(f'<pre><code><span class="o">{highlighted}</span></code></pre>')

    def test_leaves_ordinary_text_alone(self) -> None:
        """Arrows, comparisons, ranges and HTML comments are not markers."""
        hook = _load_hook()
        page = "<p>a --&gt; b, x &lt;- y, 8 &lt; 9, 1-8, 8&lt;9</p><!-- fmt: off -->"
        assert hook.find_markers(page) == []

    def test_a_mangled_include_fails_the_build(self, tmp_path: Path) -> None:
        """A minimal site with the project's hook and snippets settings refuses the page."""
        project = tmp_path / "project"
        (project / "docs").mkdir(parents=True)
        (project / "docs" / "included.py").write_text("ANSWER = 42\n")
        config = (ROOT / "mkdocs.yml").read_text()
        extensions = config[config.index("\nmarkdown_extensions:") : config.index("\nplugins:")]
        (project / "mkdocs.yml").write_text(
            "site_name: t\nnav:\n  - index.md\n"
            f"hooks:\n  - {ROOT / 'docs' / '_hooks' / 'snippet_markers.py'}\n{extensions}"
        )
        page = project / "docs" / "index.md"
        page.write_text('# t\n\n```python\n--8<-- "docs/included.py"\n```\n')
        good = _mkdocs(project, tmp_path / "good")
        assert good.returncode == 0, good.stdout + good.stderr
        assert "ANSWER" in (tmp_path / "good" / "index.html").read_text()

        page.write_text('# t\n\n```python\n--8 < --"docs/included.py"\n```\n')
        bad = _mkdocs(project, tmp_path / "bad")
        assert bad.returncode != 0
        assert "index.md: a snippet include was not expanded" in bad.stderr
        assert "--8 < --" in bad.stderr

    def test_code_is_shown_inline(self) -> None:
        """No code block includes a file, so GitHub shows every page's code.

        (docs/changelog.md includes CHANGELOG.md, as text: that is fine.)
        """
        including = [
            f"{block.page}:{block.line}"
            for page in markdown_pages()
            for block in code_blocks(page)
            if re.search(r"^\s*-{1,2}\s*8\s*<", block.code, re.MULTILINE)
        ]
        assert including == []


# ---------------------------------------------------------------- code in the docs
#
# Every ```python block in README.md and docs/ is code a user may copy, so each
# one is type-checked (mypy --strict, and pyright) as a module of its own. An
# HTML comment right above a block (invisible on GitHub and on the site) says
# how, when a block is not a whole module:
#
#   <!-- check: continue -->     the block goes on from the page's previous block:
#                                both are checked as one module
#   <!-- check: setup            hidden lines that come first (the names a
#   from eventbus import EventBus    fragment takes from its context)
#   bus = EventBus()
#   -->
#   <!-- check: async -->        the block's lines run inside an ``async def`` (top-level
#                                ``await`` / ``async with``, as in an asyncio REPL)
#   <!-- check: skip REASON -->  not checked, with the reason (not code to copy)
#   <!-- file: PATH [lines A-B] -->  the block is that file (or those lines of it),
#                                byte for byte; the file itself is checked

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)")
_FILE = re.compile(r"^file:\s+(?P<path>\S+)(?:\s+lines\s+(?P<first>\d+)-(?P<last>\d+))?$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown page, with the directives above it."""

    page: str  # relative to the repository root
    line: int  # 1-based line of the opening fence
    lang: str
    code: str  # dedented, without the fences
    directives: tuple[str, ...]  # the text of each <!-- ... --> above it


def markdown_pages() -> list[Path]:
    """README.md and every page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def code_blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, each with the HTML comments right above it."""
    return parse_blocks(path.read_text(), path.relative_to(ROOT).as_posix())


def parse_blocks(markdown: str, page: str) -> list[Block]:
    """The fenced blocks of Markdown text, each with the HTML comments right above it."""
    lines = markdown.splitlines()
    blocks: list[Block] = []
    pending: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("<!--"):
            comment = [stripped[4:]]
            while "-->" not in comment[-1] and i + 1 < len(lines):
                i += 1
                comment.append(lines[i])
            text = "\n".join(comment)
            pending.append(text[: text.rindex("-->")].strip())
        elif (fence := _FENCE.match(line)) is not None:
            indent, marker = fence["indent"], fence["fence"]
            body: list[str] = []
            start = i
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(marker):
                body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
                i += 1
            blocks.append(
                Block(
                    page=page,
                    line=start + 1,
                    lang=fence["lang"],
                    code="\n".join(body) + "\n",
                    directives=tuple(pending),
                )
            )
            pending = []
        elif stripped:
            pending = []
        i += 1
    return blocks


@dataclass
class Module:
    """Snippet code assembled into one module, with where each line came from."""

    name: str
    page: str
    origin: list[str]  # per module line: "README.md:42" or "README.md:40 (setup)"
    text: list[str]


def snippet_modules() -> tuple[list[Module], list[tuple[Block, str]]]:
    """The python blocks of every page as modules to type-check, and the skipped blocks."""
    modules: list[Module] = []
    skipped: list[tuple[Block, str]] = []
    for path in markdown_pages():
        previous: Module | None = None
        for block in code_blocks(path):
            if block.lang not in ("python", "py"):
                continue
            kind = "module"
            wrap = False
            setup: list[str] = []
            for directive in block.directives:
                if directive.startswith("file:"):
                    kind = "file"
                elif directive.startswith("check:"):
                    head, _, rest = directive[len("check:") :].strip().partition("\n")
                    word, _, reason = head.partition(" ")
                    if word == "skip":
                        assert reason.strip(), f"{block.page}:{block.line}: skip needs a reason"
                        kind = "skip"
                        skipped.append((block, reason.strip()))
                    elif word == "continue":
                        kind = "continue"
                    elif word == "async":
                        wrap = True
                    elif word == "setup":
                        setup = textwrap.dedent(rest).splitlines()
                    else:
                        pytest.fail(f"{block.page}:{block.line}: unknown directive {directive!r}")
            if kind in ("skip", "file"):
                continue
            if kind == "continue":
                assert previous is not None, f"{block.page}:{block.line}: nothing to continue"
                module = previous
            else:
                stem = re.sub(r"\W", "_", block.page.removesuffix(".md")).lower()
                module = Module(f"snippet_{stem}_{block.line}", block.page, [], [])
                modules.append(module)
            for number, text in enumerate(setup):
                module.origin.append(f"{block.page}:{block.line} (setup line {number + 1})")
                module.text.append(text)
            if wrap:
                module.origin.append(f"{block.page}:{block.line} (async wrapper)")
                module.text.append(f"async def _snippet_{block.line}() -> None:")
            for number, text in enumerate(block.code.splitlines()):
                module.origin.append(f"{block.page}:{block.line + 1 + number}")
                module.text.append(f"    {text}" if wrap else text)
            previous = module
    return modules, skipped


#: Pages whose python blocks are not all whole modules yet and carry no
#: markers: their owners add ``<!-- check: ... -->`` markers, then drop the page
#: from here (the test fails while a listed page already passes).
PENDING: dict[str, str] = {
    # "docs/page.md": "fragments without check markers (owned by another change): why",
}

_MODULES, _SKIPPED = snippet_modules()

#: Pages whose blocks need no server or network, so each module is also run.
RUNNABLE_PAGES = frozenset(
    {
        "README.md",
        "docs/getting-started.md",
        "docs/plugins/logging.md",
        "docs/portfolio-events.md",
        "docs/writing-a-plugin.md",
    }
)
_PAGES = sorted({module.page for module in _MODULES})


def _errors_by_page(
    modules: list[Module], found: list[tuple[str, int, str]]
) -> dict[str, list[str]]:
    """Map (module name, 1-based line, message) to "page:line: message", by page."""
    by_name = {module.name: module for module in modules}
    result: dict[str, list[str]] = {}
    for name, line, message in found:
        module = by_name[name]
        where = module.origin[line - 1] if 0 < line <= len(module.origin) else f"{module.page}:?"
        result.setdefault(module.page, []).append(f"{where}: {message}")
    for errors in result.values():
        errors.sort(
            key=lambda error: [int(n) if n.isdigit() else n for n in re.split(r"(\d+)", error)]
        )
    return result


def _write_modules(directory: Path) -> list[tuple[str, int, str]]:
    """Write the snippet modules that parse; return the syntax errors of the others.

    A syntax error stops mypy for every file, so such a module is reported here
    and left out of the type checkers' runs.
    """
    directory.mkdir(parents=True, exist_ok=True)
    errors: list[tuple[str, int, str]] = []
    for module in _MODULES:
        source = "\n".join(module.text) + "\n"
        try:
            ast.parse(source, f"{module.name}.py")
        except SyntaxError as exc:
            errors.append((module.name, exc.lineno or 0, f"syntax error: {exc.msg}"))
            continue
        (directory / f"{module.name}.py").write_text(source)
    return errors


@pytest.fixture(name="mypy_errors", scope="module")
def _mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Every snippet module through one ``mypy --strict`` run, errors by page."""
    work = tmp_path_factory.mktemp("mypy-snippets")
    found = _write_modules(work / "snippets")
    config = work / "mypy.ini"
    config.write_text("[mypy]\nstrict = True\npython_version = 3.11\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(config),
            "--cache-dir",
            str(work / "cache"),
            "--no-error-summary",
            "--show-error-codes",
            "--hide-error-context",
            "--no-color-output",
            "--no-pretty",
            "snippets",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
        # The example plugin's package, as if pip-installed: writing-a-plugin.md uses it.
        env={**os.environ, "MYPYPATH": str(EXAMPLE_SRC)},
    )
    for line in result.stdout.splitlines():
        match = re.match(r"^snippets/(\w+)\.py:(\d+): (error|note): (.*)$", line)
        if match and match[3] == "error":
            found.append((match[1], int(match[2]), match[4]))
    assert result.returncode in (0, 1), result.stdout + result.stderr
    assert ("error:" in result.stdout) == (result.returncode == 1), result.stdout + result.stderr
    return _errors_by_page(_MODULES, found)


@pytest.fixture(name="pyright_errors", scope="module")
def _pyright_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Every snippet module through one pyright run (standard mode), errors by page."""
    pyright = shutil.which("pyright", path=str(Path(sys.executable).parent)) or shutil.which(
        "pyright"
    )
    if pyright is None:
        if os.environ.get("CI"):
            pytest.fail("pyright is not installed; the test extra installs it")
        pytest.skip("pyright is not installed (pip install -e '.[test]')")
    work = tmp_path_factory.mktemp("pyright-snippets")
    syntax = _write_modules(work / "snippets")
    (work / "pyrightconfig.json").write_text(
        json.dumps(
            {
                "include": ["snippets"],
                "pythonVersion": "3.11",
                "typeCheckingMode": "standard",
                "extraPaths": [str(EXAMPLE_SRC)],
            }
        )
    )
    result = subprocess.run(
        [pyright, "--outputjson", "--pythonpath", sys.executable],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(result.stdout)
    found = syntax + [
        (
            Path(item["file"]).stem,
            item["range"]["start"]["line"] + 1,
            f"{item['message']} [{item.get('rule', '')}]",
        )
        for item in report["generalDiagnostics"]
        if item["severity"] == "error"
    ]
    return _errors_by_page(_MODULES, found)


def _expect_clean(page: str, errors: dict[str, list[str]]) -> None:
    if page in PENDING:
        if not errors.get(page):
            pytest.fail(f"{page} passes now: remove it from PENDING in tests/test_docs.py")
        pytest.xfail(PENDING[page])
    found = errors.get(page, [])
    if found:
        pytest.fail(f"{len(found)} error(s) in {page}'s python blocks:\n" + "\n".join(found))


class TestCodeInTheDocs:
    """Every python block in README.md and docs/ type-checks as a user would copy it."""

    def test_blocks_are_found(self) -> None:
        """The README and the guides have checked blocks; skips are rare and explained."""
        assert {"README.md", "docs/getting-started.md", "docs/writing-a-plugin.md"} <= set(_PAGES)
        assert len(_MODULES) >= 20
        assert len(_SKIPPED) <= 5, [f"{b.page}:{b.line} {why}" for b, why in _SKIPPED]

    @pytest.mark.parametrize("page", _PAGES)
    def test_mypy_strict(self, page: str, mypy_errors: dict[str, list[str]]) -> None:
        """``mypy --strict`` reports nothing for the page's blocks."""
        _expect_clean(page, mypy_errors)

    @pytest.mark.parametrize("page", _PAGES)
    def test_pyright(self, page: str, pyright_errors: dict[str, list[str]]) -> None:
        """pyright reports no error for the page's blocks."""
        _expect_clean(page, pyright_errors)

    @pytest.mark.parametrize(
        "module", [m for m in _MODULES if m.page in RUNNABLE_PAGES], ids=lambda m: m.name
    )
    def test_runs(self, module: Module, tmp_path: Path) -> None:
        """The guides' blocks also run as they are (in a fresh interpreter)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTBUS_")}
        env["PYTHONPATH"] = str(EXAMPLE_SRC)  # writing-a-plugin.md's package, as if installed
        result = subprocess.run(
            [sys.executable, "-c", "\n".join(module.text)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{module.origin[0]}:\n{result.stderr}"

    def test_the_example_plugin_is_strictly_typed(self, tmp_path: Path) -> None:
        """The files writing-a-plugin.md shows (package and tests) pass ``mypy --strict``."""
        example = EXAMPLE_SRC.parent
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "mypy",
                "--strict",
                "--cache-dir",
                str(tmp_path / "cache"),
                "--no-error-summary",
                "src",
                "tests",
            ],
            cwd=example,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def _file_blocks() -> list[tuple[Block, Path, str]]:
    """(block, file, the file's text or line range) for every ``<!-- file: -->`` block."""
    found = []
    for page in markdown_pages():
        for block in code_blocks(page):
            for directive in block.directives:
                if (match := _FILE.match(directive)) is not None:
                    path = ROOT / match["path"]
                    text = path.read_text()
                    if match["first"]:
                        lines = text.splitlines(keepends=True)
                        text = "".join(lines[int(match["first"]) - 1 : int(match["last"])])
                    found.append((block, path, text))
    return found


class TestFilesShownInline:
    """A block marked ``<!-- file: PATH -->`` is that file, so the page cannot drift."""

    def test_writing_a_plugin_shows_the_whole_example(self) -> None:
        """The guide shows the example's pyproject entry point, its modules and its tests."""
        shown = {
            path.relative_to(EXAMPLE_SRC.parent).as_posix()
            for block, path, _ in _file_blocks()
            if block.page == "docs/writing-a-plugin.md"
        }
        assert shown == {
            "pyproject.toml",
            "src/eventbus_example/events.py",
            "src/eventbus_example/plugin.py",
            "tests/test_plugin.py",
        }

    @pytest.mark.parametrize(
        ("block", "path", "text"),
        _file_blocks(),
        ids=lambda value: f"{value.page}:{value.line}" if isinstance(value, Block) else "",
    )
    def test_block_equals_the_file(self, block: Block, path: Path, text: str) -> None:
        """The block's text is the file's, byte for byte (copy the file into the page)."""
        if block.code != text:
            diff = difflib.unified_diff(
                text.splitlines(), block.code.splitlines(), str(path), block.page, lineterm=""
            )
            pytest.fail(f"{block.page}:{block.line} differs from its file:\n" + "\n".join(diff))


# ------------------------------------------------------------------ CLI sessions


def _eventbus() -> str:
    script = shutil.which("eventbus", path=str(Path(sys.executable).parent))
    assert script is not None, "the eventbus console script is not installed (pip install -e .)"
    return script


def run_command(command: str, extra_path: str | None = None) -> str:
    """Run an ``eventbus ...`` command line as a user would, 80 columns wide."""
    argv = command.split()
    assert argv[0] == "eventbus"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("EVENTBUS_") and k not in ("FORCE_COLOR", "PYTHON_COLORS")
    }
    env |= {"COLUMNS": "80", "NO_COLOR": "1"}  # argparse wraps to COLUMNS; 3.14 colours help
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [extra_path, env.get("PYTHONPATH")]))
    result = subprocess.run(
        [_eventbus(), *argv[1:]], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def plugin_sections(output: str) -> dict[str, str]:
    """``eventbus plugins`` output split per plugin: {name: its lines}."""
    sections: dict[str, list[str]] = {}
    name = ""
    for line in output.splitlines():
        if not line.startswith(" "):
            name = line.split()[0]
        sections.setdefault(name, []).append(line)
    return {name: "\n".join(lines) + "\n" for name, lines in sections.items()}


def _sessions(page: Path) -> list[Block]:
    return [
        block
        for block in code_blocks(page)
        if block.lang == "text" and block.code.startswith("$ eventbus ")
    ]


def _expected_output(command: str) -> str:
    output = run_command(command)
    if command == "eventbus plugins":
        # Only eventbus's own plugins: third-party ones installed here are not the docs'.
        sections = plugin_sections(output)
        output = "".join(
            text for text in sections.values() if "  eventbus " in text.splitlines()[0]
        )
    return output


class TestCLIDocs:
    """docs/cli.md's terminal sessions are what the commands print today."""

    def test_sessions_are_shown(self) -> None:
        """The page shows ``eventbus demo --help`` and ``eventbus plugins``."""
        commands = [b.code.splitlines()[0] for b in _sessions(ROOT / "docs" / "cli.md")]
        assert commands == ["$ eventbus demo --help", "$ eventbus plugins"]

    @pytest.mark.parametrize(
        "block", _sessions(ROOT / "docs" / "cli.md"), ids=lambda b: b.code.splitlines()[0]
    )
    def test_session_matches_the_real_output(self, block: Block) -> None:
        """The block is the command's real output (``EVENTBUS_UPDATE_DOCS=1`` rewrites it)."""
        command, _, shown = block.code.partition("\n")
        real = _expected_output(command.removeprefix("$ "))
        if shown != real and os.environ.get(UPDATE_ENV) == "1":
            page = ROOT / block.page
            page.write_text(page.read_text().replace(block.code, f"{command}\n{real}", 1))
            pytest.skip(f"rewrote {block.page}:{block.line} from the real output")
        assert shown == real, (
            f"{block.page}:{block.line} is not what `{command[2:]}` prints; "
            f"run `{UPDATE_ENV}=1 pytest tests/test_docs.py -k CLIDocs` to rewrite it"
        )


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


# ------------------------------------------------------- the README's walk-through


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    return text[start : end if end != -1 else len(text)]


class _Process:
    """A command from the README, running, with what it printed (reader threads)."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTBUS_")}
        env["PYTHONUNBUFFERED"] = "1"
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def printed(self, prefix: str) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"{self.argv} exited early:\n" + "\n".join(self.lines))
        return any(line.startswith(prefix) for line in list(self.lines))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            pytest.fail(f"{self.argv} did not stop on Ctrl-C:\n" + "\n".join(self.lines))


async def _read_frames(url: str, frames: dict[str, str]) -> None:
    """Collect the SSE frames at ``url`` into ``{id: frame text}`` until cancelled."""
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(30.0)) as client,
        client.stream("GET", url) as response,
    ):
        assert response.status_code == 200, url
        frame: list[str] = []
        async for line in response.aiter_lines():
            if line:
                frame.append(line)
                continue
            ids = [f[4:] for f in frame if f.startswith("id: ")]
            if ids:
                frames[ids[0]] = "\n".join(frame)
            frame = []


class TestReadme:
    """The README's entry points into the docs, and its commands."""

    @pytest.fixture(name="readme")
    def _readme(self) -> str:
        return (ROOT / "README.md").read_text()

    def test_quickstart_commands_are_unchanged(self, readme: str) -> None:
        """The two commands a newcomer copies are exactly these."""
        assert 'pip install -e ".[sse]" && eventbus demo' in readme
        assert 'pip install -e ".[test]" && pytest' in readme

    def test_names_the_system_packages_the_suite_uses(self, readme: str) -> None:
        """redis-server and chromium are named next to the test command, with what skips."""
        quickstart = _section(readme, "## Quickstart")
        for package in ("`redis-server`", "`chromium`", "apt-get install redis-server chromium"):
            assert package in quickstart
        assert "skipped" in quickstart
        ci = (ROOT / ".ci" / "run").read_text()
        assert re.search(r"apt-get install .*redis-server chromium", ci)

    def test_docs_server_does_not_take_the_demos_port(self, readme: str) -> None:
        """``mkdocs serve`` runs on a port no demo worker in the README uses."""
        (command,) = [line for line in readme.splitlines() if "mkdocs serve" in line]
        port = re.search(r"mkdocs serve -a 127\.0\.0\.1:(\d+)", command)
        assert port is not None, command
        demo_ports = set(re.findall(r"eventbus demo .*--port (\d+)", readme)) | {"8000"}
        assert port[1] not in demo_ports

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
        assert "docs/fastapi.md" in readme
        assert "mkdocs serve" in readme

    @pytest.mark.redis
    async def test_two_workers_one_user(self, readme: str, tmp_path: Path) -> None:
        """The walk-through's commands, as written, on free ports: what it says is true.

        Worker B, started after worker A's users synced, accepts a token A
        printed; its first figure (``/networth``, the page's first paint) is
        A's; and the SSE frames both stream to that user carry the same ids and
        the same bytes.
        """
        require_binary("redis-server")
        walk = _section(readme, "### Two workers, one user")
        blocks = [b.code for b in parse_blocks(walk, "README.md") if b.lang == "bash"]
        commands = [line for block in blocks for line in block.splitlines() if line.strip()]
        assert len(commands) == 3, commands
        ports = {"6379": free_port(), "8000": free_port(), "8001": free_port()}

        def argv(line: str) -> list[str]:
            for documented, port in ports.items():
                line = re.sub(rf"\b{documented}\b", str(port), line)
            words = shlex.split(line.removesuffix("&").strip())
            if words[0] == "eventbus":
                words[0] = _eventbus()
            return words

        redis_line, first_line, second_line = commands
        assert redis_line.endswith("&")
        started: list[_Process] = []
        try:
            redis = _Process(argv(redis_line), tmp_path)
            started.append(redis)
            wait_until(lambda: redis.printed("") and _pings(ports["6379"]), 10, "redis-server")
            first = _Process(argv(first_line), tmp_path)
            started.append(first)
            wait_until(lambda: first.printed("Open "), 60, "worker A's URLs")
            urls = {
                m[1]: m[2]
                for line in first.lines
                if (m := re.match(r"^\s+(\w+)\s+(http://\S+/\?token=\S+)$", line))
            }
            page_a = urls["alice"]
            second = _Process(argv(second_line), tmp_path)
            started.append(second)
            wait_until(lambda: second.printed("Open "), 60, "worker B's banner")
            page_b = page_a.replace(f":{ports['8000']}/", f":{ports['8001']}/")

            async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as client:
                assert (await client.get(page_b)).status_code == 200  # the page, same token

                async def same_figure() -> bool:
                    a = await client.get(page_a.replace("/?token=", "/networth?token="))
                    b = await client.get(page_b.replace("/?token=", "/networth?token="))
                    assert b.status_code == 200, b.text
                    return bool(a.json() == b.json())

                await wait_until_async(same_figure, 20, "the same net worth on both workers")

            frames_a: dict[str, str] = {}
            frames_b: dict[str, str] = {}
            readers = [
                asyncio.create_task(_read_frames(url.replace("/?token=", "/events?token="), f))
                for url, f in ((page_a, frames_a), (page_b, frames_b))
            ]
            try:

                def both_have_a_networth_frame() -> bool:
                    common = frames_a.keys() & frames_b.keys()
                    found = any("networth" in frames_a[i] for i in common)
                    return found or any(reader.done() for reader in readers)

                await wait_until_async(
                    both_have_a_networth_frame, 60, "a net-worth frame for alice on both workers"
                )
            finally:
                for reader in readers:
                    reader.cancel()
                results = await asyncio.gather(*readers, return_exceptions=True)
            for result in results:
                if not isinstance(result, asyncio.CancelledError):
                    raise AssertionError(f"a stream ended: {result!r}")
            common = frames_a.keys() & frames_b.keys()
            assert common
            assert {i: frames_a[i] for i in common} == {i: frames_b[i] for i in common}
            for worker in (second, first):
                assert worker.stop() == 0, "\n".join(worker.lines)
        finally:
            for process in reversed(started):
                if process.proc.poll() is None:
                    process.proc.terminate()
                    process.proc.wait(10)


def _pings(port: int) -> bool:
    import redis

    try:
        with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1) as client:
            return bool(client.ping())
    except redis.ConnectionError:
        return False
