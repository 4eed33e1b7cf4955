"""The ways a run changes params.yaml without editing it: nested dicts (tests, derived copies),
`section.key=value` strings (as `dvc exp run -S` takes them) and INTEREST__SECTION__KEY
environment variables (a deployment's settings). Each names the key it could not place."""
from __future__ import annotations

from typing import Any

import yaml

from components.core.errors import ConfigError

ENV_PREFIX = "INTEREST__"


def merge_overrides(node: dict, values: dict) -> None:
    """Nested dict merge in place: sections and keys of `values` win."""
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(node.get(key), dict):
            merge_overrides(node[key], value)
        else:
            node[key] = value


def assignment_overrides(assignments: list[str]) -> dict[str, Any]:
    """`section.key=value` strings (as `dvc exp run -S` takes them) -> nested overrides; values are YAML."""
    out: dict[str, Any] = {}
    for text in assignments:
        dotted, sep, value = text.partition("=")
        keys = dotted.strip().split(".")
        if not sep or len(keys) < 2 or not all(keys):
            raise ConfigError(f"override {text!r}: expected section.key=value, e.g. split.cold_item_fraction=0")
        merge_overrides(out, {keys[0]: _nest(keys[1:], yaml.safe_load(value))})
    return out


def _nest(keys: list[str], value: Any) -> Any:
    return value if not keys else {keys[0]: _nest(keys[1:], value)}


def apply_env_overrides(raw: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = name[len(ENV_PREFIX):].lower().split("__")
        node = raw
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                raise ConfigError(
                    f"environment override {name}: '{'.'.join(keys)}' is not a key of params.yaml"
                )
            node = node[key]
        if keys[-1] not in node:
            raise ConfigError(
                f"environment override {name}: '{'.'.join(keys)}' is not a key of params.yaml"
            )
        node[keys[-1]] = yaml.safe_load(value)
    return raw
