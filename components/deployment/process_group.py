"""Stopping a server the project started in a process group of its own (`start_new_session`),
whether this process started it (reaped here) or an earlier command did (only its pid kept)."""
from __future__ import annotations

import os
import signal
import time

POLL_SECONDS = 0.2


def stop_process_group(pid: int, grace_seconds: float) -> bool:
    """SIGTERM to the group, SIGKILL after the grace period; False when it was not running."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:   # our child: reap it
                return True
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(POLL_SECONDS)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True
