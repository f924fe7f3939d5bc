"""Finding partitioners and formats by short name, Confluent class name, entry point or path.

Built-ins are listed in one table per kind (``partitioners/__init__.py``,
``formats/__init__.py``); third-party plugins register through the entry-point groups
``s3sink.partitioners`` and ``s3sink.formats`` or are named by a dotted ``module.Class`` path.
A name registered twice is an error.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from s3sink.errors import PluginError


def _import(target: str) -> Any:
    module_name, _, attr = target.replace(":", ".").rpartition(".")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"cannot load {target}: {exc}") from None


def registry(builtin: Mapping[str, str], group: str) -> dict[str, str]:
    """Short name -> import target, built-ins plus entry points; duplicates are refused."""
    table = dict(builtin)
    for ep in entry_points(group=group):
        if ep.name in table:
            raise PluginError(
                f"{group}: plugin name {ep.name!r} is registered twice ({table[ep.name]} and "
                f"{ep.value}); uninstall one of them"
            )
        table[ep.name] = ep.value
    return table


def resolve(
    kind: str,
    config_key: str,
    name: str,
    builtin: Mapping[str, str],
    aliases: Mapping[str, str],
    group: str,
) -> Any:
    """The class for ``name``: a short name, a known alias, an entry point or a dotted path."""
    table = registry(builtin, group)
    short = aliases.get(name, name)
    if short in table:
        found = _import(table[short])
    elif "." in name:
        found = _import(name)
    else:
        raise PluginError(
            f"{config_key}: unknown {kind} {name!r}; use one of {', '.join(sorted(table))}, a "
            "Confluent class name or a dotted module.Class path",
            key=config_key,
        )
    if not isinstance(found, type):
        raise PluginError(
            f"{config_key}: {name} is not a {kind} class (it is a {type(found).__name__})",
            key=config_key,
        )
    return found


def check(kind: str, config_key: str, name: str, plugin: object, protocol: type) -> None:
    """Refuse at start-up a loaded class that does not implement the ``protocol``."""
    if isinstance(plugin, protocol):
        return
    members = [m for m in vars(protocol) if not m.startswith("_")]
    members += [m for m in getattr(protocol, "__annotations__", {}) if m not in members]
    missing = sorted(m for m in members if not hasattr(plugin, m))
    raise PluginError(
        f"{config_key}: {name} is not a {kind}: it lacks {', '.join(missing)}",
        key=config_key,
    )
