"""Stopping a server the project started: a process group of its own (`start_new_session`),
whether this process started it (reaped here) or an earlier command did (only its pid kept), or
one forked child (a service worker, deployment/prefork.py)."""
from __future__ import annotations

import os
import signal
import time
from typing import Callable

POLL_SECONDS = 0.2


def stop_process_group(pid: int, grace_seconds: float) -> bool:
    """SIGTERM to the group, SIGKILL after the grace period; False when it was not running."""
    return _stop(pid, grace_seconds, os.killpg)


def stop_process(pid: int, grace_seconds: float) -> bool:
    """The same for one process (a child sharing this process's group)."""
    return _stop(pid, grace_seconds, os.kill)


def _stop(pid: int, grace_seconds: float, send: Callable[[int, int], None]) -> bool:
    try:
        send(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        if _reaped(pid):
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(POLL_SECONDS)
    try:
        send(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    _reaped(pid, wait=True)
    return True


def _reaped(pid: int, wait: bool = False) -> bool:
    """True once `pid`, a child of this process, has ended and been reaped (False for another's)."""
    try:
        return os.waitpid(pid, 0 if wait else os.WNOHANG)[0] == pid
    except ChildProcessError:
        return False
