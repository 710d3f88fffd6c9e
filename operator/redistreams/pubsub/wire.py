"""The stream entry format shared with the Go driver: fields ``headers`` and ``body``.

``headers`` holds Go's ``encoding/json`` output for a ``map[string]string`` (sorted keys,
no spaces, ``<``, ``>``, ``&``, U+2028 and U+2029 escaped; ``null`` for no metadata) and
``body`` the raw message bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

HEADERS = b"headers"
BODY = b"body"
NULL = b"null"

# Go's encoder escapes these for safe embedding in HTML; Python's does not.
_GO_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                             "\u2028": "\\u2028", "\u2029": "\\u2029"})


_encoded_headers: dict[tuple[tuple[str, str], ...], bytes] = {}  # publishers repeat the same few


def encode_headers(metadata: Mapping[str, str] | None) -> bytes:
    """The exact bytes Go's json.Marshal writes for this metadata (``null`` when empty)."""
    if not metadata:
        return NULL
    items = tuple(metadata.items())
    cached = _encoded_headers.get(items)
    if cached is not None:
        return cached
    encoded = _encode_headers(metadata)
    if len(encoded) <= 512:
        if len(_encoded_headers) >= 1024:
            _encoded_headers.clear()
        _encoded_headers[items] = encoded
    return encoded


def _encode_headers(metadata: Mapping[str, str]) -> bytes:
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata must map str to str, got {type(key).__name__}: {type(value).__name__} "
                            f"for {key!r}")
    text = json.dumps(metadata, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    try:
        return text.translate(_GO_ESCAPES).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"metadata is not valid Unicode (lone surrogate): {exc}") from None


def encode_body(body: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    raise TypeError(f"message body must be bytes or str, got {type(body).__name__}")


@dataclass(frozen=True, slots=True)
class Decoded:
    body: bytes
    metadata: dict[str, str]
    problem: str | None = None  # set when the entry is not in the driver's format


def decode_fields(flat: list[bytes] | None) -> Decoded | None:
    """Decode an entry's field list as Redis returns it ([k1, v1, k2, v2, …]).

    ``None`` (or no fields) is an entry deleted while it was pending. Entries not written
    in the driver's format are decoded as far as possible and carry a ``problem``.
    """
    decoded = decode_entry(flat)
    return None if decoded is None else Decoded(*decoded)


def decode_entry(flat: list[bytes] | None) -> tuple[bytes, dict[str, str], str | None] | None:
    """``decode_fields`` as a plain (body, metadata, problem) tuple: the subscriber's hot path."""
    if not flat:
        return None
    raw: bytes | None
    body: bytes | None
    if len(flat) == 4 and flat[0] == HEADERS and flat[2] == BODY:  # what we and Go write
        raw, body = flat[1], flat[3]
        cached = _parsed_headers.get(raw)
        if cached is not None:
            return body, dict(cached), None
    elif len(flat) == 4 and flat[0] == BODY and flat[2] == HEADERS:
        raw, body = flat[3], flat[1]
    else:
        fields = dict(zip(flat[::2], flat[1::2]))
        raw, body = fields.get(HEADERS), fields.get(BODY)
    problem = None if body is not None else "no 'body' field"
    metadata, header_problem = _metadata(raw)
    if header_problem:
        problem = f"{problem}; {header_problem}" if problem else header_problem
    return body if body is not None else b"", metadata, problem


_parsed_headers: dict[bytes, dict[str, str]] = {NULL: {}}  # services repeat the same few headers

shared_headers = _parsed_headers.get
"""``shared_headers(raw)``: the metadata of a ``headers`` value decoded before (valid, so
the entry has no problem), else None. Shared between messages: copy before handing out."""


def _metadata(raw: bytes | None) -> tuple[dict[str, str], str | None]:
    if raw is None or raw == NULL:
        return {}, None
    cached = _parsed_headers.get(raw)
    if cached is not None:
        return dict(cached), None
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except ValueError:
        return {}, "'headers' is not JSON"
    if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
        return {}, "'headers' is not a JSON object of strings"
    if len(raw) <= 512:
        if len(_parsed_headers) >= 1024:
            _parsed_headers.clear()
            _parsed_headers[NULL] = {}
        _parsed_headers[raw] = parsed
    return dict(parsed), None
