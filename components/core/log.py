"""Logging set-up, called by entry points only (CLI, DAG tasks, service)."""
import logging
import os

# libraries that log every import-time registration at INFO; their warnings still come through
QUIET_LIBRARIES = ("great_expectations", "alembic.runtime.plugins", "httpx")


def configure_logging(level: str | None = None) -> None:
    level = (level or os.environ.get("INTEREST_LOG_LEVEL", "INFO")).upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    # where a host set up logging first (a BentoML worker: root at WARNING), basicConfig does
    # nothing: the project's own records still pass at the level asked ("now serving <tag>")
    logging.getLogger("components").setLevel(level)
    # a host's dictConfig (BentoML's worker) disables the loggers that existed before it: in a
    # worker forked from a process that loaded the project (deployment/prefork.py), all of them
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith("components") and isinstance(logger, logging.Logger):
            logger.disabled = False
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
