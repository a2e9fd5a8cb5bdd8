"""Static typing: mypy --strict accepts correct handlers and rejects mismatched ones.

A snippet is type-checked with `mypy.api` in isolation (its own empty config,
no incremental cache), and the errors are compared line by line.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from mypy import api

pytestmark = pytest.mark.timeout(120)

SNIPPET = textwrap.dedent(
    """
    from eventbus import DomainEvent, EventBus, Subscription
    from eventbus.portfolio import AccountBalanceUpdated, AccountHoldingsUpdated

    bus = EventBus()


    def takes_int(x: int) -> None: ...
    def takes_balance(e: AccountBalanceUpdated) -> None: ...
    def takes_base(e: DomainEvent) -> None: ...
    async def takes_balance_async(e: AccountBalanceUpdated) -> None: ...
    def takes_holdings(e: AccountHoldingsUpdated) -> None: ...


    bus.subscribe(AccountBalanceUpdated, takes_int)  # BAD: int
    bus.subscribe(AccountBalanceUpdated, takes_holdings)  # BAD: sibling event
    bus.subscribe(DomainEvent, takes_balance)  # BAD: too narrow for every event
    sub: Subscription[AccountBalanceUpdated] = bus.subscribe(AccountBalanceUpdated, takes_balance)
    bus.subscribe(AccountBalanceUpdated, takes_base)
    bus.subscribe(AccountBalanceUpdated, takes_balance_async)
    bus.subscribe(DomainEvent, takes_base)
    bus.subscribe(AccountBalanceUpdated, lambda e: None, priority=2, once=True)


    @bus.on(AccountBalanceUpdated)
    def decorated(e: AccountBalanceUpdated) -> None: ...


    @bus.on(AccountBalanceUpdated)  # BAD: decorator on a mismatched handler
    def decorated_bad(e: int) -> None: ...


    @bus.on(AccountBalanceUpdated)
    def returns_a_value(e: AccountBalanceUpdated, *, retries: int = 3) -> int:
        return retries


    def calls_it(e: AccountBalanceUpdated) -> int:
        return returns_a_value(e, retries=5)

    """
)


def _run_mypy(tmp_path: Path, source: str) -> tuple[str, int]:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(source, encoding="utf-8")
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\n", encoding="utf-8")
    stdout, stderr, status = api.run(
        [
            str(snippet),
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            "--config-file",
            str(config),
            "--no-error-summary",
            "--show-error-codes",
        ]
    )
    assert not stderr, stderr
    return stdout, status


class TestHandlerTyping:
    """subscribe()/on() tie the handler's parameter type to the event type."""

    def test_mismatched_handlers_rejected_correct_ones_accepted(self, tmp_path: Path) -> None:
        """Exactly the lines marked BAD fail, each with the expected arg-type message."""
        source = SNIPPET
        stdout, status = _run_mypy(tmp_path, source)
        lines = source.splitlines()
        bad = {n for n, line in enumerate(lines, start=1) if "# BAD" in line}
        errors = {
            int(m.group(1)): m.group(2)
            for m in re.finditer(r"snippet\.py:(\d+): error: (.*)", stdout)
        }
        assert status == 1
        assert set(errors) == bad, stdout
        by_reason = {lines[n - 1].split("# BAD: ")[1]: message for n, message in errors.items()}
        assert by_reason["int"] == (
            'Argument 2 to "subscribe" of "EventBus" has incompatible type '
            '"Callable[[int], None]"; expected '
            '"Callable[[AccountBalanceUpdated], object]"  [arg-type]'
        )
        assert '"Callable[[AccountHoldingsUpdated], None]"' in by_reason["sibling event"]
        assert 'expected "Callable[[DomainEvent], ' in by_reason["too narrow for every event"]
        assert '"Callable[[int], None]"' in by_reason["decorator on a mismatched handler"]

    def test_correct_usage_is_clean(self, tmp_path: Path) -> None:
        """Without the BAD lines, mypy --strict reports nothing; reveal_type shows generics."""
        kept = [line for line in SNIPPET.splitlines() if "# BAD" not in line]
        # Drop the function a BAD decorator line was decorating.
        kept = [line for line in kept if "decorated_bad" not in line]
        kept.append("reveal_type(bus.subscribe(AccountBalanceUpdated, takes_base))")
        kept.append("reveal_type(returns_a_value)")
        stdout, status = _run_mypy(tmp_path, "\n".join(kept) + "\n")
        assert status == 0, stdout
        assert (
            'Revealed type is "eventbus._subscription.Subscription'
            '[eventbus.portfolio.AccountBalanceUpdated]"' in stdout
        )
        # bus.on keeps the return type and the keyword parameter (the first
        # parameter's name is what standard typing cannot keep).
        assert (
            'Revealed type is "def (eventbus.portfolio.AccountBalanceUpdated, *, '
            'retries: int =) -> int"' in stdout
        ), stdout
