"""Real product processes for the reliability tests and the soak: start, find, kill, stop.

Everything here starts what operators start (``python -m core worker``,
``python -m core sync``, ``python -m core simulator``, ``streamlit run
app.py``), each with its own settings in the environment and its output in a
log file, never a pipe nobody reads. ``Processes`` owns every child it starts
and stops them all (terminate, wait, kill) however the caller ends. Waiting is
always polling against a deadline. Run holders (``runs.lease_owner``,
``leases.holder``) name ``<host>:<pid>:<nonce>``, which is how a test tells
which process executed a run or holds the scheduler.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from core.clock import SystemClock
from core.engine import Engine, Registry
from core.settings import Settings
from core.sync.function import sync_functions
from core.tarana.client import TaranaClient
from core.tarana.faults import Faults
from core.tarana.simulator import Simulator
from jobstore.db import Database
from jobstore.tables import steps

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    probe: Callable[[], T | None], timeout_s: float, what: str, interval_s: float = 0.05
) -> T:
    """Call ``probe`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


def pid_of(holder: str | None) -> int | None:
    """The process id in a holder name ``<host>:<pid>:<nonce>[#<claim>]``."""
    if not holder:
        return None
    parts = holder.split("#", 1)[0].split(":")
    try:
        return int(parts[-2])
    except (IndexError, ValueError):
        return None


def portal_settings(sim: Simulator | SimulatorProcess) -> dict[str, str]:
    """The STATIONSYNC_TARANA_* settings that point a process at a simulator."""
    return {
        "STATIONSYNC_TARANA_BASE_URL": sim.base_url,
        "STATIONSYNC_TARANA_USERNAME": sim.username,
        "STATIONSYNC_TARANA_PASSWORD": sim.password,
        "STATIONSYNC_TARANA_OPERATOR_ID": sim.operator_id,
    }


def sender(db: Database) -> Engine:
    """An engine that knows the sync's functions but never executes them: it only sends
    (as a page or the CLI does) and reads. Replicas under test do the work."""

    def no_client() -> TaranaClient:
        raise AssertionError("this engine only sends; it must never execute a sync")

    registry = Registry()
    for fn in sync_functions(db, Settings(), no_client, SystemClock()):
        registry.add(fn)
    return Engine(db, registry)


StepKey = tuple[str, str]
StepStamp = tuple[float | None, float | None, int]


def finished_steps(db: Database) -> dict[StepKey, StepStamp]:
    """(run, step) -> (started_at, ended_at, attempts) of every finished step.

    A finished step executed again would be stored again with a new start: comparing
    these before and after a crash tells whether any finished step ran twice.
    """
    q = sa.select(steps.c.run_id, steps.c.name, steps.c.started_at, steps.c.ended_at,
                  steps.c.attempts).where(steps.c.status == "completed")  # fmt: skip
    with db.read() as conn:
        return {(r.run_id, r.name): (r.started_at, r.ended_at, r.attempts) for r in conn.execute(q)}


def product_env(settings: Mapping[str, str], data_dir: Path) -> dict[str, str]:
    """This process's environment without its STATIONSYNC_* settings, plus ``settings``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("STATIONSYNC_") or k.startswith("STATIONSYNC_TEST_")
    }
    env.update(
        {
            "STATIONSYNC_DATA_DIR": str(data_dir),
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "STREAMLIT_SERVER_HEADLESS": "true",
            "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
            "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none",
        }
    )
    env.update(settings)
    return env


@dataclass
class Proc:
    """One child process and the file its output goes to."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class Processes:
    """Starts product processes in ``directory`` and makes sure none outlives its owner."""

    directory: Path
    started: list[Proc] = field(default_factory=list)

    def start(
        self, name: str, args: list[str], env: Mapping[str, str], port: int | None = None
    ) -> Proc:
        self.directory.mkdir(parents=True, exist_ok=True)
        log_path = self.directory / f"{name}-{len(self.started)}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                [sys.executable, *args], cwd=ROOT, env=dict(env), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        proc = Proc(name, popen, log_path, port)
        self.started.append(proc)
        return proc

    def worker(self, env: Mapping[str, str], name: str = "worker") -> Proc:
        """``python -m core worker``: scheduler (if allowed) and workers, headless."""
        return self.start(name, ["-m", "core", "worker"], env)

    def dashboard(self, env: Mapping[str, str], name: str = "dashboard") -> Proc:
        """``streamlit run app.py`` on a free port of 127.0.0.1 (see ``wait_healthy``)."""
        port = free_port()
        args = ["-m", "streamlit", "run", "app.py", "--server.port", str(port),
                "--server.address", "127.0.0.1"]  # fmt: skip
        return self.start(name, args, env, port)

    def wait_started(self, proc: Proc, text: str, timeout_s: float = 60) -> None:
        """Wait until ``text`` appears in the process's output."""

        def seen() -> bool:
            if not proc.alive():
                raise AssertionError(f"{proc.name} exited early:\n{proc.log()[-3000:]}")
            return text in proc.log()

        wait_for(seen, timeout_s, f"{proc.name} to say {text!r}")

    def wait_healthy(self, proc: Proc, timeout_s: float = 60) -> None:
        """Wait until a dashboard answers its health check."""
        url = f"http://127.0.0.1:{proc.port}/_stcore/health"

        def healthy() -> bool:
            if not proc.alive():
                raise AssertionError(f"{proc.name} exited early:\n{proc.log()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        wait_for(healthy, timeout_s, f"{proc.name} to answer on port {proc.port}", 0.2)

    def kill(self, proc: Proc) -> None:
        """SIGKILL, as a crash or an out-of-memory kill would end it."""
        if proc.alive():
            os.kill(proc.pid, signal.SIGKILL)
        proc.popen.wait(10)

    def stop(self, proc: Proc, timeout_s: float = 15) -> int:
        """Terminate, wait, and kill if it does not go; its exit code."""
        if proc.alive():
            proc.popen.terminate()
            try:
                proc.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(10)
        return int(proc.popen.returncode)

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            try:
                self.stop(proc, 10)
            except Exception:  # noqa: BLE001 - keep stopping the others
                if proc.alive():
                    proc.popen.kill()

    def wait_exit(self, proc: Proc, timeout_s: float) -> int:
        """Wait for a process that ends by itself (a CLI command); its exit code."""
        wait_for(lambda: not proc.alive(), timeout_s, f"{proc.name} to finish", 0.1)
        return int(proc.popen.returncode)

    def by_pid(self, pid: int | None) -> Proc | None:
        return next((p for p in self.started if p.pid == pid), None)


@dataclass
class SimulatorProcess:
    """``python -m core simulator`` in its own process, so its data outlives sync processes."""

    proc: Proc
    stations: int
    seed: int
    faults: str
    base_url: str = ""
    username: str = ""
    password: str = ""
    operator_id: str = ""

    @classmethod
    def start(
        cls, procs: Processes, stations: int, *, seed: int = 7, faults: str = "",
        timeout_s: float = 60,
    ) -> SimulatorProcess:  # fmt: skip
        args = ["-m", "core", "simulator", "--stations", str(stations), "--seed", str(seed),
                "--port", "0"]  # fmt: skip
        if faults:
            args += ["--faults", faults]
        proc = procs.start("simulator", args, product_env({}, procs.directory))
        procs.wait_started(proc, "operator_id:", timeout_s)
        fields = dict(line.split(": ", 1) for line in proc.log().splitlines() if ": " in line)
        sim = cls(proc, stations, seed, faults)
        sim.base_url = fields["base_url"].strip()
        sim.username = fields["username"].strip()
        sim.password = fields["password"].strip()
        sim.operator_id = fields["operator_id"].strip()
        return sim

    def twin(self) -> Simulator:
        """The same fleet in this process (not serving): the reference's source of truth."""
        return Simulator(stations=self.stations, seed=self.seed, faults=Faults.parse(self.faults))

    def control(self, method: str, path: str, body: Any = None) -> Any:
        """Call a ``/__sim/*`` control endpoint; its ``data``."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())["data"]


def with_port(url: str, port: int) -> str:
    """The database URL with its port replaced (to go through a proxy)."""
    return sa.make_url(url).set(port=port).render_as_string(hide_password=False)


@contextmanager
def fresh_schema(base_url: str) -> Iterator[str]:
    """A URL whose search path is a new, empty PostgreSQL schema, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    parsed = sa.make_url(base_url)
    query = {**parsed.query, "options": f"-csearch_path={schema}"}
    try:
        yield parsed.set(query=query).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
