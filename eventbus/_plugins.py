"""Plugin management: pluggy registration, entry-point loading, lifecycle hooks.

pluggy handles discovery, validation and lifecycle only, never per event: a
pluggy hook call costs more than a whole publish. Improvements over bare
pluggy:

* entry-point loading is wrapped: a plugin that fails to import raises
  `PluginLoadError` naming the entry point and its distribution (a
  ``SystemExit`` raised on import too: it must not end the process
  anonymously);
* `EventBus.load_entry_points` is all-or-nothing: every entry point is
  imported first, then each plugin is registered; if any of that fails, the
  plugins this call registered are unregistered again (their subscriptions
  cancelled) before the error propagates;
* registration is atomic: if ``eventbus_register`` raises, every subscription
  it made is cancelled and the plugin is unregistered;
* an entry point naming a *class* is instantiated per bus, so plugin state is
  never shared between buses.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint
from typing import TYPE_CHECKING, Any, Final, TypeVar, final, overload

import pluggy

from eventbus import hookspecs
from eventbus._entry_points import autoload_disabled, blocked_by_env, dist_label, load, to_load
from eventbus._subscription import Subscription, handler_name
from eventbus.exceptions import PluginNotFoundError, PluginRegistrationError

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

    from eventbus._bus import EventBus
    from eventbus._observed import DispatchObserver

__all__ = ["PluginHost", "PluginInfo", "PluginMethods", "SubscriptionInfo", "acting_plugin"]

# The (bus, plugin name, task) whose hook is running in this context. A
# ContextVar, not a bus attribute: another thread, or another task while an
# async startup hook awaits, is not that plugin. The task is recorded because
# tasks the hook creates copy the variable and outlive the hook (the Redis
# bridge's reader); what they subscribe later is not the plugin's doing.
_acting: ContextVar[tuple[object, str, object] | None] = ContextVar("eventbus_plugin", default=None)


def _current_task() -> object:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop in this thread
        return None


def acting_plugin(bus: object) -> str | None:
    """The name of ``bus``'s plugin whose hook is running right here, if any.

    `EventBus.subscribe` credits subscriptions made then to that plugin, so
    `EventBus.plugins` lists them and unregistering the plugin cancels them.
    """
    acting = _acting.get()
    if acting is None or acting[0] is not bus or acting[2] is not _current_task():
        return None
    return acting[1]


_log = logging.getLogger("eventbus")

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    """One subscription made by a plugin.

    Attributes:
        fleet: Whether it is a fleet handler (every worker, in the fleet's order).
    """

    event_type: str
    handler: str
    priority: int
    is_async: bool
    fleet: bool = False


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """What `EventBus.plugins` reports about a registered plugin.

    Attributes:
        name: Registered name (the entry point's name for loaded plugins).
        distribution: The distribution that declared it, or ``None`` if registered by hand.
        version: That distribution's version, or ``None``.
        entry_point: ``"module:attr"`` of the entry point, or ``None``.
        hooks: The ``eventbus_*`` hooks the plugin implements.
        subscriptions: The subscriptions it made and still holds.
    """

    name: str
    distribution: str | None
    version: str | None
    entry_point: str | None
    hooks: tuple[str, ...]
    subscriptions: tuple[SubscriptionInfo, ...] = field(default=())


@dataclass(slots=True)
class _Record:
    plugin: object
    entry_point: EntryPoint | None
    subs: list[Subscription[Any]] = field(default_factory=list)
    observers: list[DispatchObserver] = field(default_factory=list)


@final
class PluginHost:
    """The bus's pluggy `PluginManager` plus eventbus bookkeeping."""

    __slots__ = ("_blocked", "_bus", "_lock", "_pm", "_records")

    def __init__(self, bus: EventBus) -> None:
        self._bus: Final = bus
        self._pm: Final = pluggy.PluginManager("eventbus")
        self._pm.add_hookspecs(hookspecs)
        self._records: dict[str, _Record] = {}
        self._blocked: set[str] = set()
        self._lock: Final = threading.RLock()

    # ---------------------------------------------------------------- registration

    def register(
        self, plugin: object, name: str | None = None, entry_point: EntryPoint | None = None
    ) -> str:
        with self._lock:
            name = name or self._pm.get_canonical_name(plugin)
            if name in self._records:
                raise PluginRegistrationError(name, "a plugin with this name is already registered")
            # The same object may already be registered under another name:
            # pluggy refuses it then, and that registration must be left alone.
            already = self._pm.is_registered(plugin)
            try:
                self._pm.register(plugin, name)
                self._pm.check_pending()
            except (ValueError, pluggy.PluginValidationError) as exc:
                if not already and self._pm.is_registered(plugin):
                    self._pm.unregister(plugin)
                raise PluginRegistrationError(name, f"rejected by pluggy: {exc}") from exc
            record = self._records[name] = _Record(plugin, entry_point)
            bus = self._bus
            token = _acting.set((bus, name, _current_task()))
            try:
                for impl in self._impls("eventbus_register", [plugin]):
                    impl.function(bus=bus)
            except BaseException as exc:
                # KeyboardInterrupt too: never leave a half-registered plugin.
                self._undo(record)
                del self._records[name]
                self._pm.unregister(plugin)
                if not isinstance(exc, Exception):
                    raise
                raise PluginRegistrationError(
                    name, f"eventbus_register raised {type(exc).__name__}: {exc}"
                ) from exc
            finally:
                _acting.reset(token)
            return name

    def record(self, name: str, sub: Subscription[Any]) -> None:
        record = self._records.get(name)
        if record is not None:
            record.subs.append(sub)

    def record_observer(self, name: str, observer: DispatchObserver) -> None:
        """Credit ``observer`` to plugin ``name``: unregistering it removes the observer."""
        record = self._records.get(name)
        if record is not None:
            record.observers.append(observer)

    def _undo(self, record: _Record) -> None:
        for sub in record.subs:
            sub.cancel()
        for observer in record.observers:
            self._bus.remove_observer(observer)

    def unregister(self, name: str) -> None:
        with self._lock:
            record = self._records.pop(name, None)
            if record is None:
                raise KeyError(f"no plugin named {name!r} is registered")
            self._undo(record)
            self._pm.unregister(record.plugin)

    def block(self, name: str) -> None:
        with self._lock:
            self._blocked.add(name)
            if name in self._records:
                self.unregister(name)

    def blocked(self) -> frozenset[str]:
        return frozenset(self._blocked | blocked_by_env())

    def load_entry_points(self, group: str) -> list[str]:
        if autoload_disabled():
            return []
        # Import every plugin first (nothing registered yet), then register;
        # on any failure, unregister what this call registered.
        taken = {name: r.entry_point for name, r in self._records.items()}
        plugins = [(ep, load(ep)) for ep in to_load(group, self.blocked(), taken)]
        loaded: list[str] = []
        try:
            for ep, plugin in plugins:
                loaded.append(self.register(plugin, ep.name, ep))
                _log.debug("loaded plugin %r from %s", ep.name, dist_label(ep))
        except BaseException:
            for name in reversed(loaded):
                self.unregister(name)
            raise
        return loaded

    def get(self, name: str) -> object | None:
        record = self._records.get(name)
        return None if record is None else record.plugin

    def get_instance(self, cls: type[P]) -> P:
        """The first registered plugin that is a ``cls``, in registration order.

        Raises:
            PluginNotFoundError: None is.
        """
        for record in self._records.values():
            if isinstance(record.plugin, cls):
                return record.plugin
        raise PluginNotFoundError(cls)

    # ---------------------------------------------------------------- lifecycle

    def _impls(self, hook: str, only: list[object] | None = None) -> list[pluggy.HookImpl]:
        """The ``hook`` implementations, in registration order (of ``only`` plugins)."""
        caller: pluggy.HookCaller = getattr(self._pm.hook, hook)
        return [
            impl
            for impl in caller.get_hookimpls()
            if only is None or any(impl.plugin is p for p in only)
        ]

    async def startup(self) -> None:
        started: list[object] = []
        try:
            for impl in self._impls("eventbus_startup"):
                # Subscriptions made while starting are the plugin's too.
                token = _acting.set((self._bus, impl.plugin_name, _current_task()))
                try:
                    result = impl.function(bus=self._bus)
                    if inspect.isawaitable(result):
                        await result
                finally:
                    _acting.reset(token)
                started.append(impl.plugin)
        except BaseException:
            # Leave nothing half-started: shut down those that did start, then fail.
            await self.shutdown(only=started)
            raise

    async def shutdown(self, only: list[object] | None = None) -> None:
        for impl in reversed(self._impls("eventbus_shutdown", only)):
            try:
                result = impl.function(bus=self._bus)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                _log.exception(
                    "eventbus_shutdown of plugin %r (%s) failed",
                    impl.plugin_name,
                    handler_name(impl.function),
                )

    # ---------------------------------------------------------------- introspection

    def describe(self) -> list[PluginInfo]:
        infos = []
        for name, record in list(self._records.items()):
            ep = record.entry_point
            dist = ep.dist if ep is not None else None
            hooks = tuple(
                sorted(
                    caller.name
                    for caller in self._pm.get_hookcallers(record.plugin) or ()
                    if caller.name.startswith("eventbus_")
                )
            )
            subs = tuple(
                SubscriptionInfo(
                    event_type=s.event_type.__qualname__,
                    handler=handler_name(s.handler),
                    priority=s.priority,
                    is_async=s.is_async,
                    fleet=s.fleet,
                )
                for s in record.subs
                if s.active
            )
            infos.append(
                PluginInfo(
                    name=name,
                    distribution=dist.name if dist is not None else None,
                    version=dist.version if dist is not None else None,
                    entry_point=ep.value if ep is not None else None,
                    hooks=hooks,
                    subscriptions=subs,
                )
            )
        return infos


class PluginMethods:
    """`EventBus`'s plugin and lifecycle methods (kept here: one concept per module)."""

    __slots__ = ()  # the state lives in EventBus's slots
    _plugins: PluginHost

    async def start(self) -> None:
        """Run every plugin's ``eventbus_startup``, in registration order."""
        raise NotImplementedError  # EventBus binds its loop first

    def register_plugin(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object (module or instance) and call its ``eventbus_register``.

        Atomic: if registration fails, the plugin's subscriptions are cancelled and
        it is unregistered.

        Returns:
            The name it was registered under.

        Raises:
            PluginRegistrationError: Hook validation or ``eventbus_register`` failed.
        """
        return self._plugins.register(plugin, name)

    def unregister_plugin(self, name: str) -> None:
        """Unregister a plugin by name, cancelling every subscription it made.

        Observers it added (`add_observer`, while one of its hooks ran) are removed.
        """
        self._plugins.unregister(name)

    def load_entry_points(self, group: str = "eventbus") -> list[str]:
        """Load and register plugins from the ``eventbus`` entry-point group.

        Skips blocked names (`block_plugin`, ``EVENTBUS_BLOCK_PLUGINS=a,b``) and
        already-registered ones; does nothing if ``EVENTBUS_DISABLE_PLUGIN_AUTOLOAD=1``.

        All or nothing: every entry point is imported before any is
        registered, and if one fails to import or to register, the plugins
        this call registered are unregistered again (their subscriptions
        cancelled) before the error propagates.

        Returns:
            The names registered by this call.

        Raises:
            PluginLoadError: An entry point failed to import, or raised
                ``SystemExit`` doing so (names it and its distribution).
            PluginRegistrationError: A loaded plugin failed to register.
        """
        return self._plugins.load_entry_points(group)

    def block_plugin(self, name: str) -> None:
        """Never load the plugin ``name``; unregister it if it is registered."""
        self._plugins.block(name)

    def plugins(self) -> list[PluginInfo]:
        """Describe every registered plugin (name, distribution, hooks, subscriptions)."""
        return self._plugins.describe()

    @overload
    def get_plugin(self, plugin: type[P]) -> P: ...

    @overload
    def get_plugin(self, plugin: str) -> object | None: ...

    def get_plugin(self, plugin: type[P] | str) -> P | object | None:
        """Return a registered plugin: typed by its class, or untyped by its name.

            sse = bus.get_plugin(SSEPlugin)     # an SSEPlugin, or PluginNotFoundError
            bus.get_plugin("sse")               # the object registered as "sse", or None

        Raises:
            PluginNotFoundError: Given a class, no registered plugin is an
                instance of it (a `LookupError` naming the class).
        """
        if isinstance(plugin, type):
            return self._plugins.get_instance(plugin)
        return self._plugins.get(plugin)

    async def aclose(self) -> None:
        """Run every plugin's ``eventbus_shutdown``, in reverse registration order."""
        await self._plugins.shutdown()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
