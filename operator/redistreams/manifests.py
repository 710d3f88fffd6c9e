"""Reading manifests from files, folders and stdin.

Errors name the file, the document, the resource and the field, and every error in
the input is reported at once. Documents of other kinds are skipped with a notice so a
whole GitOps folder can be passed.

Input may be hostile: it must be UTF-8, and each YAML document is composed into nodes and
measured (nesting depth, alias expansion) before any Python objects are built from it, so
an alias bomb or a deeply nested value is an input error, not a MemoryError or a
RecursionError later on.
"""

from __future__ import annotations

import gc
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO, Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from yaml.constructor import BaseConstructor, ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .model import API, API_GROUP, DEFAULT_NAMESPACE, RESOURCE_MODELS, ConsumerGroup, Resource, Topic
from .printable import shown

try:  # the C loader is much faster on big folders
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    # the same safe constructors and interface, over the pure-Python parser
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

STDIN = "<stdin>"
# Deepest nesting of collections in one document. Real manifests of any kind stay far below:
# of ~19,000 YAML and JSON documents on a build machine the deepest (CRD schemas in
# kube-openapi's test data) nest 34 levels, about 40 inside a CRD. Well under what recursive
# consumers survive (PyYAML's dumper fails near 350 levels, pydantic's serialiser at 255).
MAX_DEPTH = 100
# Expanded node counts are capped here so a billion-laughs count stays a small integer.
_COUNT_CAP = 10**12
YAML_TAG = "tag:yaml.org,2002:"


class _Loader(_SafeLoader):
    """The safe loader, with values that cannot be converted reported as YAML errors."""

    def construct_undefined(self, node: Node) -> Any:
        tag = "!!" + node.tag[len(YAML_TAG):] if node.tag.startswith(YAML_TAG) else node.tag
        raise ConstructorError(None, None, f"unsupported tag {_short(tag)} (manifests are plain YAML)",
                               node.start_mark)


def _checked(construct: Any, what: str) -> Any:
    """A scalar constructor that turns its conversion errors (a date like 2020-13-45, an
    integer past Python's 4300-digit limit, ``!!int abc``) into a ConstructorError."""

    def construct_checked(loader: Any, node: Node) -> Any:
        try:
            return construct(loader, node)
        except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError) as exc:
            if what == "integer" and len(node.value) > sys.get_int_max_str_digits() > 0:
                problem = f"integer too large ({len(node.value)} digits)"
            else:  # datetime's reasons ("month must be in 1..12") help; the others do not
                detail = f": {exc}" if what == "timestamp" and isinstance(exc, ValueError) else ""
                problem = f"invalid {what} {_quote(node.value)}{detail} (quote it to make it a string)"
            raise ConstructorError(None, None, problem, node.start_mark) from None

    return construct_checked


_Loader.add_constructor(None, _Loader.construct_undefined)
for _tag, _what in (("int", "integer"), ("float", "number"), ("bool", "boolean"), ("timestamp", "timestamp")):
    _Loader.add_constructor(YAML_TAG + _tag, _checked(_SafeLoader.yaml_constructors[YAML_TAG + _tag], _what))

STR_TAG, MAP_TAG, SEQ_TAG = YAML_TAG + "str", YAML_TAG + "map", YAML_TAG + "seq"
# The safe resolver's implicit tags by first character (PyYAML walks two lists per scalar).
_IMPLICIT: dict[str | None, tuple[tuple[str, re.Pattern[str]], ...]] = {
    start: tuple(resolvers) for start, resolvers in _Loader.yaml_implicit_resolvers.items()
}
if None in _IMPLICIT or _Loader.yaml_path_resolvers:  # pragma: no cover - what _resolve leaves out
    raise ImportError("this PyYAML's safe resolver has wildcard or path resolvers")


def _resolve(self: _Loader, kind: type[Node], value: str | None, implicit: tuple[bool, bool]) -> str:
    """BaseResolver.resolve for the safe loader (no path resolvers), without its list
    building: the composer calls it for every node, a third of the parse."""
    if kind is ScalarNode:
        if implicit[0]:
            assert value is not None
            for tag, regexp in _IMPLICIT.get(value[:1], ()):
                if regexp.match(value):
                    return tag
        return STR_TAG
    return MAP_TAG if kind is MappingNode else SEQ_TAG


_Loader.resolve = _resolve  # type: ignore[assignment,method-assign]


class _Unusual(Exception):
    """A node _tree_value leaves to PyYAML's constructor (tags, merge keys, odd keys)."""


def _tree_value(node: Node, loader: _Loader) -> Any:
    """The Python value of an anchor-free document (a tree): what the safe constructor
    builds, in a tenth of the time. Plain strings, maps and lists are built here; other
    scalars by the loader's constructors; anything else raises _Unusual."""
    cls = node.__class__
    if cls is ScalarNode:
        return node.value if node.tag == STR_TAG else loader.construct_object(node)
    if cls is MappingNode:
        if node.tag != MAP_TAG:
            raise _Unusual
        mapping = {}
        for key, value in node.value:
            if key.__class__ is not ScalarNode or key.tag != STR_TAG:
                raise _Unusual  # merge keys, non-string and unhashable keys
            mapping[key.value] = _tree_value(value, loader)
        return mapping
    if node.tag != SEQ_TAG:
        raise _Unusual
    return [_tree_value(item, loader) for item in node.value]


def _construct(node: Node, loader: _Loader, tree: bool) -> Any:
    """A document's value. A tree is built directly; should that fail in any way, PyYAML's
    constructor builds it again, so values and errors are exactly PyYAML's."""
    if tree:
        try:
            return _tree_value(node, loader)
        except (_Unusual, yaml.YAMLError):
            pass
        finally:
            BaseConstructor.__init__(loader)  # what construct_object remembered of this document
    return loader.construct_document(node)


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
    # Groups whose Topic is not among the manifests: a consumer team applies its own file.
    # The caller finds the Topic in Redis (``resolve_topic``) or reports it (``unresolved_error``).
    unresolved: list[Loaded] = field(default_factory=list)
    external_topics: dict[tuple[str, str], Topic] = field(default_factory=dict)

    @property
    def topics(self) -> list[Topic]:
        return [r.resource for r in self.resources if isinstance(r.resource, Topic)]

    @property
    def groups(self) -> list[ConsumerGroup]:
        return [r.resource for r in self.resources if isinstance(r.resource, ConsumerGroup)]

    @property
    def groups_with_topics(self) -> list[tuple[ConsumerGroup, Topic]]:
        """Groups whose Topic is known (declared, or resolved from Redis), with it."""
        return [(g, self.topic_for(g)) for g in self.groups if self.knows_topic_of(g)]

    def sources(self) -> dict[tuple[str, str, str], Source]:
        """Where each resource came from, by (kind, namespace, name)."""
        return {(type(r.resource).__name__, r.resource.namespace, r.resource.name): r.source for r in self.resources}

    def knows_topic_of(self, group: ConsumerGroup) -> bool:
        ref = (group.namespace, group.spec.topicRef.name)
        return ref in self._topics_by_name or ref in self.external_topics

    def topic_for(self, group: ConsumerGroup) -> Topic:
        """The Topic a group refers to: among the manifests, else resolved from Redis
        (KeyError for a group in ``unresolved``)."""
        ref = (group.namespace, group.spec.topicRef.name)
        return self._topics_by_name.get(ref) or self.external_topics[ref]

    def resolve_topic(self, group: Loaded, stream: str) -> None:
        """The group's Topic, found in Redis' ownership registry as owning ``stream``."""
        res = group.resource
        assert isinstance(res, ConsumerGroup)
        ref = (res.namespace, res.spec.topicRef.name)
        self.external_topics[ref] = Topic.model_validate({
            "apiVersion": API, "kind": "Topic", "metadata": {"name": ref[1], "namespace": ref[0]},
            "spec": {"streamName": stream},
        })
        self.unresolved.remove(group)

    @staticmethod
    def unresolved_error(group: Loaded, where: str) -> str:
        res = group.resource
        assert isinstance(res, ConsumerGroup)
        return _clean(
            f'{_at(group)}: spec.topicRef.name: Topic "{res.spec.topicRef.name}" not found in namespace '
            f'"{res.namespace}" among the given manifests{where}: apply the Topic first, or include its '
            "file with -f"
        )

    def streams(self) -> dict[str, list[str]]:
        """Every stream key the manifests declare, with the names of the groups declared
        on it (Topics in order first, then their groups in order)."""
        declared: dict[str, list[str]] = {t.stream: [] for t in self.topics}
        for group, topic in self.groups_with_topics:
            declared.setdefault(topic.stream, []).append(group.group)
        return declared

    @cached_property
    def _topics_by_name(self) -> dict[tuple[str, str], Topic]:
        return {(t.namespace, t.name): t for t in self.topics}


# -- messages ------------------------------------------------------------------------

_SHORT = 80  # longest value quoted in a message
_LONG = 1000  # longest message; longer ones lose their middle


def _clean(message: str) -> str:
    """A message safe to print on one line: escapes for invisible characters, bounded length."""
    message = shown(message)
    if len(message) > _LONG:
        message = f"{message[:_LONG * 2 // 3]} … {message[-_LONG // 3:]}"
    return message


def _short(text: str) -> str:
    return text if len(text) <= _SHORT else f"{text[:_SHORT]}… ({len(text)} characters)"


def _quote(value: Any) -> str:
    """A value from the input for a message: bounded, collections named, not shown."""
    if isinstance(value, str):
        return f'"{_short(value)}"'
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64 * 4:
        return f"an integer of {value.bit_length()} bits"  # str() of it may be refused
    if isinstance(value, bytes):
        return f"binary data ({len(value)} bytes)"
    if isinstance(value, (set, frozenset)):
        return f"a set ({len(value)} items)"
    dumped = yaml.safe_dump(value, default_flow_style=True, width=1 << 20)
    return _short(dumped.strip().removesuffix("...").strip())


def _field_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


_TYPE_WORDS = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "string_type": "a string",
    "bool_type": "a boolean (true or false)",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def describe_validation_error(err: ErrorDetails) -> str:
    """One pydantic error as ``field: message`` in the API server's vocabulary."""
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    kind = err["type"]
    if kind == "invalid_key" or loc[-1:] == ("[key]",):
        # A YAML key like 1, true or null; pydantic puts the key itself at the end of loc.
        loc = loc[:-1] if kind == "invalid_key" else loc[:-2]
        message = f"key {_quote(err.get('input'))} must be a string (quote it)"
    elif kind == "extra_forbidden":
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
    path = _field_path(loc)
    return f"{path}: {message}" if path else message


def _resource_word(doc: dict[str, Any]) -> str:
    kind = doc.get("kind")
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    what = kind if isinstance(kind, str) and kind else "document without kind" if kind is None else _quote(kind)
    return f'{_short(what)} "{_short(name)}"' if isinstance(name, str) else _short(what)


# -- text and YAML ----------------------------------------------------------------------


class _NotUtf8(ValueError):
    pass


def _utf8(data: bytes | str) -> str:
    """The text of a manifest, or _NotUtf8 saying where the first bad byte is."""
    if isinstance(data, str):  # a text stream: back to bytes (undecodable ones were escaped)
        text_in = data
        try:
            data = text_in.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            data = text_in.encode("utf-8", "surrogatepass")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        column = len(data[line_start:exc.start].decode("utf-8")) + 1
        hint = "; it looks like UTF-16 (save it as UTF-8)" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise _NotUtf8(
            f"not valid UTF-8 (line {line}, column {column}): cannot decode byte "
            f"0x{data[exc.start]:02x} ({exc.reason}){hint}"
        ) from None
    # A byte-order mark may start any document (YAML 1.2), e.g. of files joined with cat.
    return _LINE_BOM.sub("", text) if "\ufeff" in text else text


_LINE_BOM = re.compile("^\ufeff", re.MULTILINE)


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """``invalid YAML (line L, column C): problem`` from any PyYAML error."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if isinstance(exc, yaml.reader.ReaderError):
        # libyaml reports a byte offset into the UTF-8 text, without line and column.
        data = text.encode("utf-8", "surrogatepass")
        start = data.rfind(b"\n", 0, exc.position) + 1
        column = len(data[start:exc.position].decode("utf-8", "replace")) + 1
        line = data.count(b"\n", 0, exc.position) + 1
        where = f" (line {line}, column {column})"
        problem = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
    else:
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    return f"invalid YAML{where}: {problem or exc}"


def _where(node: Node) -> str:
    return f"(line {node.start_mark.line + 1}, column {node.start_mark.column + 1})"


def _children(node: Node) -> list[Node]:
    if node.__class__ is MappingNode:
        return [part for pair in node.value for part in pair]
    return node.value if node.__class__ is SequenceNode else []


def _too_deep(root: Node) -> Node | None:
    """The first collection nested deeper than MAX_DEPTH in a tree (a document without
    anchors); one pass over its collections, level by level."""
    level = [root]
    for _ in range(MAX_DEPTH):
        below = []
        for node in level:
            if node.__class__ is MappingNode:
                for key, value in node.value:
                    if key.__class__ is not ScalarNode:
                        below.append(key)
                    if value.__class__ is not ScalarNode:
                        below.append(value)
            elif node.__class__ is SequenceNode:
                below += [item for item in node.value if item.__class__ is not ScalarNode]
        if not below:
            return None
        level = below
    return level[0]


def _excessive_aliasing(expanded: int, distinct: int) -> bool:
    """go-yaml's rule (kubectl's YAML library): aliases may make up 99% of a document
    of up to 400,000 nodes, falling to 10% from 4,000,000 nodes on."""
    aliased = expanded - distinct
    if aliased <= 100 or expanded <= 1000:
        return False
    low, high = 400_000, 4_000_000
    allowed = 0.99 - 0.89 * (min(max(expanded, low), high) - low) / (high - low)
    return aliased > allowed * expanded


def _alias_problem(root: Node) -> str | None:
    """Depth, expansion and recursion of a document whose aliases share nodes: one
    post-order pass over its distinct nodes, the sizes of shared ones memoised."""
    size: dict[int, int] = {}  # id(collection) -> nodes under it, aliases expanded
    height: dict[int, int] = {}
    open_: set[int] = set()
    scalars: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if node.__class__ is ScalarNode:
            scalars.add(key)
            continue
        children = _children(node)
        if done:
            open_.discard(key)
            size[key] = min(_COUNT_CAP, 1 + sum(size.get(id(c), 1) for c in children))
            height[key] = 1 + max((height.get(id(c), 0) for c in children), default=0)
            if height[key] > MAX_DEPTH:
                return f"nested more than {MAX_DEPTH} levels deep {_where(node)}"
            continue
        if key in size:
            continue  # shared, already measured
        if key in open_:
            return f"recursive alias {_where(node)}: a node contains an alias to itself"
        open_.add(key)
        stack.append((node, True))
        stack += [(c, False) for c in children]
    expanded, distinct = size.get(id(root), 1), len(size) + len(scalars)
    if _excessive_aliasing(expanded, distinct):
        count = f"more than {_COUNT_CAP:,}" if expanded >= _COUNT_CAP else f"{expanded:,}"
        return f"excessive aliasing {_where(root)}: aliases expand its {distinct:,} nodes to {count}"
    return None


def _documents(text: str) -> Iterable[tuple[Node, str | None, _Loader, bool]]:
    """Each document's node, with what makes it unsafe to build (None if nothing) and
    whether it is a tree (no anchors)."""
    loader = _Loader(text)
    try:
        end = 0
        while loader.check_node():
            node = loader.get_node()
            assert node is not None  # check_node: a document follows
            start, end = end, node.end_mark.index
            # No anchor, no alias: a tree, whose size the text already bounds.
            if text.find("&", start, end) < 0:
                deep = _too_deep(node)
                too_deep = None if deep is None else f"nested more than {MAX_DEPTH} levels deep {_where(deep)}"
                yield node, too_deep, loader, True
            else:
                yield node, _alias_problem(node), loader, False
    finally:
        loader.dispose()


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


# -- the loader ---------------------------------------------------------------------------


class Loader:
    """Collects resources from many sources, then validates them as a set."""

    def __init__(self, default_namespace: str = DEFAULT_NAMESPACE) -> None:
        self.default_namespace = default_namespace
        self.result = ManifestSet()

    def _error(self, message: str) -> None:
        self.result.errors.append(_clean(message))

    def _notice(self, message: str) -> None:
        self.result.notices.append(_clean(message))

    def add_path(self, path: str, stdin: IO[str] | IO[bytes] | None = None) -> None:
        if path == "-":
            stream = stdin if stdin is not None else sys.stdin
            try:  # the bytes, not the locale's decoding of them
                data = getattr(stream, "buffer", stream).read()
            except (OSError, AttributeError, ValueError) as exc:  # closed or missing stdin
                self._error(f"{STDIN}: cannot read: {getattr(exc, 'strerror', None) or exc}")
                return
            self.add_bytes(data, STDIN)
            return
        if not os.path.exists(path):
            self._error(f"{path}: no such file or directory")
            return
        found = False
        for file in _iter_files(path):
            found = True
            try:
                data = file.read_bytes()
            except OSError as exc:
                self._error(f"{file}: cannot read: {exc.strerror or exc}")
                continue
            self.add_bytes(data, str(file))
        if not found:
            self._notice(f"{path}: no *.yaml or *.yml files found")

    def add_bytes(self, data: bytes | str, name: str) -> None:
        try:
            text = _utf8(data)
        except _NotUtf8 as exc:
            self._error(f"{name}: {exc}")
            return
        self.add_text(text, name)

    def add_text(self, text: str, name: str) -> None:
        number = 0
        try:
            for number, (node, problem, loader, tree) in enumerate(_documents(text), start=1):
                source = Source(name, number)
                if problem:
                    self._error(f"{source}: {problem}")
                    continue
                try:
                    doc = _construct(node, loader, tree)
                except yaml.YAMLError as exc:
                    BaseConstructor.__init__(loader)  # drop the half-built document
                    self._error(f"{source}: {_yaml_problem(exc, text)}")
                    continue
                self._add_document(doc, source)
        except yaml.YAMLError as exc:
            # libyaml checks characters ahead of the parser: a document number would mislead.
            where = "" if isinstance(exc, yaml.reader.ReaderError) else f" document {number + 1}:"
            self._error(f"{name}:{where} {_yaml_problem(exc, text)}")
        except RecursionError:  # pragma: no cover - only PyYAML's pure-Python composer recurses
            self._error(f"{name}: document {number + 1}: nested too deeply")

    def _add_document(self, doc: Any, source: Source) -> None:
        if doc is None:
            return
        if not isinstance(doc, dict):
            self._error(f"{source}: expected a mapping with apiVersion and kind, got {_quote(doc)}")
            return
        api_version, kind = doc.get("apiVersion"), doc.get("kind")
        if kind == "List" and api_version == "v1" and isinstance(doc.get("items"), list):
            for index, item in enumerate(doc["items"], start=1):
                self._add_document(item, Source(source.path, source.document, index))
            return
        group = api_version.split("/")[0] if isinstance(api_version, str) and "/" in api_version else None
        if group != API_GROUP:
            near_miss = _near_miss(api_version, group, kind)
            if near_miss:
                self._error(f"{source}: {_resource_word(doc)}: apiVersion: {near_miss} (expected {API})")
                return
            version = api_version if isinstance(api_version, str) else _quote(api_version)
            self._notice(f"skipping {_resource_word(doc)} ({_short(version)}) in {source}")
            return
        if api_version != API:
            self._error(
                f"{source}: {_resource_word(doc)}: apiVersion: unsupported version {_quote(api_version)} "
                f"(expected {API})"
            )
            return
        model = RESOURCE_MODELS.get(kind) if isinstance(kind, str) else None
        if model is None:
            problem = f"unknown kind {_quote(kind)} in {API_GROUP}" if isinstance(kind, str) or kind is None \
                else f"must be a string, got {_quote(kind)}"
            self._error(f"{source}: kind: {problem} (expected Topic or ConsumerGroup)")
            return
        if isinstance(doc.get("metadata"), dict) and doc["metadata"].get("namespace") in (None, ""):
            doc = {**doc, "metadata": {**doc["metadata"], "namespace": self.default_namespace}}
        try:
            resource = model.model_validate(doc)
        except ValidationError as exc:
            for err in exc.errors():
                self._error(f"{source}: {_resource_word(doc)}: {describe_validation_error(err)}")
            return
        self.result.resources.append(Loaded(resource, source))

    def finish(self) -> ManifestSet:
        """Cross-resource checks: duplicates, shared streams, dangling topicRefs."""
        result = self.result
        seen: dict[tuple[str, str, str], Loaded] = {}
        streams: dict[str, Loaded] = {}
        groups: dict[tuple[str, str], Loaded] = {}
        topics = {
            (r.resource.namespace, r.resource.name): r.resource for r in result.resources
            if isinstance(r.resource, Topic)
        }
        for loaded in result.resources:
            res = loaded.resource
            ident = (res.kind, res.namespace, res.name)
            if ident in seen:
                self._error(
                    f"{_at(loaded)}: metadata.name: duplicate of the {res.kind} in namespace "
                    f'"{res.namespace}" at {seen[ident].source}'
                )
                continue
            seen[ident] = loaded
            if isinstance(res, Topic):
                other = streams.get(res.stream)
                if other is not None:
                    self._error(
                        f'{_at(loaded)}: spec.streamName: stream "{res.stream}" is also declared by '
                        f'{other.resource.kind} "{other.resource.name}" at {other.source}'
                    )
                else:
                    streams[res.stream] = loaded
            else:
                topic = topics.get((res.namespace, res.spec.topicRef.name))
                if topic is None:
                    result.unresolved.append(loaded)
                    continue
                key = (topic.stream, res.group)
                if key in groups:
                    self._error(
                        f'{_at(loaded)}: spec.groupName: group "{res.group}" on stream "{key[0]}" is also '
                        f'declared by ConsumerGroup "{groups[key].resource.name}" at {groups[key].source}'
                    )
                else:
                    groups[key] = loaded
        return result


def _edit_distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance, or limit + 1 once it exceeds limit."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


def _near_miss(api_version: Any, group: str | None, kind: Any) -> str | None:
    """Why a document of another API group is surely meant for us (a typo that would
    otherwise be skipped, leaving a pipeline green that applied nothing), or None.

    Other groups are skipped: a GitOps folder holds Deployments, ConfigMaps, and other
    projects' kinds named Topic (Crossplane's sns.aws.upbound.io, say)."""
    if group is not None:
        if group.lower() == API_GROUP or "redistream" in group.lower() \
                or _edit_distance(group.lower(), API_GROUP, 2) <= 2:
            return f"unknown API group {_quote(group)}"
        return None
    if kind in RESOURCE_MODELS:  # a Topic without a group: the core group has no such kind
        return "required field is missing" if api_version is None else f"unsupported value {_quote(api_version)}"
    return None


def _at(loaded: Loaded) -> str:
    """Where a resource is, for a message: ``file: document 2: Topic "orders"``."""
    return f'{loaded.source}: {loaded.resource.kind} "{loaded.resource.name}"'


def load(
    paths: list[str], default_namespace: str = DEFAULT_NAMESPACE, stdin: IO[str] | IO[bytes] | None = None
) -> ManifestSet:
    loader = Loader(default_namespace)
    # Many small acyclic objects (nodes, dicts, models): the cyclic collector would rescan
    # the growing heap again and again (a quarter of the time at 40,000 documents), while
    # reference counting frees them all the same. Paused as the engine pauses it.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for path in paths:
            loader.add_path(path, stdin=stdin)
        return loader.finish()
    finally:
        if collecting:
            gc.enable()
