"""One order for the fleet, whatever the interleaving: a Hypothesis state machine.

Two workers on one redis-server publish roots (some of which derive an event in
the fleet), with Redis outages in between. At the end both fleet logs are
identical (events and positions), each worker's own events appear in its
publishing order, positions are the entry ids (``.k`` for derived events), and
local handlers ran exactly where they should.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar
from uuid import uuid4

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    precondition,
    rule,
    run_state_machine_as_test,
)

from eventbus import DomainEvent, EventBus
from eventbus.events import derived_id
from eventbus.portfolio import AccountBalanceUpdated, AccountHoldingsUpdated
from eventbus_redis import RedisBridgePlugin
from tests.plugins.redis.conftest import RedisServer
from tests.plugins.redis.helpers import Worker, balance, holdings

T = TypeVar("T")


def derive_holdings(bus: EventBus) -> None:
    """A fleet handler that derives one holdings update from every balance update."""

    def on_balance(event: AccountBalanceUpdated) -> None:
        bus.publish_sync(
            AccountHoldingsUpdated(
                event_id=derived_id(event, "h"),
                occurred_at=event.occurred_at,
                user_id=event.user_id,
                account_id=event.account_id,
                holdings_count=0,
                created_count=0,
                updated_count=0,
                deactivated_count=0,
            )
        )

    bus.subscribe(AccountBalanceUpdated, on_balance, fleet=True)


class FleetOrder(RuleBasedStateMachine):
    """Two workers, one stream per example, and a server that may go down."""

    server: RedisServer  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.stream = f"order:{uuid4().hex}"
        self.workers = [self.run(self._worker()) for _ in range(2)]
        self.roots: list[list[DomainEvent]] = [[], []]
        self.down = False
        self.outages = 0

    def run(self, coro: Awaitable[T]) -> T:
        """Run ``coro`` on the machine's loop."""
        return self.runner.run(coro)  # type: ignore[arg-type]

    async def _worker(self) -> Worker:
        bus = EventBus(raise_errors=True)
        plugin = RedisBridgePlugin(
            self.server.url, stream=self.stream, backoff_max=0.05, bootstrap_timeout=0.5
        )
        worker = Worker(bus, plugin)
        worker.record()
        derive_holdings(bus)
        bus.register_plugin(plugin, name="redis")
        await bus.start()
        return worker

    def expected(self) -> int:
        """Fleet deliveries every worker must end with: roots plus one per balance root."""
        roots = [e for published in self.roots for e in published]
        return len(roots) + sum(isinstance(e, AccountBalanceUpdated) for e in roots)

    async def quiesce(self) -> None:
        """Wait until every worker has delivered everything published so far."""
        target = self.expected()
        for worker in self.workers:
            await worker.delivered(target, what="the fleet to deliver every root")

    @rule(who=st.integers(0, 1), kinds=st.lists(st.booleans(), min_size=1, max_size=4))
    def publish(self, who: int, kinds: list[bool]) -> None:
        """Publish roots on one worker: ``True`` a balance update (derives one more)."""
        worker = self.workers[who]
        events = [balance(uuid4(), "1") if kind else holdings() for kind in kinds]
        before = len(worker.local)
        for event in events:
            self.run(worker.bus.publish(event))
        self.roots[who] += events
        # Local handlers ran at publish time, outage or not (between them, the
        # reader may have delivered entries whose derived events run them too).
        fresh = set(events)
        assert [e for e in worker.local[before:] if e in fresh] == events

    @precondition(lambda self: not self.down and self.outages < 2)
    @rule()
    def redis_down(self) -> None:
        """Stop redis-server once both readers have every entry (a restart empties it)."""
        self.run(self.quiesce())
        self.server.stop()
        self.down, self.outages = True, self.outages + 1

    @precondition(lambda self: self.down)
    @rule()
    def redis_up(self) -> None:
        """Start redis-server again: the buffered roots are appended and delivered."""
        self.server.start()
        self.down = False

    def teardown(self) -> None:
        """Both fleet logs identical, publishing order kept, positions right, then close."""
        try:
            if self.down:
                self.redis_up()
            self.run(self.quiesce())
            a, b = self.workers
            assert a.fleet == b.fleet
            for worker, roots in zip(self.workers, self.roots, strict=True):
                mine = set(roots)
                assert [e for e in worker.fleet_events if e in mine] == roots
                # Local handlers: own roots, and the events derived from own entries.
                fleet = worker.fleet
                derived = [  # a derived event follows its entry's event (depth first)
                    e
                    for i, (position, e) in enumerate(fleet)
                    if position is not None and "." in position and fleet[i - 1][1] in mine
                ]
                assert [e for e in worker.local if e in mine] == roots
                assert [e for e in worker.local if e not in mine] == derived
            check_positions(a.positions)
        finally:
            for worker in self.workers:
                self.run(worker.bus.aclose())
            self.runner.close()


def check_positions(positions: list[str | None]) -> None:
    """Entry ids ascend; each derived position is its entry's id plus ``.1``."""
    entry = None
    for position in positions:
        assert position is not None
        base, dot, k = position.partition(".")
        if dot:
            assert (base, k) == (entry, "1")
        else:
            if entry is not None:
                ms, seq = map(int, entry.split("-"))
                assert tuple(map(int, base.split("-"))) > (ms, seq)
            entry = base


class TestOneOrder:
    """The state machine, against one real redis-server."""

    def test_state_machine(self, redis_server: RedisServer) -> None:
        """Random publishes on two workers and outages: one order, on both workers."""
        FleetOrder.server = redis_server
        run_state_machine_as_test(  # type: ignore[no-untyped-call]
            FleetOrder,
            settings=settings(
                max_examples=8,
                stateful_step_count=8,
                deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture],
            ),
        )
