"""Tenancy: which stream names each namespace may declare on a shared Redis.

An operator setting (``--tenant NS=PREFIX``, repeatable; ``--tenancy-file``; the chart's
``tenancy:``) maps namespaces to allowed stream-name prefixes. Once any entry is given,
a namespace not listed may declare nothing, unless a ``*`` entry applies to every
namespace not listed. ``{namespace}`` in a prefix stands for the namespace's own name
(``*={namespace}/``: every namespace gets streams under its own name); an empty prefix
allows every stream name. Pure: no Redis, no Kubernetes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

WILDCARD = "*"
NAMESPACE_PLACEHOLDER = "{namespace}"


class TenancyError(ValueError):
    """An entry or file that cannot be read: a start-up error."""


@dataclass(frozen=True)
class Tenancy:
    """Namespace -> allowed stream-name prefixes (``*``: every namespace not listed)."""

    prefixes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return bool(self.prefixes)

    def allowed(self, namespace: str) -> tuple[str, ...]:
        """The prefixes this namespace may use (empty: none at all)."""
        listed = self.prefixes.get(namespace)
        if listed is None:
            listed = self.prefixes.get(WILDCARD, ())
        return tuple(p.replace(NAMESPACE_PLACEHOLDER, namespace) for p in listed)

    def refusal(self, namespace: str, stream: str) -> str | None:
        """Why ``namespace`` may not declare ``stream``; None when it may (or tenancy is off)."""
        if not self.enabled:
            return None
        allowed = self.allowed(namespace)
        if any(stream.startswith(p) for p in allowed):
            return None
        if not allowed:
            return (f'stream "{stream}" refused: namespace {namespace} may declare no streams '
                    "(the operator's tenancy setting lists no prefix for it, and no * entry)")
        shown = ", ".join(f'"{p}"' for p in allowed)
        return (f'stream "{stream}" is outside the prefixes namespace {namespace} may use ({shown}, '
                "from the operator's tenancy setting); nothing was written to Redis for it")

    def describe(self) -> str:
        return "; ".join(f"{ns}={','.join(p) or '(none)'}" for ns, p in sorted(self.prefixes.items()))

    @classmethod
    def parse(cls, entries: Iterable[str] = (), mapping: Mapping[str, Any] | None = None) -> Tenancy:
        """From ``NS=PREFIX`` entries (repeatable: a namespace may get several prefixes)
        and a mapping such as a tenancy file's (namespace: prefix or list of prefixes)."""
        prefixes: dict[str, list[str]] = {}
        for entry in entries:
            namespace, sep, prefix = entry.partition("=")
            namespace = namespace.strip()
            if not sep or not namespace:
                raise TenancyError(f"tenancy entry {entry!r}: expected NAMESPACE=PREFIX (e.g. team-a=team-a/)")
            prefixes.setdefault(namespace, []).append(prefix)
        for namespace, value in (mapping or {}).items():
            values = value if isinstance(value, list) else [value]
            if not isinstance(namespace, str) or not namespace or \
                    not all(isinstance(v, str) for v in values):
                raise TenancyError(f"tenancy entry {namespace!r}: expected a namespace mapped to a prefix "
                                   "or a list of prefixes (strings)")
            prefixes.setdefault(namespace, []).extend(values)
        return cls({ns: tuple(dict.fromkeys(p)) for ns, p in prefixes.items()})

    @classmethod
    def load(cls, entries: Iterable[str] = (), path: str | None = None) -> Tenancy:
        """``parse`` with a YAML file's mapping (``tenancy:`` at the top, or the mapping itself)."""
        mapping: Any = None
        if path:
            import yaml

            try:
                with open(path, encoding="utf-8") as handle:
                    mapping = yaml.safe_load(handle) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise TenancyError(f"tenancy file {path}: {exc}") from None
            if isinstance(mapping, dict) and isinstance(mapping.get("tenancy"), dict):
                mapping = mapping["tenancy"]
            if not isinstance(mapping, dict):
                raise TenancyError(f"tenancy file {path}: expected a mapping of namespace to prefixes")
        return cls.parse(entries, mapping)
