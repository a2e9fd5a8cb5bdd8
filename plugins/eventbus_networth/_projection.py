"""`NetWorthProjection`: the aggregator's state as an `eventbus.Projection`.

With a sequencer attached (the Redis bridge), the aggregator is fed by a fleet
handler, so its state is a function of the fleet's stream. A worker that joins
late restores it from a snapshot taken at a stream position by another worker,
then catches up from there; the bytes are the aggregator's own snapshot format
(module ``_snapshot``), validated on restore.
"""

from __future__ import annotations

from typing import Final, final

from eventbus_networth._aggregator import NetWorthAggregator

__all__ = ["PROJECTION_NAME", "NetWorthProjection"]

#: The projection's stable name: the key its snapshots are kept under.
PROJECTION_NAME: Final = "networth"


@final
class NetWorthProjection:
    """Snapshots and restores a `NetWorthAggregator` for the bus.

    Args:
        aggregator: The state to snapshot and restore.

    Attributes:
        name: ``"networth"``.
    """

    __slots__ = ("_aggregator", "name")

    def __init__(self, aggregator: NetWorthAggregator) -> None:
        self.name: str = PROJECTION_NAME
        self._aggregator: Final = aggregator

    def snapshot(self) -> bytes:
        """Every user's state (`NetWorthAggregator.snapshot`)."""
        return self._aggregator.snapshot()

    def restore(self, data: bytes) -> None:
        """Replace every user's state (`NetWorthAggregator.restore`).

        Raises:
            ValueError: ``data`` is not a valid snapshot for this base currency;
                the state is then unchanged.
        """
        self._aggregator.restore(data)

    def __repr__(self) -> str:
        return f"<NetWorthProjection {self._aggregator!r}>"
