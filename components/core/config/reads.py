"""The sections' common base, which records every key read: a pipeline step's reads are what
its DVC stage must list (tests check dvc.yaml against them), so a changed key cannot leave a
stage's outputs stale while `dvc repro` says all is up to date."""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel, ConfigDict, PrivateAttr

_reads: ContextVar[set[str] | None] = ContextVar("interest_params_reads", default=None)


@contextmanager
def recording_reads() -> Iterator[set[str]]:
    """Collect the dotted params.yaml keys read inside the block: a pipeline step's reads are
    what its DVC stage must list (tests/e2e check dvc.yaml against them)."""
    reads: set[str] = set()
    token = _reads.set(reads)
    try:
        yield reads
    finally:
        _reads.reset(token)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    _key: str = PrivateAttr(default="")   # dotted name in params.yaml, e.g. "baselines.item_knn"

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if name[0] != "_" and name in type(self).model_fields and not isinstance(value, Section):
            reads = _reads.get()
            if reads is not None and self._key:   # no key: not from params.yaml (e.g. a bundle's settings)
                reads.add(f"{self._key}.{name}")
        return value

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        """A dump reads every key below this section that it does not exclude."""
        for name in set(type(self).model_fields) - set(kwargs.get("exclude") or ()):
            value = getattr(self, name)
            if isinstance(value, Section):
                value.model_dump()
        return super().model_dump(**kwargs)

    def settings(self) -> dict[str, Any]:
        """The section's values without its file locations (JSON types): what a model records of
        the configuration that made it."""
        paths = {name for name, field in type(self).model_fields.items() if field.annotation is Path}
        return self.model_dump(mode="json", exclude=paths)

    def _name_sections(self, prefix: str = "") -> None:
        for name, field in type(self).model_fields.items():
            value = self.__dict__[name]
            if isinstance(value, Section):
                value.__pydantic_private__["_key"] = f"{prefix}{field.alias or name}"
                value._name_sections(f"{prefix}{field.alias or name}.")
