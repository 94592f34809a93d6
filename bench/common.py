"""What every benchmark section needs: measured child processes, summaries, seeds, environments."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import yaml
from sqlalchemy import create_engine, text

from crawler.config import PROJECT_ROOT

SEEDS = PROJECT_ROOT / "seeds"
SITES = ["kaiping", "zhongshan", "chinanews", "liangjiang", "sznews"]
MB = 1024 * 1024


def log(line: str) -> None:
    """Print one progress line of the benchmark (stderr, so the table stays clean)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def summary(values: Sequence[float], digits: int = 3) -> dict[str, Any]:
    """Return the median of `values` with its spread (min, max) and the number of runs."""
    if not values:
        return {"median": None, "min": None, "max": None, "runs": 0, "values": []}
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "runs": len(values),
        "values": [round(v, digits) for v in values],
    }


def figure(
    values: Sequence[float],
    unit: str,
    aim: str | None = None,
    ok: bool | None = None,
    digits: int = 3,
    note: str | None = None,
) -> dict[str, Any]:
    """Return one figure of the report: a summary of `values`, its unit, aim and verdict."""
    return {**summary(values, digits), "unit": unit, "aim": aim, "ok": ok, "note": note}


# ----- processes -------------------------------------------------------------------------------


def _vm_hwm(pid: int) -> int:
    """Return the peak resident set size (VmHWM) of a live process in bytes, 0 if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _command(pid: int) -> bytes:
    """Return the raw command line of a live process (b"" if unknown)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _children(pid: int) -> list[int]:
    """Return the pids of every descendant of `pid`."""
    import psutil

    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


class PeakSampler:
    """Follows a process tree; keeps the peak RSS (VmHWM) seen of its root and of its children."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        self.pid = pid
        self.every = every
        self.root_peak = 0
        self.child_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-sampler", daemon=True)

    def start(self) -> PeakSampler:
        """Start sampling in a background thread; return self."""
        self._thread.start()
        return self

    def _run(self) -> None:
        root_command = _command(self.pid)
        while not self._stop.is_set():
            self.root_peak = max(self.root_peak, _vm_hwm(self.pid))
            for child in _children(self.pid):
                # A child caught between fork and exec still is a copy of its parent, with
                # the parent's high-water mark: not a crawl process yet.
                if _command(child) != root_command:
                    self.child_peak = max(self.child_peak, _vm_hwm(child))
            self._stop.wait(self.every)

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join(timeout=2)


@dataclass
class Measured:
    """One finished child process: wall time, CPU of it and its descendants, peak RSS, status."""

    wall: float
    cpu: float
    maxrss: int
    child_peak: int
    returncode: int
    stderr: str = ""
    inner: float | None = None  # a section's own timing of a part of the run

    def check(self, what: str) -> Measured:
        """Return self; raise RuntimeError naming `what` when the process failed."""
        if self.returncode != 0:
            tail = "\n".join(self.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"{what} exited with {self.returncode}:\n{tail}")
        return self


def run_measured(
    argv: Sequence[str],
    env: dict[str, str],
    log_file: Path,
    timeout: float = 900,
    on_start: Callable[[int], None] | None = None,
) -> Measured:
    """Run `argv` to completion; return its wall time, CPU (with waited-for descendants) and RSS."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            start_new_session=True,
        )
        sampler = PeakSampler(proc.pid).start()
        if on_start is not None:
            on_start(proc.pid)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
        wall = time.perf_counter() - started
        sampler.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        maxrss=usage.ru_maxrss * 1024,
        child_peak=sampler.child_peak,
        returncode=proc.returncode,
        stderr=log_file.read_text(encoding="utf-8", errors="replace")[-20000:],
    )


def python(*args: str) -> list[str]:
    """Return the argv running this interpreter with `args`."""
    return [sys.executable, *args]


# ----- environments and seeds --------------------------------------------------------------------


@dataclass
class World:
    """One isolated monitor installation: database, seeds folder, data folder, replay URL."""

    root: Path
    replay_url: str
    channels_file: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        """Return the SQLite URL of this world's database."""
        return f"sqlite:///{self.root / 'monitor.db'}"

    @property
    def seeds_dir(self) -> Path:
        """Return this world's seeds folder."""
        return self.root / "seeds"

    def env(self) -> dict[str, str]:
        """Return the environment of a `monitor` or `scrapy` process of this world."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
        env.update(
            DATABASE_URL=self.database_url,
            MONITOR_SEEDS_DIR=str(self.seeds_dir),
            MONITOR_REPLAY_URL=self.replay_url,
            MONITOR_DATA_DIR=str(self.root / "data"),
            MONITOR_LOG_LEVEL="WARNING",
            SCRAPY_SETTINGS_MODULE="crawler.settings",
            PYTHONPATH=str(PROJECT_ROOT),
        )
        if self.channels_file is not None:
            env["MONITOR_CHANNELS_FILE"] = str(self.channels_file)
        env.update(self.extra)
        return env

    def scalar(self, sql: str) -> Any:
        """Return the single value of `sql` on this world's database."""
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                return conn.execute(text(sql)).scalar_one()
        finally:
            engine.dispose()

    def once(self, name: str, timeout: float = 900) -> Measured:
        """Run one cycle (`monitor run --once`) and return it measured."""
        argv = python("-m", "monitor.cli", "run", "--once")
        return run_measured(argv, self.env(), self.root / "logs" / f"{name}.log", timeout)


def write_seeds(seeds_dir: Path, seeds: Iterable[dict[str, Any]]) -> int:
    """Write one `<id>.yaml` per seed mapping into `seeds_dir`; return how many."""
    seeds_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    for seed in seeds:
        path = seeds_dir / f"{seed['id']}.yaml"
        path.write_text(yaml.safe_dump(seed, allow_unicode=True, sort_keys=False), "utf-8")
        count += 1
    return count


def shipped_seed(site_id: str, **changes: Any) -> dict[str, Any]:
    """Return the shipped seed file of `site_id` as a mapping, with `changes` laid over it."""
    data: dict[str, Any] = yaml.safe_load((SEEDS / f"{site_id}.yaml").read_text("utf-8"))
    data.update(changes)
    return data


def bulk_seed(source_id: str, **changes: Any) -> dict[str, Any]:
    """Return the seed of bulk source `source_id`: Kaiping's file under another id and origin."""
    kaiping = shipped_seed("kaiping")
    base = f"http://{source_id}.example.gov.cn"
    moved = [base + url[len(kaiping["base_url"]) :] for url in kaiping["list_urls"]]
    kaiping.update(id=source_id, name=f"bulk source {source_id}", base_url=base, list_urls=moved)
    kaiping.update(changes)
    return kaiping


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Return check()'s first truthy value, polling; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f}s")


class DaemonProcess:
    """A `monitor run` daemon of one world, stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, world: World, args: Sequence[str], name: str) -> None:
        self.world = world
        self.args = list(args)
        self.log_file = world.root / "logs" / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.sampler: PeakSampler | None = None

    def __enter__(self) -> Self:
        """Start the daemon and its peak-RSS sampler."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "wb") as out:
            self.proc = subprocess.Popen(
                python("-m", "monitor.cli", "run", *self.args),
                cwd=PROJECT_ROOT,
                env=self.world.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        self.sampler = PeakSampler(self.proc.pid).start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the daemon."""
        self.stop()

    @property
    def pid(self) -> int:
        """Return the daemon's pid."""
        assert self.proc is not None
        return self.proc.pid

    def rss(self) -> int:
        """Return the daemon's resident set size now, in bytes."""
        import psutil

        return int(psutil.Process(self.pid).memory_info().rss)

    def peak(self) -> int:
        """Return the daemon's peak resident set size so far (VmHWM), in bytes."""
        return _vm_hwm(self.pid)

    def alive(self) -> bool:
        """Return True while the daemon runs."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Ask the daemon to stop (SIGTERM to its process group); kill it after 30 s."""
        if self.sampler is not None:
            self.sampler.stop()
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 20) -> str:
        """Return the last lines of the daemon's log."""
        text = self.log_file.read_text("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])
