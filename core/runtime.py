"""The runtime: one per process, wiring settings, database, engine, scheduler and portal.

``Runtime.start`` applies migrations, starts the built-in simulator when no
portal is configured, registers the functions, and starts the worker threads
and the scheduler lease loop. ``get_runtime`` is the single accessor pages and
the lifespan hook use: a process-wide holder behind a lock, so concurrent
first sessions or a reloaded page never build a second runtime, and the
database's scheduler lease keeps even a second process from scheduling twice.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import sys
import threading
import types
import uuid
from collections.abc import Callable, Iterable
from typing import cast

from core import logs
from core.clock import Clock, SystemClock
from core.engine import Engine, Function, Registry
from core.scheduler import SchedulerService
from core.settings import Settings, load_settings
from core.tarana.client import TaranaClient
from core.tarana.simulator import Simulator
from jobstore import migrate
from jobstore.db import Database

log = logging.getLogger("stationsync.runtime")


def default_functions(rt: Runtime) -> list[Function]:
    from core.sync.function import sync_functions

    return sync_functions(rt.db, rt.settings, rt.portal_client, rt.clock)


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        workers: bool = True,
        scheduler: bool | None = None,
        functions: Callable[[Runtime], Iterable[Function]] = default_functions,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.db = Database(settings.db_url)
        self.registry = Registry()
        self.engine = Engine(
            self.db,
            self.registry,
            clock=self.clock,
            workers=settings.workers,
            poll_interval_s=settings.poll_interval_s,
            lease_s=settings.lease_s,
            heartbeat_s=settings.heartbeat_s,
            max_crashes=settings.max_crashes,
            worker_id=self.holder,
        )
        self.scheduler = SchedulerService(
            self.engine,
            self.registry,
            holder=self.holder,
            clock=self.clock,
            lease_s=settings.lease_s,
            heartbeat_s=settings.heartbeat_s,
            misfire_grace_s=settings.misfire_grace_s,
            enabled=settings.scheduler if scheduler is None else scheduler,
        )
        self.simulator: Simulator | None = None
        self._workers = workers
        self._functions = functions
        self._portal: tuple[str, str, str, str] | None = None
        self.started = False

    def start(self) -> Runtime:
        secrets = [self.settings.tarana_password.reveal()]
        logs.configure(self.settings.log_level, secrets)
        migrate.upgrade(self.db)
        if self.settings.uses_simulator:
            from core.tarana.faults import Faults

            sim = Simulator(
                stations=self.settings.simulator_stations,
                seed=self.settings.simulator_seed,
                faults=Faults.parse(self.settings.simulator_faults),
            )
            sim.start()
            self.simulator = sim
            self._portal = (sim.base_url, sim.username, sim.password, sim.operator_id)
            log.info("no portal configured: serving the built-in simulator at %s", sim.base_url)
        else:
            s = self.settings
            self._portal = (
                s.tarana_base_url, s.tarana_username, s.tarana_password.reveal(), s.tarana_operator_id
            )
        for fn in self._functions(self):
            self.registry.add(fn)
        if self._workers:
            self.engine.start()
        self.scheduler.start()
        self.started = True
        log.info("runtime %s started on %s", self.holder, self.db.safe_url)
        return self

    def portal_client(self) -> TaranaClient:
        """A new client for the configured portal (or the built-in simulator)."""
        from core.settings import Secret

        if self._portal is None:
            raise RuntimeError("the runtime is not started")
        base_url, user, password, operator = self._portal
        s = self.settings
        return TaranaClient(
            base_url,
            user,
            Secret(password),
            operator_id=operator,
            concurrency=s.tarana_concurrency,
            timeout_s=s.tarana_timeout_s,
            retries=s.tarana_retries,
            backoff_max_s=s.tarana_backoff_max_s,
        )

    def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        self.scheduler.stop()
        self.engine.stop()
        if self.simulator is not None:
            self.simulator.stop()
        self.db.dispose()
        log.info("runtime %s stopped", self.holder)


class _Slot(types.ModuleType):
    lock: threading.Lock
    runtime: Runtime | None


def _holder() -> _Slot:
    """The process-wide slot for the runtime.

    It lives in ``sys.modules`` rather than in this module's globals, so a
    reload of this module (a hot reload after an edit) finds the runtime that
    is already running instead of building a second one beside it.
    """
    slot = sys.modules.get(_HOLDER)
    if slot is None:
        fresh = _Slot(_HOLDER, "The running Stationsync runtime of this process.")
        fresh.lock = threading.Lock()
        fresh.runtime = None
        slot = sys.modules.setdefault(_HOLDER, fresh)
    return cast(_Slot, slot)


_HOLDER = "stationsync_process_runtime"


def current_runtime() -> Runtime | None:
    """The running runtime, if this process has one."""
    return _holder().runtime


def install_runtime(rt: Runtime | None) -> Runtime | None:
    """Make ``rt`` the process's runtime (for embedding and tests); returns the previous one."""
    slot = _holder()
    with slot.lock:
        previous = slot.runtime
        slot.runtime = rt
    return previous


def get_runtime() -> Runtime:
    """The process's runtime, built and started on first use."""
    slot = _holder()
    with slot.lock:
        if slot.runtime is None:
            rt = Runtime(load_settings())
            try:
                rt.start()
            except BaseException:
                rt.stop() if rt.started else rt.db.dispose()
                raise
            slot.runtime = rt
            atexit.register(shutdown_runtime)
        return slot.runtime


def shutdown_runtime() -> None:
    slot = _holder()
    with slot.lock:
        rt, slot.runtime = slot.runtime, None
    if rt is not None:
        rt.stop()
