"""The service's workers, forked from one process that loaded the served versions first
(`interest serve` with serving.workers > 1 starts `python -m components.deployment.prefork`).

Each worker is BentoML's own worker (the uvicorn server `bentoml serve` runs) on a listening
socket this process holds, one port per worker, so that HAProxy balances requests over them.
Loaded before the fork, a version's arrays (item representations, neighbour table, the kept
shopper scores) are pages the workers share copy-on-write: two workers cost little more memory
than one, where each `bentoml serve` of its own held a full copy. This process also
- forks a worker again from the loaded versions when one ends: a second, not a reload;
- once production changes, loads the new version and replaces the workers one at a time. The
  workers swap to it themselves within serving.swap_poll_seconds (serving/hot_swap.py), each
  with a copy of its own; the replacement shares it again. The listening socket stays open here
  meanwhile, so requests wait for the new worker instead of being refused.
`workers.json` in the folder names the workers' pids and how often one was started again.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import socket
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

from components.core.config.loader import load_params
from components.core.config.schema import Params, ServingParams
from components.core.errors import InterestError
from components.core.io import write_json
from components.core.log import configure_logging
from components.core.paths import PROJECT_DIR
from components.deployment.process_group import stop_process
from components.deployment.service_process import SERVICE
from components.registry.promotion import production_tag
from components.serving.app import TAG_ENV, served_tags
from components.serving.hot_swap import preload

log = logging.getLogger(__name__)
STATE_FILE = "workers.json"
BACKLOG = 2048            # BentoML's own default for its workers' sockets


def listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(BACKLOG)
    return sock


def _run_worker(index: int, sock: socket.socket, others: list[socket.socket], log_file: Path) -> None:
    """In the forked child: BentoML's worker on `sock`, its output in `log_file`; never returns."""
    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        out = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(out, 1)
        os.dup2(out, 2)
        for other in others:
            other.close()
        from _bentoml_impl.worker.service import main as bentoml_worker
        bentoml_worker.main(args=[SERVICE, "--fd", str(sock.fileno()), "--worker-id", str(index + 1),
                                  "--backlog", str(BACKLOG)], standalone_mode=False)
        code = 0
    except BaseException:   # the child must never return into the parent's loop
        logging.getLogger(__name__).exception("worker %d failed", index)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


@dataclass
class Workers:
    """One forked worker per socket, kept running."""

    sockets: list[socket.socket]
    folder: Path
    cfg: ServingParams
    pids: list[int] = field(default_factory=list)
    restarts: int = 0
    _forked_at: dict[int, float] = field(default_factory=dict)
    _quick_ends: dict[int, int] = field(default_factory=dict)

    def start(self) -> None:
        self.pids = [self._fork(i) for i in range(len(self.sockets))]
        self._record()

    def _fork(self, index: int) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _run_worker(index, self.sockets[index], [s for s in self.sockets if s is not self.sockets[index]],
                        self.folder / f"worker{index}.log")
        log.info("worker %d (port %d) is pid %d", index, self.sockets[index].getsockname()[1], pid)
        self._forked_at[index] = time.monotonic()
        return pid

    def _record(self) -> None:
        write_json({"launcher": os.getpid(), "pids": self.pids, "restarts": self.restarts}, self.folder / STATE_FILE)

    def restart_ended(self) -> int:
        """Fork again every worker that ended; how many did."""
        restarted = 0
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in self.pids:
                index = self.pids.index(pid)
                quick = time.monotonic() - self._forked_at[index] < self.cfg.worker_quick_end_seconds
                self._quick_ends[index] = self._quick_ends.get(index, 0) + 1 if quick else 0
                if self._quick_ends[index] >= 2:
                    raise InterestError(f"worker {index} ended ({_ending(status)}) within {self.cfg.worker_quick_end_seconds} s of its "
                                        f"start twice running: see {self.folder / f'worker{index}.log'}")
                log.warning("worker %d (pid %d) ended (%s): forking it again", index, pid, _ending(status))
                self.pids[index] = self._fork(index)
                self.restarts, restarted = self.restarts + 1, restarted + 1
        if restarted:
            self._record()
        return restarted

    def replace_all(self) -> None:
        """Each worker in turn: stopped once its requests are answered, then forked anew."""
        for index, pid in enumerate(self.pids):
            stop_process(pid, self.cfg.worker_stop_seconds)   # SIGTERM: uvicorn answers the requests it holds
            self.pids[index] = self._fork(index)
            self._record()

    def stop(self) -> None:
        for pid in self.pids:   # all at once, then each waited for
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in self.pids:
            stop_process(pid, self.cfg.worker_stop_seconds)


def _ending(status: int) -> str:
    return f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.waitstatus_to_exitcode(status)}"


def run(params: Params, ports: list[int], folder: Path) -> None:
    """Listen on `ports`, load the served versions, fork a worker per port and keep them; until SIGTERM."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chdir(PROJECT_DIR)
    sys.path.insert(0, str(PROJECT_DIR))
    metrics = folder / "prometheus"           # the workers' request metrics, summed by any worker's /metrics
    metrics.mkdir(exist_ok=True)
    for stale in metrics.iterdir():
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    sockets = [listen(port) for port in ports]   # bound first: connections wait in the queue while versions load
    threadpool_limits(params.serving.blas_threads, user_api="blas")
    torch.set_num_threads(params.serving.blas_threads)   # also keeps OpenMP from starting threads a fork would lose
    tag = os.environ.get(TAG_ENV) or None
    started = time.monotonic()
    importlib.import_module(SERVICE.split(":")[0])   # imported once, before the load freezes the heap: shared too
    preloaded = {t: preload(params, t) for t in served_tags(params, tag)}
    log.info("loaded %s in %.0f s", ", ".join(r.tag for r in preloaded.values()), time.monotonic() - started)
    workers = Workers(sockets, folder, params.serving)
    stopping = False

    def request_stop(*_) -> None:
        nonlocal stopping
        stopping = True
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    workers.start()
    next_look = time.monotonic() + params.serving.swap_poll_seconds
    try:
        while True:
            time.sleep(params.serving.launcher_look_seconds)
            if stopping:   # the workers got the same signal (one process group): not forked again
                break
            workers.restart_ended()
            if None in preloaded and time.monotonic() >= next_look:
                next_look = time.monotonic() + params.serving.swap_poll_seconds
                promoted = production_tag(params)
                if promoted is not None and promoted != preloaded[None].tag:
                    log.info("production is now %s: loading it to fork the workers from", promoted)
                    preloaded[None] = preload(params, None)
                    workers.replace_all()
                    log.info("every worker forked from %s", preloaded[None].tag)
    finally:
        workers.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m components.deployment.prefork", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ports", required=True, help="the workers' ports on 127.0.0.1, comma-separated (one worker each)")
    parser.add_argument("--folder", required=True, type=Path, help="the workers' logs and workers.json")
    args = parser.parse_args(argv)
    configure_logging()
    params_file = os.environ.get("INTEREST_PARAMS") or PROJECT_DIR / "params.yaml"
    try:
        ports = [int(p) for p in args.ports.split(",")]
    except ValueError:
        parser.error(f"--ports takes port numbers separated by commas, not {args.ports!r}")
    try:
        run(load_params(Path(params_file)), ports, args.folder)
    except InterestError as exc:
        log.error("%s", exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
