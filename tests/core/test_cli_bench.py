"""The ``eventbus bench`` command: tables, ``--json``, ``--plot``, and its failure modes.

Runs use ``--quick`` (two rounds of tiny samples) so they take about a second;
the numbers are meaningless then, and nothing here asserts a timing.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from eventbus.cli import main

LIBRARIES = {"eventbus", "hand loop", "dict.get", "blinker", "pluggy", "pyee", "await loop"}
LIFECYCLE = {"eventbus", "pydantic", "pydantic types-only", "msgspec"}
STEPS = ["construct", "from_change", "encode", "decode"]


@pytest.fixture(name="quick_run", scope="module")
def fixture_quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, str, Path]:
    """One quick run with ``--json`` and ``--plot``: (exit code, stdout, stderr, directory)."""
    out = tmp_path_factory.mktemp("bench")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(
            [
                "bench",
                "--quick",
                "--json",
                str(out / "bench.json"),
                "--plot",
                str(out / "bench.png"),
            ]
        )
    return code, stdout.getvalue(), stderr.getvalue(), out


class TestTable:
    """The printed table of ratios."""

    def test_exit_code_zero(self, quick_run: tuple[int, str, str, Path]) -> None:
        """A quick run succeeds."""
        assert quick_run[0] == 0

    def test_table_has_every_case_and_peer(self, quick_run: tuple[int, str, str, Path]) -> None:
        """One row per case; one column per peer; the targets are listed."""
        out = quick_run[1]
        header = out.splitlines()[0]
        for column in ("eventbus / floor", "eventbus / dict.get", "blinker / eventbus"):
            assert column in header
        assert "pluggy / eventbus" in header
        assert "pyee / eventbus" in header
        counts = [line.split()[1] for line in out.splitlines() if line.startswith("publish_sync ")]
        assert counts == ["0", "1", "3", "10"]
        assert any(line.split()[:3] == ["await", "publish", "3"] for line in out.splitlines())
        assert "Targets:" in out
        assert "at most 2.2x hand loop" in out

    def test_progress_goes_to_stderr(self, quick_run: tuple[int, str, str, Path]) -> None:
        """The progress bar is drawn on stderr, never mixed into the table."""
        assert "eventbus bench" in quick_run[2]
        assert "eventbus bench:" not in quick_run[1]


class TestProgress:
    """The progress display without tqdm."""

    def test_plain_counter_without_tqdm(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without tqdm a plain ``done/total`` counter goes to stderr, ending at the total."""
        monkeypatch.setitem(sys.modules, "tqdm", None)  # what an absent package looks like
        assert main(["bench", "--quick"]) == 0
        err = capsys.readouterr().err
        last = err.strip().split("\r")[-1]
        done, total = last.removeprefix("eventbus bench: ").removesuffix(" samples").split("/")
        assert done == total


class TestJson:
    """``--json PATH`` writes the same numbers."""

    @pytest.fixture(name="doc")
    def fixture_doc(self, quick_run: tuple[int, str, str, Path]) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((quick_run[3] / "bench.json").read_text())
        return data

    def test_schema(self, doc: dict[str, Any]) -> None:
        """Top-level keys, and the fields of results, rows and targets."""
        assert set(doc) == {"meta", "results", "rows", "targets", "lifecycle"}
        assert {"python", "cpu", "platform", "rounds", "min_time_s"} <= set(doc["meta"])
        for result in doc["results"]:
            assert set(result) == {"case", "handlers", "library", "ns_per_call"}
            assert result["ns_per_call"] > 0
        for row in doc["rows"]:
            assert {"case", "handlers", "floor", "vs_floor", "vs_dict_get"} <= set(row)
            assert {"blinker_slower", "pluggy_slower", "pyee_slower"} <= set(row)
        for target in doc["targets"]:
            assert set(target) == {"target", "ratio", "limit", "met"}
            assert isinstance(target["met"], bool)

    def test_every_library_and_count(self, doc: dict[str, Any]) -> None:
        """Every library is measured, the sync ones at 0, 1, 3 and 10 handlers."""
        assert {r["library"] for r in doc["results"]} == LIBRARIES
        sync = {(r["library"], r["handlers"]) for r in doc["results"] if r["case"] == "sync"}
        for lib in ("eventbus", "hand loop", "blinker", "pluggy", "pyee"):
            assert {(lib, n) for n in (0, 1, 3, 10)} <= sync

    def test_rows_match_results(self, doc: dict[str, Any]) -> None:
        """A row's ratio is the quotient of the two results it names."""
        ns = {(r["case"], r["handlers"], r["library"]): r["ns_per_call"] for r in doc["results"]}
        row = next(r for r in doc["rows"] if r["case"] == "publish_sync" and r["handlers"] == 3)
        assert row["vs_floor"] == pytest.approx(
            ns["sync", 3, "eventbus"] / ns["sync", 3, "hand loop"]
        )
        assert row["pluggy_slower"] == pytest.approx(
            ns["sync", 3, "pluggy"] / ns["sync", 3, "eventbus"]
        )


class TestLifecycle:
    """The event lifecycle section: eventbus against pydantic v2 and msgspec."""

    def test_table_section(self, quick_run: tuple[int, str, str, Path]) -> None:
        """One row per step, one column per peer, and the targets against pydantic."""
        out = quick_run[1]
        assert "Event lifecycle" in out
        section = out[out.index("Event lifecycle") :]
        header = next(line for line in section.splitlines() if line.startswith("step "))
        for peer in ("pydantic", "pydantic types-only", "msgspec"):
            assert f"eventbus / {peer}" in header
        for step in STEPS:
            assert any(line.startswith(f"{step} ") for line in section.splitlines())
        assert "decode: at most 1.5x pydantic" in section

    def test_json(self, quick_run: tuple[int, str, str, Path]) -> None:
        """``lifecycle`` holds every (step, library) result, rows of ratios and the targets."""
        doc = json.loads((quick_run[3] / "bench.json").read_text())["lifecycle"]
        assert set(doc) == {"results", "rows", "targets"}
        measured = {(r["step"], r["library"]) for r in doc["results"]}
        assert measured == {(step, lib) for step in STEPS for lib in LIFECYCLE}
        ns = {(r["step"], r["library"]): r["ns_per_call"] for r in doc["results"]}
        decode = next(row for row in doc["rows"] if row["step"] == "decode")
        assert decode["vs_pydantic"] == pytest.approx(
            ns["decode", "eventbus"] / ns["decode", "pydantic"]
        )
        assert all(isinstance(t["met"], bool) for t in doc["targets"])

    @pytest.mark.parametrize("peer", ["pydantic", "msgspec"])
    def test_skipped_with_a_message_without_a_peer(
        self,
        peer: str,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        tmp_path: Path,
    ) -> None:
        """Without pydantic or msgspec: the dispatch table still, the lifecycle skipped, exit 0."""
        monkeypatch.setitem(sys.modules, peer, None)  # what an absent package looks like
        out_json = tmp_path / "bench.json"
        assert main(["bench", "--quick", "--no-progress", "--json", str(out_json)]) == 0
        out = capsys.readouterr().out
        assert f"skipped: {peer} not installed" in out
        assert "pip install 'eventbus[bench]'" in out
        assert "publish_sync" in out
        assert json.loads(out_json.read_text())["lifecycle"] is None


class TestPlot:
    """``--plot PATH`` draws a PNG, or explains the missing extra."""

    def test_png_written(self, quick_run: tuple[int, str, str, Path]) -> None:
        """The file exists and is a PNG."""
        data = (quick_run[3] / "bench.png").read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(data) > 10_000

    def test_missing_matplotlib_is_a_friendly_error(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        """Without matplotlib: exit code 2, the extra named, no measuring and no traceback."""
        monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an absent package looks like
        code = main(["bench", "--quick", "--no-progress", "--plot", str(tmp_path / "x.png")])
        err = capsys.readouterr()
        assert code == 2
        assert "pip install 'eventbus[bench]'" in err.err
        assert err.out == ""
        assert not (tmp_path / "x.png").exists()


class TestArguments:
    """Argument checking and lazy imports."""

    @pytest.mark.parametrize("args", [["--rounds", "0"], ["--min-time", "-1"]])
    def test_non_positive_settings_rejected(
        self, args: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``--rounds`` and ``--min-time`` must be positive; argparse names the option."""
        with pytest.raises(SystemExit) as exc:
            main(["bench", *args])
        assert exc.value.code == 2
        assert args[0] in capsys.readouterr().err

    def test_cli_import_does_not_load_the_benchmark(self) -> None:
        """``eventbus plugins`` stays fast: importing the CLI leaves the bench module unloaded."""
        probe = "import sys, eventbus.cli; print('eventbus.cli._bench' in sys.modules)"
        result = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
        )
        assert result.stdout.strip() == "False"
