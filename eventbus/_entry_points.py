"""Finding and importing plugins from the ``eventbus`` entry-point group.

Discovery only: which entry points to load (not blocked, not registered
already, no name taken by another distribution) and importing one with every
failure, ``SystemExit`` included, wrapped in a `PluginLoadError` that names
the entry point and its distribution. Registering what was imported is the
plugin host's job (module ``_plugins``).
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Final

from eventbus.exceptions import PluginLoadError

__all__ = [
    "BLOCK_ENV",
    "DISABLE_ENV",
    "autoload_disabled",
    "blocked_by_env",
    "dist_label",
    "load",
    "to_load",
]

_log = logging.getLogger("eventbus")

#: Set to 1 (or true, yes, on) to make ``load_entry_points`` load nothing.
DISABLE_ENV: Final = "EVENTBUS_DISABLE_PLUGIN_AUTOLOAD"
#: Comma-separated plugin names ``load_entry_points`` skips.
BLOCK_ENV: Final = "EVENTBUS_BLOCK_PLUGINS"


def autoload_disabled() -> bool:
    """Whether ``EVENTBUS_DISABLE_PLUGIN_AUTOLOAD`` turns entry-point loading off."""
    disabled = os.environ.get(DISABLE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}
    if disabled:
        _log.info("plugin autoload disabled by %s", DISABLE_ENV)
    return disabled


def blocked_by_env() -> frozenset[str]:
    """The names in ``EVENTBUS_BLOCK_PLUGINS``."""
    return frozenset(n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip())


def dist_label(ep: EntryPoint) -> str:
    """``"name version"`` of the distribution declaring ``ep``."""
    dist = ep.dist
    return f"{dist.name} {dist.version}" if dist is not None else "<unknown distribution>"


def load(ep: EntryPoint) -> object:
    """Import ``ep`` (instantiating a class), or raise `PluginLoadError` naming it."""
    try:
        obj = ep.load()
        return obj() if inspect.isclass(obj) else obj
    except (Exception, SystemExit) as exc:
        raise PluginLoadError(ep.name, ep.value, dist_label(ep), exc) from exc


def to_load(
    group: str, blocked: frozenset[str], registered: Mapping[str, EntryPoint | None]
) -> list[EntryPoint]:
    """``group``'s entry points to load: not blocked, not registered already.

    Args:
        group: The entry-point group.
        blocked: Names never to load.
        registered: Names registered already, with the entry point each came
            from (``None`` for a plugin registered by hand).
    """
    todo: dict[str, EntryPoint] = {}
    for ep in sorted(entry_points(group=group), key=lambda ep: ep.name):
        if ep.name in blocked:
            _log.info("plugin %r (%s) is blocked; not loading it", ep.name, dist_label(ep))
            continue
        if ep.name not in registered and ep.name not in todo:
            todo[ep.name] = ep
            continue
        # Loaded already (a second call), or the name is taken: by a plugin
        # registered by hand (deliberate), or by another distribution's entry
        # point (a conflict the user must see).
        taken = todo.get(ep.name) if ep.name not in registered else registered[ep.name]
        if taken is not None and (taken.value, dist_label(taken)) != (ep.value, dist_label(ep)):
            _log.warning(
                "plugin %r from %s (%s) not loaded: the name is taken by %s (%s)",
                ep.name,
                dist_label(ep),
                ep.value,
                dist_label(taken),
                taken.value,
            )
    return list(todo.values())
