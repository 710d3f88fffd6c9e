"""pub and sub: messages in the Go driver's format, for debugging.

Neither creates anything durable: pub writes to a stream key, sub reads as an existing
group (or peeks without one) and removes the consumer it added.
"""

from __future__ import annotations

import re
import sys
from contextlib import suppress

import click

from ..printable import shown
from .options import (
    EXIT_FAILED,
    EXIT_OK,
    Settings,
    connection_options,
    duration_option,
    output_option,
    settings,
)
from .output import fail, print_message


def _stream_of(target: str) -> str:
    """A plain stream key, or the key a Go-driver topic URL names."""
    from ..connection import redact
    from ..pubsub import URLError, parse_topic_url

    if not target.startswith("redis://"):
        return target
    try:
        return parse_topic_url(target).stream
    except URLError as exc:
        fail(redact(str(exc)))


def _plain_key_url(key: str) -> str:
    # The driver's URLs carry the name in host and path (cleaned like Go's path.Join).
    if any(c in key for c in "?#%@") or "//" in key or key.startswith("/") or key.endswith("/"):
        fail(f"{key!r} cannot be written as a Go-driver URL name; rename it or use a subscription URL")
    return f"redis://{key}"


def _headers_option(values: tuple[str, ...]) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="'-H/--header'")
        metadata[key] = value
    return metadata


@click.command()
@click.argument("topic")
@click.argument("bodies", nargs=-1)
@click.option("-H", "--header", "headers", multiple=True, metavar="KEY=VALUE", help="Metadata. Repeatable.")
@click.option("--lines", is_flag=True, help="Without BODY arguments: one message per stdin line (else all of stdin).")
@click.option("--raw", is_flag=True, help="Without BODY arguments: all of stdin byte for byte, a final newline "
              "included (binary payloads).")
@connection_options
@output_option("text", "json")
@click.pass_context
def pub(ctx: click.Context, topic: str, bodies: tuple[str, ...], headers: tuple[str, ...], lines: bool, raw: bool,
        redis_url: str | None, namespace: str | None, cluster_id: str | None, output: str) -> None:
    """Publish messages to TOPIC (a stream key or redis://KEY[?maxlen=N]) as the Go driver does.

    Each BODY is one message; without BODY the message is read from stdin, without the one
    line end that echo or a text file puts at its end (--raw keeps it; --lines: one
    message per non-empty line, without its line end).
    """
    import json

    from ..connection import ConnectionConfigError, redact
    from ..pubsub import Message, PubSubError, URLError, sync

    config = settings(ctx, redis_url, namespace, cluster_id)
    metadata = _headers_option(headers)
    url = topic if topic.startswith("redis://") else _plain_key_url(topic)
    if raw and (lines or bodies):
        raise click.UsageError("--raw is for a message read whole from stdin (not with BODY or --lines)")
    if bodies:
        payloads = [b.encode() for b in bodies]
    else:
        data = sys.stdin.buffer.read()
        if lines:
            payloads = [line.removesuffix(b"\r") for line in data.split(b"\n") if line.removesuffix(b"\r")]
        else:
            payloads = [data if raw else _without_final_line_end(data)]
    try:
        with sync.open_topic(url, redis_url=config.redis_url, retry_for=config.timeout) as publisher:
            ids = publisher.send_batch([Message(p, metadata) for p in payloads])
    except (URLError, ConnectionConfigError) as exc:
        fail(redact(str(exc)))
    except (PubSubError, ValueError) as exc:
        fail(str(exc), EXIT_FAILED)
    except Exception as exc:  # noqa: BLE001 - Redis unreachable and the like: one line, no traceback
        fail(f"{config.display_url}: {exc}", EXIT_FAILED)
    if output == "json":
        click.echo(json.dumps({"stream": publisher.stream, "ids": ids}))
    else:
        for entry_id in ids:
            click.echo(entry_id)


def _without_final_line_end(data: bytes) -> bytes:
    """What the user typed: `echo hi |` sends "hi", not "hi\\n". Exactly one line end
    goes (CRLF or LF); a body ending in blank lines keeps all but the last line end."""
    if data.endswith(b"\r\n"):
        return data[:-2]
    return data.removesuffix(b"\n")


# What --from takes: $, 0, or an entry ID as XREAD reads it (<ms> or <ms>-<seq>).
FROM_ID = re.compile(r"(0|\$|[0-9]{1,20}(-[0-9]{1,20})?)")
ID_PART_MAX = 2**64 - 1


def _from_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not FROM_ID.fullmatch(value) or any(int(p) > ID_PART_MAX for p in value.split("-") if p.isdigit()):
        raise click.BadParameter(f"{value!r} is not $, 0 or an entry ID (<ms> or <ms>-<seq>, e.g. 1700000000000-0)")
    return value


@click.command()
@click.argument("topic")
@click.option("--group", "-g", default=None, help="Read as this consumer group (acknowledging). Without: peek, "
              "reading the stream without a group and changing nothing.")
@click.option("--consumer", "-c", default=None, help="Consumer name with --group (default: redistreams-cli-HOST-PID).")
@click.option("--from", "start", default="$", show_default=True, callback=_from_option,
              help="Peek: start after this ID ($ = only new, 0 = from the beginning).")
@click.option("--count", type=click.IntRange(min=0), default=0, help="Stop after this many messages (0: keep going).")
@click.option("--timeout", default=None, metavar="DURATION",
              help="Stop when no message arrives for this long (e.g. 10s).")
@click.option("--no-ack", is_flag=True, help="With --group: leave messages pending (they will be redelivered).")
@connection_options
@output_option("text", "json")
@click.pass_context
def sub(ctx: click.Context, topic: str, group: str | None, consumer: str | None, start: str, count: int,
        timeout: str | None, no_ack: bool, redis_url: str | None, namespace: str | None, cluster_id: str | None,
        output: str) -> None:
    """Print messages of TOPIC (a stream key, or a Go-driver subscription URL) in the driver's format.

    Exit 0 after messages were printed, 1 when --timeout passed without any.
    """
    config = settings(ctx, redis_url, namespace, cluster_id)
    idle = duration_option(timeout, "--timeout") if timeout else None
    if topic.startswith("redis://") and "topic=" in topic:
        # A subscription URL, exactly as a Go or Python service would open it: it names
        # the group and the consumer itself.
        if group is not None or consumer is not None or start != "$":
            raise click.UsageError("a subscription URL names its group and consumer: give the URL, or a stream "
                                   "with --group/--consumer (--from is for peeking)")
        from ..pubsub import URLError, parse_subscription_url

        try:
            spec = parse_subscription_url(topic)
        except URLError as exc:
            fail(str(exc))
        url, stream, group, name = topic, spec.stream, spec.group, spec.consumer
    else:
        stream = _stream_of(topic)
        if group is None:
            printed = _peek(config, stream, start, count, idle, output)
            sys.exit(EXIT_OK if printed else EXIT_FAILED)
        if start != "$":
            raise click.UsageError("--from is for peeking (without --group): a group reads from its own position")
        import os
        import socket
        from urllib.parse import urlencode

        name = consumer or f"redistreams-cli-{socket.gethostname()}-{os.getpid()}"
        url = _plain_key_url(group) + "?" + urlencode({"topic": stream, "consumer": name})
    new_consumer = _check_group(config, stream, group, name)
    printed = _subscribe(config, url, count, idle, no_ack, output)
    if new_consumer:
        _remove_own_consumer(config, stream, group, name)
    sys.exit(EXIT_OK if printed else EXIT_FAILED)


def _check_group(config: Settings, stream: str, group: str, consumer: str) -> bool:
    """A debugging command creates nothing durable: the group must exist (a typo would
    otherwise become a group that holds retention back for good). True when the consumer
    is new, so it is removed again afterwards."""
    state = config.engine().observe([stream], owners=False, consumer_keys=[stream])[stream]
    if state.failure:
        fail(f"{shown(stream)}: {state.failure.message}", EXIT_FAILED)
    found = state.groups.get(group)
    if found is None:
        where = f'stream "{shown(stream)}"' + ("" if state.exists else " (which does not exist)")
        fail(f'group "{shown(group)}" not found on {where}; sub never creates groups: declare it in a '
             f"ConsumerGroup manifest and apply it, or peek without --group", EXIT_FAILED)
    known = {c.name for c in found.consumer_states or ()}
    return consumer not in known


def _remove_own_consumer(config: Settings, stream: str, group: str, name: str) -> None:
    """A debugging session leaves no consumer behind unless it holds pending entries."""
    with suppress(Exception):  # best effort; a consumer left behind is harmless
        config.engine().remove_consumer(stream, group, name)


def _subscribe(config: Settings, url: str, count: int, idle: float | None, no_ack: bool, output: str) -> int:
    from ..connection import ConnectionConfigError, redact
    from ..pubsub import PubSubError, URLError, sync

    printed = 0
    try:
        # Fetch no more than asked for: what is fetched and not printed would stay pending.
        subscription = sync.open_subscription(url, redis_url=config.redis_url, create_group=False,
                                              timeout=config.timeout, batch_size=min(count, 100) if count else 100)
        try:
            while not count or printed < count:
                batch = subscription.receive_batch(count - printed if count else 100, timeout=idle)
                if not batch:
                    break
                for message in batch:
                    print_message(message, output)
                if not no_ack:
                    subscription.ack(*batch)
                printed += len(batch)
        finally:
            unsent = subscription.shutdown(timeout=config.timeout)
        if unsent:
            fail(f"{len(unsent)} messages were printed but Redis did not confirm their acknowledgement: they stay "
                 f"pending and will be delivered again ({', '.join(unsent[:5])}{'…' if len(unsent) > 5 else ''})",
                 EXIT_FAILED)
    except (URLError, ConnectionConfigError) as exc:
        fail(redact(str(exc)))
    except (PubSubError, ValueError) as exc:
        fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # noqa: BLE001
        fail(f"{config.display_url}: {exc}", EXIT_FAILED)
    return printed


def _peek(config: Settings, stream: str, start: str, count: int, idle: float | None, output: str) -> int:
    """Messages read without a group (see ``pubsub.peek``), printed; how many."""
    import redis

    from ..connection import ConnectionConfigError
    from ..pubsub import peek

    printed = 0
    try:
        for message in peek(stream, redis_url=config.redis_url, start=start, count=count, idle=idle,
                            timeout=config.timeout):
            print_message(message, output)
            printed += 1
    except ConnectionConfigError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass
    except redis.RedisError as exc:
        fail(f"{config.display_url}: {exc}", EXIT_FAILED)
    return printed
