"""Plugins: entry-point discovery, blocking, atomic registration, lifecycle hooks.

Entry-point tests build *real* distributions: a ``<name>-<version>.dist-info``
directory (``METADATA`` + ``entry_points.txt``) and the plugin module, in a
temporary directory put on ``sys.path``, so `importlib.metadata` discovers them
exactly as it would an installed package. Most tests use a private entry-point
group, so the first-party plugins (declared by eventbus itself) never interfere;
the tests on the real ``"eventbus"`` group block the other names by env var.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import logging
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from eventbus import (
    EventBus,
    PluginInfo,
    PluginLoadError,
    PluginRegistrationError,
    SubscriptionInfo,
    hookimpl,
)
from eventbus.portfolio import AccountBalanceUpdated
from tests.core.samples import Ping, balance

_unique = itertools.count()

PLUGIN_SOURCE = '''
"""A fake third-party eventbus plugin."""
from eventbus import hookimpl
from eventbus.portfolio import AccountBalanceUpdated

RECEIVED = []


class Plugin:
    def __init__(self):
        self.started = False

    @hookimpl
    def eventbus_register(self, bus):
        bus.subscribe(AccountBalanceUpdated, self.on_balance, priority=3)

    @hookimpl
    async def eventbus_startup(self, bus):
        self.started = True

    def on_balance(self, event):
        RECEIVED.append(event)
'''


@dataclass
class FakeDist:
    """A distribution written to a temporary site directory."""

    name: str
    version: str
    module: str
    group: str


@pytest.fixture(name="site")
def _site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty directory on sys.path; modules imported from it are forgotten afterwards."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    before = set(sys.modules)
    yield site
    for name in set(sys.modules) - before:
        if getattr(sys.modules[name], "__file__", "") and str(site) in str(
            sys.modules[name].__file__
        ):
            del sys.modules[name]


@pytest.fixture(name="group")
def _group() -> str:
    """A private entry-point group name, unique to the test."""
    return f"eventbus_test_{next(_unique)}"


def make_dist(
    site: Path,
    name: str,
    version: str,
    entry_points_by_group: dict[str, dict[str, str]],
    modules: dict[str, str],
) -> None:
    """Write a distribution (dist-info + modules) that importlib.metadata discovers."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = []
    for group, eps in entry_points_by_group.items():
        lines.append(f"[{group}]")
        lines.extend(f"{ep_name} = {value}" for ep_name, value in eps.items())
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines), encoding="utf-8")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    importlib.invalidate_caches()


@pytest.fixture(name="fake")
def _fake(site: Path, group: str) -> FakeDist:
    """A working plugin distribution 'fakeplugin-1.0' declaring entry point 'fake'."""
    module = f"fakeplugin_mod_{next(_unique)}"
    make_dist(
        site, "fakeplugin", "1.0", {group: {"fake": f"{module}:Plugin"}}, {module: PLUGIN_SOURCE}
    )
    return FakeDist("fakeplugin", "1.0", module, group)


class TestEntryPoints:
    """load_entry_points() discovers, instantiates and registers plugins."""

    async def test_real_distribution_is_loaded_and_described(self, fake: FakeDist) -> None:
        """The fake distribution's plugin is registered, subscribed, reported, started."""
        bus = EventBus()
        assert bus.load_entry_points(group=fake.group) == ["fake"]
        plugin = bus.get_plugin("fake")
        assert type(plugin).__module__ == fake.module
        assert bus.plugins() == [
            PluginInfo(
                name="fake",
                distribution="fakeplugin",
                version="1.0",
                entry_point=f"{fake.module}:Plugin",
                hooks=("eventbus_register", "eventbus_startup"),
                subscriptions=(
                    SubscriptionInfo(
                        event_type="AccountBalanceUpdated",
                        handler=f"{fake.module}.Plugin.on_balance",
                        priority=3,
                        is_async=False,
                    ),
                ),
            )
        ]
        event = balance()
        bus.publish_sync(event)
        received = sys.modules[fake.module].RECEIVED
        assert received == [event]
        async with bus:
            assert plugin.started  # type: ignore[attr-defined]

    def test_class_instantiated_per_bus(self, fake: FakeDist) -> None:
        """Each bus gets its own plugin instance: no state shared between buses."""
        first, second = EventBus(), EventBus()
        first.load_entry_points(group=fake.group)
        second.load_entry_points(group=fake.group)
        assert first.get_plugin("fake") is not second.get_plugin("fake")

    def test_loading_twice_is_a_no_op(self, fake: FakeDist) -> None:
        """A second load skips already-registered names."""
        bus = EventBus()
        assert bus.load_entry_points(group=fake.group) == ["fake"]
        assert bus.load_entry_points(group=fake.group) == []
        assert len(bus.subscriptions()) == 1

    def test_module_object_as_plugin(self, site: Path, group: str) -> None:
        """An entry point naming a module registers the module itself."""
        module = f"fakemodplugin_{next(_unique)}"
        source = """
            from eventbus import hookimpl
            from eventbus.portfolio import AccountBalanceUpdated

            @hookimpl
            def eventbus_register(bus):
                bus.subscribe(AccountBalanceUpdated, lambda e: None)
        """
        make_dist(site, "fakemod", "0.3", {group: {"modplug": module}}, {module: source})
        bus = EventBus()
        assert bus.load_entry_points(group=group) == ["modplug"]
        assert bus.get_plugin("modplug") is sys.modules[module]
        [info] = bus.plugins()
        assert (info.distribution, info.version, info.entry_point) == ("fakemod", "0.3", module)

    def test_real_eventbus_group(
        self, fake: FakeDist, site: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """On the real "eventbus" group, with every other name blocked, only ours loads."""
        module = f"fakereal_{next(_unique)}"
        make_dist(
            site,
            "fakereal",
            "2.5",
            {"eventbus": {"fakereal": f"{module}:Plugin"}},
            {module: PLUGIN_SOURCE},
        )
        others = sorted({ep.name for ep in entry_points(group="eventbus")} - {"fakereal"})
        assert {"logging", "networth", "sse", "redis"} <= set(others)  # first-party ones
        monkeypatch.setenv("EVENTBUS_BLOCK_PLUGINS", ",".join(others))
        bus = EventBus()
        assert bus.load_entry_points() == ["fakereal"]
        assert [(p.name, p.distribution, p.version) for p in bus.plugins()] == [
            ("fakereal", "fakereal", "2.5")
        ]


class TestBrokenEntryPoints:
    """A plugin that cannot be imported raises PluginLoadError naming it and its distribution."""

    @pytest.mark.parametrize(
        ("value", "source", "cause"),
        [
            ("{module}:Plugin", "import not_a_real_module_xyz\n", "ModuleNotFoundError"),
            ("{module}:Plugin", "raise RuntimeError('plugin import exploded')\n", "RuntimeError"),
            ("{module}:Missing", "X = 1\n", "AttributeError"),
            ("no_such_module_{module}:Plugin", "", "ModuleNotFoundError"),
        ],
        ids=["import-error", "raises-on-import", "missing-attribute", "missing-module"],
    )
    def test_load_error_names_entry_point_and_distribution(
        self, site: Path, group: str, value: str, source: str, cause: str
    ) -> None:
        """The message names the entry point, its target, the distribution and the cause."""
        module = f"brokenplugin_{next(_unique)}"
        target = value.format(module=module)
        make_dist(site, "brokendist", "4.2", {group: {"broken": target}}, {module: source})
        bus = EventBus()
        with pytest.raises(PluginLoadError) as info:
            bus.load_entry_points(group=group)
        message = str(info.value)
        assert "'broken'" in message
        assert target in message
        assert "brokendist 4.2" in message
        assert cause in message
        assert info.value.entry_point == "broken"
        assert info.value.distribution == "brokendist 4.2"
        assert isinstance(info.value.__cause__, Exception)
        assert bus.plugins() == []

    def test_broken_plugin_can_be_blocked(self, site: Path, group: str) -> None:
        """Blocking a broken plugin's name lets the others load."""
        module = f"brokenplugin_{next(_unique)}"
        good = f"goodplugin_{next(_unique)}"
        make_dist(site, "brokendist", "1", {group: {"broken": f"{module}:P"}}, {module: "1/0\n"})
        make_dist(site, "gooddist", "1", {group: {"good": f"{good}:Plugin"}}, {good: PLUGIN_SOURCE})
        bus = EventBus()
        bus.block_plugin("broken")
        assert bus.load_entry_points(group=group) == ["good"]

    def _abc(self, site: Path, group: str, broken_source: str) -> None:
        """Distributions 'a' and 'c' (working) around 'b' (``broken_source``)."""
        modules = {name: f"{name}plugin_{next(_unique)}" for name in ("a", "c")}
        broken = f"bplugin_{next(_unique)}"
        for name, module in modules.items():
            make_dist(
                site,
                f"{name}dist",
                "1",
                {group: {name: f"{module}:Plugin"}},
                {module: PLUGIN_SOURCE},
            )
        make_dist(site, "bdist", "1", {group: {"b": f"{broken}:Plugin"}}, {broken: broken_source})

    def test_load_error_loads_nothing_and_can_be_resumed(self, site: Path, group: str) -> None:
        """All or nothing: 'a' (before the broken 'b') is not left registered, nor subscribed.

        Blocking 'b' and loading again loads the rest.
        """
        self._abc(site, group, "1/0\n")
        bus = EventBus()
        with pytest.raises(PluginLoadError, match="'b'"):
            bus.load_entry_points(group=group)
        assert bus.plugins() == []
        assert bus.subscriptions() == ()
        bus.block_plugin("b")
        assert bus.load_entry_points(group=group) == ["a", "c"]
        assert [p.name for p in bus.plugins()] == ["a", "c"]

    def test_registration_error_unregisters_the_earlier_ones(self, site: Path, group: str) -> None:
        """A later plugin whose eventbus_register raises takes the earlier ones back out."""
        source = PLUGIN_SOURCE.replace(
            "bus.subscribe(AccountBalanceUpdated, self.on_balance, priority=3)",
            "raise RuntimeError('no')",
        )
        self._abc(site, group, source)
        bus = EventBus()
        with pytest.raises(PluginRegistrationError, match="'b'"):
            bus.load_entry_points(group=group)
        assert bus.plugins() == []
        assert bus.subscriptions() == ()

    def test_system_exit_on_import_is_a_load_error(self, site: Path, group: str) -> None:
        """A plugin calling sys.exit() on import is named, and the process goes on."""
        self._abc(site, group, "import sys\nsys.exit(3)\n")
        bus = EventBus()
        with pytest.raises(PluginLoadError) as info:
            bus.load_entry_points(group=group)
        assert info.value.entry_point == "b"
        assert info.value.distribution == "bdist 1"
        assert "SystemExit" in str(info.value)
        assert isinstance(info.value.__cause__, SystemExit)
        assert bus.plugins() == []


class TestBlocking:
    """Blocking by name, by env var, and disabling autoload entirely."""

    def test_block_by_name(self, fake: FakeDist) -> None:
        """A name blocked on the bus is not loaded."""
        bus = EventBus()
        bus.block_plugin("fake")
        assert bus.load_entry_points(group=fake.group) == []
        assert bus.plugins() == []
        assert bus.subscriptions() == ()

    def test_block_registered_plugin_unregisters_it(self, fake: FakeDist) -> None:
        """Blocking a loaded plugin unregisters it and cancels its subscriptions."""
        bus = EventBus()
        bus.load_entry_points(group=fake.group)
        assert len(bus.subscriptions()) == 1
        bus.block_plugin("fake")
        assert bus.plugins() == []
        assert bus.subscriptions() == ()
        assert bus.load_entry_points(group=fake.group) == []

    @pytest.mark.parametrize("value", ["fake", "other,fake", " other , fake ,"])
    def test_block_by_env(
        self, fake: FakeDist, monkeypatch: pytest.MonkeyPatch, value: str
    ) -> None:
        """EVENTBUS_BLOCK_PLUGINS=a,b skips the listed names."""
        monkeypatch.setenv("EVENTBUS_BLOCK_PLUGINS", value)
        bus = EventBus()
        assert bus.load_entry_points(group=fake.group) == []
        assert bus.plugins() == []

    def test_env_blocks_only_listed(self, fake: FakeDist, monkeypatch: pytest.MonkeyPatch) -> None:
        """Names not in the list still load."""
        monkeypatch.setenv("EVENTBUS_BLOCK_PLUGINS", "fak,fakeplugin")
        assert EventBus().load_entry_points(group=fake.group) == ["fake"]

    def test_disable_autoload(
        self, fake: FakeDist, site: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """EVENTBUS_DISABLE_PLUGIN_AUTOLOAD=1 loads nothing, not even importing broken ones."""
        module = f"brokenplugin_{next(_unique)}"
        make_dist(
            site, "brokendist", "1", {fake.group: {"broken": f"{module}:P"}}, {module: "1/0\n"}
        )
        monkeypatch.setenv("EVENTBUS_DISABLE_PLUGIN_AUTOLOAD", "1")
        bus = EventBus()
        assert bus.load_entry_points(group=fake.group) == []
        assert bus.plugins() == []
        assert module not in sys.modules
        monkeypatch.setenv("EVENTBUS_DISABLE_PLUGIN_AUTOLOAD", "0")
        with pytest.raises(PluginLoadError):
            bus.load_entry_points(group=fake.group)


class HalfRegistering:
    """Subscribes two handlers, then raises (unless fixed)."""

    def __init__(self, fail: bool = True) -> None:
        self.fail = fail

    @hookimpl
    def eventbus_register(self, bus: EventBus) -> None:
        bus.subscribe(Ping, self.handle)
        bus.subscribe(AccountBalanceUpdated, self.handle, priority=2)
        if self.fail:
            raise RuntimeError("register blew up half-way")

    def handle(self, event: object) -> None:
        """Never called in the failing case."""


class TestAtomicRegistration:
    """A plugin failing in eventbus_register leaves the bus exactly as it was."""

    def test_failure_leaves_nothing_behind(self, bus: EventBus) -> None:
        """No subscriptions, not registered, and the error names plugin and cause."""
        unrelated = bus.subscribe(Ping, lambda e: None)
        plugin = HalfRegistering()
        with pytest.raises(PluginRegistrationError) as info:
            bus.register_plugin(plugin, name="half")
        assert info.value.plugin == "half"
        assert "'half'" in str(info.value)
        assert "register blew up half-way" in str(info.value)
        assert isinstance(info.value.__cause__, RuntimeError)
        assert bus.subscriptions() == (unrelated,)
        assert bus.plugins() == []
        assert bus.get_plugin("half") is None
        # Can be registered again once fixed, under the same name.
        plugin.fail = False
        assert bus.register_plugin(plugin, name="half") == "half"
        assert len(bus.subscriptions()) == 3
        [info_] = bus.plugins()
        assert [s.event_type for s in info_.subscriptions] == ["Ping", "AccountBalanceUpdated"]

    def test_failure_through_entry_points(self, site: Path, group: str) -> None:
        """The same atomicity when the plugin comes from an entry point."""
        module = f"halfplugin_{next(_unique)}"
        source = """
            from eventbus import hookimpl
            from eventbus.portfolio import AccountBalanceUpdated

            class Plugin:
                @hookimpl
                def eventbus_register(self, bus):
                    bus.subscribe(AccountBalanceUpdated, print)
                    bus.subscribe(AccountBalanceUpdated, repr)
                    raise ValueError("nope")
        """
        make_dist(site, "halfdist", "1", {group: {"half": f"{module}:Plugin"}}, {module: source})
        bus = EventBus()
        with pytest.raises(PluginRegistrationError, match="half"):
            bus.load_entry_points(group=group)
        assert bus.subscriptions() == ()
        assert bus.plugins() == []

    def test_duplicate_name_rejected(self, bus: EventBus) -> None:
        """Registering a second plugin under a taken name is refused, bus unchanged."""
        bus.register_plugin(HalfRegistering(fail=False), name="dup")
        with pytest.raises(PluginRegistrationError, match="already registered"):
            bus.register_plugin(HalfRegistering(fail=False), name="dup")
        assert len(bus.subscriptions()) == 2

    async def test_same_object_under_a_second_name_keeps_the_first(self, bus: EventBus) -> None:
        """pluggy refuses the second name; the first registration keeps its hooks."""

        class Plugin:
            started = 0

            @hookimpl
            def eventbus_startup(self, bus: EventBus) -> None:
                self.started += 1

        plugin = Plugin()
        bus.register_plugin(plugin, name="first")
        with pytest.raises(PluginRegistrationError, match="second"):
            bus.register_plugin(plugin, name="second")
        assert [(p.name, p.hooks) for p in bus.plugins()] == [("first", ("eventbus_startup",))]
        async with bus:
            pass
        assert plugin.started == 1  # the refusal must not unregister "first" from pluggy

    def test_keyboard_interrupt_in_register_leaves_nothing(self, bus: EventBus) -> None:
        """A BaseException from eventbus_register propagates and still undoes the registration."""

        class Interrupted:
            @hookimpl
            def eventbus_register(self, bus: EventBus) -> None:
                bus.subscribe(Ping, lambda e: None)
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            bus.register_plugin(Interrupted(), name="interrupted")
        assert bus.subscriptions() == ()
        assert bus.plugins() == []
        assert bus.get_plugin("interrupted") is None

    def test_unknown_hook_rejected(self, bus: EventBus) -> None:
        """A hookimpl for a hook that does not exist is refused, naming the plugin."""

        class Typo:
            @hookimpl
            def eventbus_regster(self, bus: EventBus) -> None:
                """Misspelt."""

        with pytest.raises(PluginRegistrationError, match="typo"):
            bus.register_plugin(Typo(), name="typo")
        assert bus.plugins() == []

    def test_unregister_cancels_subscriptions(self, bus: EventBus) -> None:
        """unregister_plugin cancels what the plugin subscribed."""
        bus.register_plugin(HalfRegistering(fail=False), name="p")
        bus.unregister_plugin("p")
        assert bus.subscriptions() == ()
        with pytest.raises(KeyError, match="'p'"):
            bus.unregister_plugin("p")

    def test_hand_registered_plugin_described(self, bus: EventBus) -> None:
        """A plugin registered by hand has no distribution or entry point."""
        bus.register_plugin(HalfRegistering(fail=False), name="manual")
        [info] = bus.plugins()
        assert (info.name, info.distribution, info.version, info.entry_point) == (
            "manual",
            None,
            None,
            None,
        )
        assert info.hooks == ("eventbus_register",)


class Lifecycle:
    """Records its startup/shutdown calls into a shared log."""

    def __init__(
        self, name: str, log: list[str], fail_shutdown: bool = False, fail_startup: bool = False
    ) -> None:
        self.name = name
        self.log = log
        self.fail_shutdown = fail_shutdown
        self.fail_startup = fail_startup

    @hookimpl
    async def eventbus_startup(self, bus: EventBus) -> None:
        await asyncio.sleep(0)  # really suspends: the bus must await it
        if self.fail_startup:
            raise ConnectionError(f"{self.name} could not start")
        self.log.append(f"start:{self.name}")

    @hookimpl
    async def eventbus_shutdown(self, bus: EventBus) -> None:
        await asyncio.sleep(0)
        self.log.append(f"stop:{self.name}")
        if self.fail_shutdown:
            raise RuntimeError(f"{self.name} failed to shut down")


class SyncLifecycle:
    """Sync hook implementations are called too."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    @hookimpl
    def eventbus_startup(self, bus: EventBus) -> None:
        self.log.append("start:sync")

    @hookimpl
    def eventbus_shutdown(self, bus: EventBus) -> None:
        self.log.append("stop:sync")


class TestLifecycle:
    """Startup in registration order, shutdown in reverse; async hooks awaited."""

    async def test_order_and_awaiting(self, bus: EventBus) -> None:
        """async with bus starts plugins in order and stops them in reverse."""
        log: list[str] = []
        bus.register_plugin(Lifecycle("a", log), name="a")
        bus.register_plugin(SyncLifecycle(log), name="sync")
        bus.register_plugin(Lifecycle("b", log), name="b")
        async with bus as entered:
            assert entered is bus
            assert log == ["start:a", "start:sync", "start:b"]
        assert log == ["start:a", "start:sync", "start:b", "stop:b", "stop:sync", "stop:a"]

    async def test_failing_shutdown_does_not_stop_others(
        self, bus: EventBus, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A shutdown hook that raises is logged; the remaining ones still run."""
        log: list[str] = []
        bus.register_plugin(Lifecycle("a", log), name="a")
        bus.register_plugin(Lifecycle("b", log, fail_shutdown=True), name="b")
        bus.register_plugin(Lifecycle("c", log), name="c")
        await bus.start()
        with caplog.at_level(logging.ERROR, logger="eventbus"):
            await bus.aclose()
        assert log[3:] == ["stop:c", "stop:b", "stop:a"]
        [record] = [r for r in caplog.records if r.name == "eventbus"]
        assert "eventbus_shutdown" in record.getMessage()
        assert "Lifecycle" in record.getMessage()

    async def test_failing_startup_rolls_back(self, bus: EventBus) -> None:
        """A startup failure shuts down the plugins already started, then propagates."""
        log: list[str] = []
        bus.register_plugin(Lifecycle("a", log), name="a")
        bus.register_plugin(Lifecycle("b", log), name="b")
        bus.register_plugin(Lifecycle("c", log, fail_startup=True), name="c")
        bus.register_plugin(Lifecycle("d", log), name="d")
        with pytest.raises(ConnectionError, match="c could not start"):
            async with bus:
                log.append("body")  # never reached
        assert log == ["start:a", "start:b", "stop:b", "stop:a"]

    async def test_first_startup_failing_stops_nothing(self, bus: EventBus) -> None:
        """If the very first startup fails, no shutdown hook runs."""
        log: list[str] = []
        bus.register_plugin(Lifecycle("a", log, fail_startup=True), name="a")
        bus.register_plugin(Lifecycle("b", log), name="b")
        with pytest.raises(ConnectionError):
            await bus.start()
        assert log == []

    async def test_start_binds_loop_for_threadsafe(self, bus: EventBus) -> None:
        """start() binds the running loop (publish_threadsafe works afterwards)."""
        seen: list[Any] = []
        bus.subscribe(Ping, seen.append)
        await bus.start()
        future = bus.publish_threadsafe(Ping())
        await asyncio.wrap_future(future)
        assert len(seen) == 1
        await bus.aclose()


class SubscribesOnStartup:
    """Subscribes in its async startup hook, after an await (like the Redis bridge)."""

    def __init__(self, other_started: asyncio.Event) -> None:
        self.other_started = other_started

    @hookimpl
    async def eventbus_startup(self, bus: EventBus) -> None:
        await self.other_started.wait()  # another task runs while this hook is suspended
        bus.subscribe(Ping, self.on_ping, priority=7)

    def on_ping(self, event: Ping) -> None:
        """Handle nothing."""


class TestSubscriptionsCredited:
    """Subscriptions made in any hook of a plugin are that plugin's."""

    async def test_startup_subscriptions_are_listed_and_cancelled_with_the_plugin(
        self, bus: EventBus
    ) -> None:
        """plugins() lists them; a subscription another task makes meanwhile is not credited."""
        other_started = asyncio.Event()
        bus.register_plugin(SubscribesOnStartup(other_started), name="late")

        async def bystander() -> None:
            bus.subscribe(Ping, lambda e: None)
            other_started.set()

        async with asyncio.TaskGroup() as group:
            group.create_task(bus.start())
            group.create_task(bystander())
        [info] = bus.plugins()
        assert [(s.event_type, s.priority) for s in info.subscriptions] == [("Ping", 7)]
        assert len(bus.subscriptions()) == 2
        bus.unregister_plugin("late")
        assert [s.plugin for s in bus.subscriptions()] == [None]
        await bus.aclose()


class TestNameCollisions:
    """Two distributions declaring one entry-point name: the first loads, the second is reported."""

    def test_second_distribution_is_named_in_a_warning(
        self, site: Path, group: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The warning names both distributions; loading again warns nothing new."""
        first, second = f"collide_a_{next(_unique)}", f"collide_b_{next(_unique)}"
        make_dist(site, "alpha", "1.0", {group: {"dup": f"{first}:Plugin"}}, {first: PLUGIN_SOURCE})
        make_dist(
            site, "beta", "2.0", {group: {"dup": f"{second}:Plugin"}}, {second: PLUGIN_SOURCE}
        )
        bus = EventBus()
        with caplog.at_level(logging.WARNING, logger="eventbus"):
            assert bus.load_entry_points(group) == ["dup"]
        [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
        message = record.getMessage()
        assert "'dup'" in message
        assert "alpha 1.0" in message
        assert "beta 2.0" in message
        [loaded] = bus.plugins()
        assert f"taken by {loaded.distribution} {loaded.version}" in message

    def test_reloading_and_hand_registered_names_are_quiet(
        self, fake: FakeDist, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A second load_entry_points() and a name taken by hand log no warning."""
        bus = EventBus()
        with caplog.at_level(logging.WARNING, logger="eventbus"):
            assert bus.load_entry_points(fake.group) == ["fake"]
            assert bus.load_entry_points(fake.group) == []
            other = EventBus()
            other.register_plugin(SyncLifecycle([]), name="fake")
            assert other.load_entry_points(fake.group) == []
        assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


class StartsAWorker:
    """Starts a long-lived task in its startup hook, like the Redis bridge's reader."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.worker: asyncio.Task[None] | None = None

    @hookimpl
    async def eventbus_startup(self, bus: EventBus) -> None:
        async def work() -> None:
            await self.go.wait()
            bus.subscribe(Ping, lambda e: None)  # on the application's behalf, later

        self.worker = asyncio.create_task(work())


class TestSubscriptionsOfStartupTasks:
    """A task a startup hook creates outlives the hook: what it subscribes later is not credited."""

    async def test_not_credited_to_the_plugin(self, bus: EventBus) -> None:
        """The subscription survives unregistering the plugin."""
        plugin = StartsAWorker()
        bus.register_plugin(plugin, name="worker")
        await bus.start()
        plugin.go.set()
        assert plugin.worker is not None
        await plugin.worker
        assert bus.plugins()[0].subscriptions == ()
        bus.unregister_plugin("worker")
        assert len(bus.subscriptions()) == 1
        await bus.aclose()
