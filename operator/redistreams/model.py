"""The resource model: Topic and ConsumerGroup, redistreams.dev/v1alpha1.

These pydantic models are the single source of truth for the schema. The CLI validates
manifests with them and the CRDs are generated from their JSON schema, so every rule
here is expressed in a form the Kubernetes API server can enforce too (OpenAPI
keywords plus CEL rules in ``x-kubernetes-validations``). The status the operator writes
is modelled in ``model_status``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.fields import FieldInfo

from .units import DURATION_MAX, DURATION_PATTERN, parse_duration

API_GROUP = "redistreams.dev"
API_VERSION = "v1alpha1"
API = f"{API_GROUP}/{API_VERSION}"
KINDS = ("Topic", "ConsumerGroup")
DEFAULT_NAMESPACE = "default"

# Patterns are RE2-compatible (the API server uses Go regexps) and mean the same in Python.
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
START_ID_PATTERN = r"^(\$|0|[0-9]+-[0-9]+)$"
# RFC 3339 with seconds and an explicit offset (Z or +hh:mm), as Kubernetes writes times.
RFC3339_PATTERN = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})"
RESET_TO_PATTERN = rf"^(\$|0|[0-9]+-[0-9]+|{RFC3339_PATTERN})$"
RESET_TOKEN_PATTERN = r"^[-._:/A-Za-z0-9]+$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"

STREAM_NAME_MAX = 1024
GROUP_NAME_MAX = 256
START_ID_MAX = 41  # "<ms>-<seq>", both 64-bit unsigned
RESET_TOKEN_MAX = 128
U64_MAX = 2**64 - 1
INT64_MAX = 2**63 - 1

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _null_is_absent(data: Any) -> Any:
    """The API server prunes a null for a non-nullable field (then applies its default)."""
    if isinstance(data, dict) and None in data.values():  # a copy only when there is one
        return {key: value for key, value in data.items() if value is not None}
    return data


def _string_rule(pattern: str | None, max_length: int, describe: str) -> tuple[AfterValidator, FieldInfo]:
    """The metadata of a string checked by our own validator (clear messages) and published
    to the schema; unpacked into a module-level ``Annotated`` so type checkers see a ``str``."""
    compiled = re.compile(pattern) if pattern else None

    def check(value: str) -> str:
        if not value:
            raise ValueError(f"must not be empty ({describe})")
        if len(value) > max_length:
            raise ValueError(f"must be at most {max_length} characters")
        if compiled and not compiled.fullmatch(value):
            raise ValueError(f'invalid value "{value}": {describe}')
        return value

    schema: dict[str, Any] = {"minLength": 1, "maxLength": max_length}
    if pattern:
        schema["pattern"] = pattern
    field: FieldInfo = Field(json_schema_extra=schema)
    return AfterValidator(check), field


DnsSubdomain = Annotated[
    str, *_string_rule(DNS_SUBDOMAIN_PATTERN, 253, "must be a lowercase DNS subdomain (a-z, 0-9, '-', '.')")
]
DnsLabel = Annotated[str, *_string_rule(DNS_LABEL_PATTERN, 63, "must be a lowercase DNS label (a-z, 0-9, '-')")]
StreamName = Annotated[str, *_string_rule(None, STREAM_NAME_MAX, "a Redis key")]
GroupName = Annotated[str, *_string_rule(None, GROUP_NAME_MAX, "a consumer group name")]
SecretKey = Annotated[str, *_string_rule(SECRET_KEY_PATTERN, 253, "must consist of letters, digits, '-', '_' or '.'")]


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


Duration = Annotated[
    str,
    AfterValidator(_check_duration),
    Field(
        json_schema_extra={
            "minLength": 2,
            "maxLength": DURATION_MAX,
            "pattern": DURATION_PATTERN,
            "x-kubernetes-validations": [
                {"rule": "self.matches('[1-9]')", "message": "duration must be greater than zero"}
            ],
        }
    ),
]


# An entry ID's parts are unsigned 64-bit in Redis; the patterns admit any digits. Leading
# zeros are allowed and mean the same number (to Python, to CEL's uint() and to Redis).
ENTRY_ID_64_BITS = "both parts of an entry ID must fit in 64 bits"
# A failed uint() conversion fails validation, so the API server refuses what the CLI does.
ENTRY_ID_64_BITS_RULE = {
    "rule": "!self.matches('^[0-9]+-[0-9]+$') || "
            "(uint(self.split('-')[0]) >= 0u && uint(self.split('-')[1]) >= 0u)",
    "message": ENTRY_ID_64_BITS,
}


def _entry_id_fits(value: str) -> bool:
    """False for an entry ID ``<ms>-<seq>`` with a part past 64 bits ($ and 0 pass)."""
    return "-" not in value or all(int(part) <= U64_MAX for part in value.split("-"))


def _check_start_id(value: str) -> str:
    if len(value) > START_ID_MAX or not re.fullmatch(START_ID_PATTERN, value):
        raise ValueError(f'invalid start ID "{value}" (use $, 0 or an entry ID <ms>-<seq>)')
    if not _entry_id_fits(value):
        raise ValueError(f'invalid start ID "{value}": {ENTRY_ID_64_BITS}')
    return value


StartId = Annotated[
    str,
    AfterValidator(_check_start_id),
    Field(json_schema_extra={
        "minLength": 1, "maxLength": START_ID_MAX, "pattern": START_ID_PATTERN,
        "x-kubernetes-validations": [ENTRY_ID_64_BITS_RULE],
    }),
]

DeletionPolicy = Literal["Retain", "Delete"]


def reset_target_ms(value: str) -> int | None:
    """Milliseconds since the epoch for an RFC 3339 reset target; None for an entry ID."""
    if "T" not in value:
        return None
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (when - _EPOCH) // timedelta(milliseconds=1)


def _check_reset_to(value: str) -> str:
    invalid = (
        f'invalid reset target "{value}" (use $, 0, an entry ID <ms>-<seq> '
        "or an RFC 3339 time such as 2026-11-27T09:00:00Z)"
    )
    if len(value) > START_ID_MAX or not re.fullmatch(RESET_TO_PATTERN, value):
        raise ValueError(invalid)
    if "T" in value:
        try:
            ms = reset_target_ms(value)
        except ValueError:
            raise ValueError(f'{invalid}: not a valid date and time') from None
        if ms is None or ms < 0:
            raise ValueError(f'invalid reset target "{value}": times before 1970 have no entry IDs')
    elif not _entry_id_fits(value):
        raise ValueError(f'invalid reset target "{value}": {ENTRY_ID_64_BITS}')
    return value


ResetTarget = Annotated[
    str,
    AfterValidator(_check_reset_to),
    Field(json_schema_extra={
        "minLength": 1, "maxLength": START_ID_MAX, "pattern": RESET_TO_PATTERN,
        # The pattern admits Feb 30, 1969 and IDs past 64 bits; CEL's conversions refuse them
        # (a failed conversion fails validation), so the API server agrees with the CLI.
        "x-kubernetes-validations": [
            {"rule": "!self.contains('T') || timestamp(self) >= timestamp('1970-01-01T00:00:00Z')",
             "message": "must be a valid RFC 3339 time, not before 1970"},
            ENTRY_ID_64_BITS_RULE,
        ],
    }),
]
ResetToken = Annotated[
    str,
    *_string_rule(RESET_TOKEN_PATTERN, RESET_TOKEN_MAX, "must consist of letters, digits, '-', '_', '.', ':' or '/'"),
]


class _Spec(BaseModel):
    """Strict like the API server: no type coercion, unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        return _null_is_absent(data)


class SecretRef(_Spec):
    name: DnsSubdomain = Field(description="Secret in the resource's namespace.")
    key: SecretKey = Field("url", description="Key in the Secret holding the Redis URL.")


class Connection(_Spec):
    secretRef: SecretRef = Field(description="Secret with the Redis URL for this Topic.")


class Retention(_Spec):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.maxLength) || has(self.maxAge)",
                    "message": "set maxLength or maxAge",
                }
            ]
        }
    )

    maxLength: int | None = Field(
        None, ge=1, le=INT64_MAX, description="Keep at most this many entries."
    )
    maxAge: Duration | None = Field(None, description="Trim entries older than this.")
    allowTrimmingUnconsumed: bool = Field(
        False,
        description="Allow trimming entries that a consumer group has not yet received "
        "or acknowledged. Off by default: retention then stops at the oldest such entry.",
    )

    @model_validator(mode="after")
    def _needs_a_limit(self) -> Retention:
        if self.maxLength is None and self.maxAge is None:
            raise ValueError("set maxLength or maxAge")
        return self


class TopicSpec(_Spec):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.streamName) == has(oldSelf.streamName)",
                    "message": "streamName is immutable",
                }
            ]
        }
    )

    streamName: StreamName | None = Field(
        None,
        description="The Redis stream key (may contain '/' and ':'). Defaults to metadata.name.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "streamName is immutable"}
            ]
        },
    )
    retention: Retention | None = None
    deletionPolicy: DeletionPolicy = Field(
        "Retain",
        description="Retain keeps the stream when the Topic is deleted; Delete removes it "
        "if redistreams created it.",
    )
    connection: Connection | None = Field(
        None, description="Redis to use instead of the operator's default (operator only)."
    )


class TopicRef(_Spec):
    name: DnsSubdomain = Field(description="A Topic in the same namespace.")


class PositionReset(_Spec):
    token: ResetToken = Field(
        description="Any value not used before for this group: the reset is applied once per "
        "token, so re-applying the same manifest never resets twice. Change it to reset again."
    )
    to: ResetTarget = Field(
        description="$ (skip everything not yet delivered), 0 (the whole stream again), an entry "
        "ID <ms>-<seq> (deliver what comes after it), or an RFC 3339 time (deliver entries added "
        "at or after it)."
    )


class ConsumerCleanup(_Spec):
    idleAfter: Duration = Field(
        description="Remove consumers idle longer than this (90s, 15m, 36h, 7d, 1h30m…) that "
        "have no pending entries; consumers with pending entries are kept and reported."
    )


class ConsumerGroupSpec(_Spec):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.groupName) == has(oldSelf.groupName)",
                    "message": "groupName is immutable",
                }
            ]
        }
    )

    topicRef: TopicRef = Field(
        description="The Topic whose stream this group reads.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "topicRef is immutable"}
            ]
        },
    )
    groupName: GroupName | None = Field(
        None,
        description="The consumer group name in Redis. Defaults to metadata.name.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "groupName is immutable"}
            ]
        },
    )
    startId: StartId = Field(
        "$",
        description="Where a new group starts: $ (only new entries), 0 (the whole stream) "
        "or an entry ID. Used only when the group is created.",
    )
    reset: PositionReset | None = Field(
        None,
        description="One-shot move of an existing group's position (XGROUP SETID), applied once "
        "per token. Pending entries stay pending.",
    )
    consumerCleanup: ConsumerCleanup | None = Field(
        None, description="Remove idle consumers without pending entries. Absent: no cleanup."
    )
    deletionPolicy: DeletionPolicy = Field(
        "Retain",
        description="Retain keeps the group when the resource is deleted; Delete destroys "
        "it if redistreams created it.",
    )


# Label keys and annotation keys: [prefix/]name; label values: empty or a name part.
_QUALIFIED_NAME = re.compile(
    r"(?:(?P<prefix>[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)/)?"
    r"(?P<name>([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])"
)
_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")


def _check_keys(values: dict[str, str], what: str) -> dict[str, str]:
    for key in values:
        match = _QUALIFIED_NAME.fullmatch(key)
        if not match or len(match["name"]) > 63 or len(match["prefix"] or "") > 253:
            raise ValueError(f'invalid {what} key "{key}" (use [prefix/]name, name at most 63 '
                             "characters of letters, digits, '-', '_' or '.')")
    return values


def _check_labels(values: dict[str, str]) -> dict[str, str]:
    _check_keys(values, "label")
    for key, value in values.items():
        if value and (len(value) > 63 or not _NAME_PART.fullmatch(value)):
            raise ValueError(f'invalid value "{value}" for label "{key}"')
    return values


class ObjectMeta(BaseModel):
    """The parts of Kubernetes metadata we use; the other ObjectMeta fields (uid,
    managedFields…) are allowed and ignored, anything else is an unknown field like it
    is for the API server under strict field validation."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: DnsSubdomain
    namespace: DnsLabel | None = None
    labels: Annotated[dict[str, str], AfterValidator(_check_labels)] = Field(default_factory=dict)
    annotations: Annotated[
        dict[str, str], AfterValidator(lambda v: _check_keys(v, "annotation"))
    ] = Field(default_factory=dict)
    # Set by the API server (present in exported manifests); not used.
    generateName: Any = None
    uid: Any = None
    resourceVersion: Any = None
    generation: Any = None
    creationTimestamp: Any = None
    deletionTimestamp: Any = None
    deletionGracePeriodSeconds: Any = None
    ownerReferences: Any = None
    finalizers: Any = None
    managedFields: Any = None
    selfLink: Any = None

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        return _null_is_absent(data)


class _Resource(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    apiVersion: Literal["redistreams.dev/v1alpha1"]
    metadata: ObjectMeta
    status: dict[str, Any] | None = None  # written by the operator; ignored on input

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        return _null_is_absent(data)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or DEFAULT_NAMESPACE

    @property
    def label(self) -> str:
        """kubectl-style short reference, e.g. ``topic/orders``."""
        return f"{self.kind.lower()}/{self.name}"  # type: ignore[attr-defined]


class Topic(_Resource):
    kind: Literal["Topic"]
    spec: TopicSpec = Field(default_factory=TopicSpec)

    @property
    def stream(self) -> str:
        return self.spec.streamName or self.metadata.name


class ConsumerGroup(_Resource):
    kind: Literal["ConsumerGroup"]
    spec: ConsumerGroupSpec

    @property
    def group(self) -> str:
        return self.spec.groupName or self.metadata.name


Resource = Topic | ConsumerGroup
RESOURCE_MODELS: dict[str, type[Topic] | type[ConsumerGroup]] = {
    "Topic": Topic,
    "ConsumerGroup": ConsumerGroup,
}


# Limits of the status the operator writes. Its models are in model_status.py, apart so
# that reading manifests does not build them; the operator's status code reads these too.
# metav1.Condition's validation, as in the Kubernetes API conventions:
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
ENTRY_ID_MAX = START_ID_MAX
REGISTRY_EPOCH_MAX = 80
CONSUMER_NAME_MAX = 256  # longer names are shortened in status
STATUS_LIST_MAX = 10
