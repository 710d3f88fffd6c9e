"""The baseline of bench/apply_cli.py: a compact implementation of the same contract.

    python bench/apply_baseline.py apply|plan DIR REDIS_URL [CLUSTER_ID]

Parses every *.yaml under DIR with libyaml (yaml.CSafeLoader, no checks, no models),
reads Redis as the engine does (per 500 streams: XINFO STREAM, XINFO GROUPS and one
HMGET of the ownership records; TIME once), sends the same claim scripts with the same
arguments for what is missing (SCRIPT LOAD in front, pipelines of 5,000), and prints one
line per resource as the CLI does. Imports nothing of redistreams: it is run as its own
interpreter, as the CLI is, so both pay for start-up.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys

import redis
import yaml

LUA = os.path.join(os.path.dirname(__file__), "..", "operator", "redistreams", "engine", "lua")
REGISTRY = "redistreams:owners"
INIT_GROUP = "redistreams:init"
OBSERVE_CHUNK, APPLY_CHUNK = 500, 5000


def field(*parts: str) -> str:
    return json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))


def script(name: str) -> tuple[str, str]:
    source = ""
    for part in ("ids", "registry", name):
        with open(os.path.join(LUA, f"{part}.lua"), encoding="utf-8") as file:
            source += file.read() + ("\n" if part != name else "")
    return source, hashlib.sha1(source.encode()).hexdigest()


def main() -> int:
    mode, folder, url = sys.argv[1:4]
    cluster = sys.argv[4] if len(sys.argv) > 4 else "default"
    topics: list[tuple[str, str, str]] = []  # namespace, name, stream
    groups: list[tuple[str, str, str, str]] = []  # namespace, name, topic name, group
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.endswith((".yaml", ".yml")):
                continue
            with open(os.path.join(dirpath, name), "rb") as file:
                for doc in yaml.load_all(file.read().decode("utf-8"), Loader=yaml.CSafeLoader):
                    meta, spec = doc["metadata"], doc.get("spec") or {}
                    namespace = meta.get("namespace") or "default"
                    if doc["kind"] == "Topic":
                        topics.append((namespace, meta["name"], spec.get("streamName") or meta["name"]))
                    else:
                        groups.append((namespace, meta["name"], spec["topicRef"]["name"],
                                       spec.get("groupName") or meta["name"]))
    streams = {(ns, name): stream for ns, name, stream in topics}
    groups_of: dict[str, list[str]] = {stream: [] for _, _, stream in topics}
    for ns, _, topic, group in groups:
        groups_of[streams[ns, topic]].append(group)

    client = redis.Redis.from_url(url, decode_responses=True, encoding_errors="surrogateescape", protocol=2)
    keys = list(groups_of)
    exists: dict[str, set[str] | None] = {}
    owners: dict[str, str | None] = {}
    for start in range(0, len(keys), OBSERVE_CHUNK):
        part = keys[start : start + OBSERVE_CHUNK]
        fields = [f for key in part for f in (field("topic", key), *(field("group", key, g) for g in groups_of[key]))]
        pipe = client.pipeline(transaction=False)
        for key in part:
            pipe.xinfo_stream(key)
            pipe.xinfo_groups(key)
        pipe.hmget(REGISTRY, [*fields, field("epoch")])
        if start == 0:
            pipe.time()
        replies = pipe.execute(raise_on_error=False)
        for index, key in enumerate(part):
            info = replies[2 * index + 1]
            exists[key] = None if isinstance(info, Exception) else {g["name"] for g in info}
        owners.update(zip(fields, replies[2 * len(part)]))

    lines: list[str] = []
    if mode == "plan":
        for _, name, stream in topics:
            text = "in sync" if exists[stream] is not None else f'create stream "{stream}"; record ownership'
            lines.append(f"{' ' if exists[stream] is not None else '+'} topic/{name}: {text}")
        for ns, name, topic, group in groups:
            stream = streams[ns, topic]
            there = exists[stream] is not None and group in exists[stream]  # type: ignore[operator]
            text = "in sync" if there else f'create group "{group}" on "{stream}" at the end of the stream; ' \
                                           "record ownership"
            lines.append(f"{' ' if there else '+'} consumergroup/{name}: {text}")
        sys.stdout.write("\n".join(lines) + "\n")
        return 1 if any(line[0] == "+" for line in lines) else 0

    epoch = json.dumps({"epoch": secrets.token_hex(8)}, separators=(",", ":"))
    claim_topic, claim_group = script("claim_topic"), script("claim_group")
    calls: list[tuple[tuple[str, str], list[str], str]] = []  # script, keys + args, line
    for ns, name, stream in topics:
        if exists[stream] is None:
            calls.append((claim_topic, [stream, REGISTRY, field("topic", stream), cluster, ns, name, INIT_GROUP,
                                        field("epoch"), epoch], f"topic/{name}"))
        else:
            lines.append(f"topic/{name} unchanged")
    for ns, name, topic, group in groups:
        stream = streams[ns, topic]
        if exists[stream] is None or group not in exists[stream]:  # type: ignore[operator]
            calls.append((claim_group, [stream, REGISTRY, field("group", stream, group), cluster, ns, name, group,
                                        "$", field("epoch"), epoch, field("topic", stream), cluster, ns, topic],
                          f"consumergroup/{name}"))
        else:
            lines.append(f"consumergroup/{name} unchanged")
    for start in range(0, len(calls), APPLY_CHUNK):
        part = calls[start : start + APPLY_CHUNK]
        pipe = client.pipeline(transaction=False)
        loaded = list(dict.fromkeys(s for s, _, _ in part))
        for source, _ in loaded:
            pipe.execute_command("SCRIPT", "LOAD", source)
        for (_, sha), args, _ in part:
            pipe.execute_command("EVALSHA", sha, 2, *args)
        replies = pipe.execute(raise_on_error=False)[len(loaded):]
        for (_, _, label), reply in zip(part, replies):
            detail = "created empty stream" if label.startswith("topic/") else "created group at the end of the stream"
            lines.append(f"{label} {reply[0]}: {detail}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
