"""The pytest-benchmark suites (``pytest benchmarks``); not part of the unit test run."""
