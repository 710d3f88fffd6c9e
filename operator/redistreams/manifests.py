"""Reading manifests from files, folders and stdin.

Errors name the file, the document, the resource and the field, and every error in
the input is reported at once. Documents of other kinds are skipped with a notice so a
whole GitOps folder can be passed.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO, Any, Iterable

import yaml
from pydantic import ValidationError

from .model import API, API_GROUP, DEFAULT_NAMESPACE, RESOURCE_MODELS, ConsumerGroup, Resource, Topic

try:  # the C loader is much faster on big folders
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader


@dataclass(frozen=True)
class Source:
    """Where a resource came from, for messages."""

    path: str
    document: int
    item: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}: document {self.document}"
        return where if self.item is None else f"{where}: item {self.item}"


@dataclass(frozen=True)
class Loaded:
    resource: Resource
    source: Source


@dataclass
class ManifestSet:
    """Validated resources plus what was skipped and what was wrong."""

    resources: list[Loaded] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def topics(self) -> list[Topic]:
        return [r.resource for r in self.resources if isinstance(r.resource, Topic)]

    @property
    def groups(self) -> list[ConsumerGroup]:
        return [r.resource for r in self.resources if isinstance(r.resource, ConsumerGroup)]

    def topic_for(self, group: ConsumerGroup) -> Topic:
        """The Topic a group refers to (validated to exist by Loader.finish)."""
        return self._topics_by_name[(group.namespace, group.spec.topicRef.name)]

    @cached_property
    def _topics_by_name(self) -> dict[tuple[str, str], Topic]:
        return {(t.namespace, t.name): t for t in self.topics}


def _field_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _quote(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


_TYPE_WORDS = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "string_type": "a string",
    "bool_type": "a boolean (true or false)",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def describe_validation_error(err: dict[str, Any]) -> str:
    """One pydantic error as ``field: message`` in the API server's vocabulary."""
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    path = _field_path(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        message = "unknown field"
    elif kind == "missing":
        message = "required field is missing"
    elif kind in _TYPE_WORDS:
        message = f"must be {_TYPE_WORDS[kind]}, got {_quote(err.get('input'))}"
    elif kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        message = f"unsupported value {_quote(err.get('input'))}: must be {expected}"
    elif kind == "value_error":
        message = str(err["ctx"]["error"]) if "ctx" in err else err["msg"]
    elif kind in ("greater_than_equal", "less_than_equal"):
        message = f"{err['msg'].replace('Input should be', 'must be')}, got {_quote(err.get('input'))}"
    else:
        message = err["msg"]
    return f"{path}: {message}" if path else message


def _resource_word(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return f'{doc.get("kind")} "{name}"' if isinstance(name, str) else str(doc.get("kind"))


def _iter_files(path: str) -> Iterable[Path]:
    root = Path(path)
    if root.is_dir():
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.endswith((".yaml", ".yml")):
                    yield Path(dirpath) / name
    else:
        yield root


class Loader:
    """Collects resources from many sources, then validates them as a set."""

    def __init__(self, default_namespace: str = DEFAULT_NAMESPACE) -> None:
        self.default_namespace = default_namespace
        self.result = ManifestSet()

    def add_path(self, path: str, stdin: IO[str] | None = None) -> None:
        if path == "-":
            self.add_text((stdin or sys.stdin).read(), "<stdin>")
            return
        if not os.path.exists(path):
            self.result.errors.append(f"{path}: no such file or directory")
            return
        found = False
        for file in _iter_files(path):
            found = True
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                self.result.errors.append(f"{file}: cannot read: {exc}")
                continue
            self.add_text(text, str(file))
        if not found:
            self.result.notices.append(f"{path}: no *.yaml or *.yml files found")

    def add_text(self, text: str, name: str) -> None:
        number = 0
        try:
            for number, doc in enumerate(yaml.load_all(text, Loader=_Loader), start=1):
                self._add_document(doc, Source(name, number))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            self.result.errors.append(f"{name}: document {number + 1}: invalid YAML{where}: {problem}")

    def _add_document(self, doc: Any, source: Source) -> None:
        if doc is None:
            return
        if not isinstance(doc, dict):
            self.result.errors.append(f"{source}: expected a mapping with apiVersion and kind")
            return
        api_version, kind = doc.get("apiVersion"), doc.get("kind")
        if kind == "List" and api_version == "v1" and isinstance(doc.get("items"), list):
            for index, item in enumerate(doc["items"], start=1):
                self._add_document(item, Source(source.path, source.document, index))
            return
        group = api_version.split("/")[0] if isinstance(api_version, str) and "/" in api_version else None
        if group != API_GROUP:
            what = f'{kind} "{(doc.get("metadata") or {}).get("name")}"' if kind else "document without kind"
            self.result.notices.append(f"skipping {what} ({api_version}) in {source}")
            return
        if api_version != API:
            self.result.errors.append(
                f'{source}: {_resource_word(doc)}: apiVersion: unsupported version "{api_version}" '
                f"(expected {API})"
            )
            return
        model = RESOURCE_MODELS.get(kind) if isinstance(kind, str) else None
        if model is None:
            self.result.errors.append(
                f'{source}: kind: unknown kind "{kind}" in {API_GROUP} (expected Topic or ConsumerGroup)'
            )
            return
        if isinstance(doc.get("metadata"), dict) and not doc["metadata"].get("namespace"):
            doc = {**doc, "metadata": {**doc["metadata"], "namespace": self.default_namespace}}
        try:
            resource = model.model_validate(doc)
        except ValidationError as exc:
            for err in exc.errors():
                self.result.errors.append(f"{source}: {_resource_word(doc)}: {describe_validation_error(err)}")
            return
        self.result.resources.append(Loaded(resource, source))

    def finish(self) -> ManifestSet:
        """Cross-resource checks: duplicates, shared streams, dangling topicRefs."""
        result = self.result
        seen: dict[tuple[str, str, str], Loaded] = {}
        streams: dict[str, Loaded] = {}
        groups: dict[tuple[str, str], Loaded] = {}
        topics = {
            (r.resource.namespace, r.resource.name): r for r in result.resources if isinstance(r.resource, Topic)
        }
        for loaded in result.resources:
            res = loaded.resource
            ident = (res.kind, res.namespace, res.name)
            where = f'{loaded.source}: {res.kind} "{res.name}"'
            if ident in seen:
                result.errors.append(
                    f"{where}: metadata.name: duplicate of the {res.kind} in namespace "
                    f'"{res.namespace}" at {seen[ident].source}'
                )
                continue
            seen[ident] = loaded
            if isinstance(res, Topic):
                other = streams.get(res.stream)
                if other is not None:
                    result.errors.append(
                        f'{where}: spec.streamName: stream "{res.stream}" is also declared by '
                        f'{other.resource.kind} "{other.resource.name}" at {other.source}'
                    )
                else:
                    streams[res.stream] = loaded
            else:
                topic = topics.get((res.namespace, res.spec.topicRef.name))
                if topic is None:
                    result.errors.append(
                        f'{where}: spec.topicRef.name: Topic "{res.spec.topicRef.name}" not found in '
                        f'namespace "{res.namespace}" among the given manifests'
                    )
                    continue
                key = (topic.resource.stream, res.group)
                if key in groups:
                    result.errors.append(
                        f'{where}: spec.groupName: group "{res.group}" on stream "{key[0]}" is also '
                        f'declared by ConsumerGroup "{groups[key].resource.name}" at {groups[key].source}'
                    )
                else:
                    groups[key] = loaded
        return result


def load(paths: list[str], default_namespace: str = DEFAULT_NAMESPACE, stdin: IO[str] | None = None) -> ManifestSet:
    loader = Loader(default_namespace)
    for path in paths:
        loader.add_path(path, stdin=stdin)
    return loader.finish()
