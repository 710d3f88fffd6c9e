"""The tutorial's Python service: publishes to and consumes from the "orders" topic with
redistreams.pubsub, in the Go driver's format (REDIS_URL names the server, as for Go).

    python service.py publish N          send N messages
    python service.py consume GROUP N    receive and acknowledge N messages as a consumer of GROUP
"""

from __future__ import annotations

import json
import os
import socket
import sys

from redistreams.pubsub import Message, sync

TOPIC_URL = "redis://orders"


def publish(n: int) -> None:
    with sync.open_topic(TOPIC_URL) as topic:
        for i in range(1, n + 1):
            body = json.dumps({"order": i, "from": "python"})
            topic.send(Message(body.encode(), {"sender": "orders-py"}))
            print("sent", body)


def consume(group: str, n: int) -> None:
    # A consumer name unique per process (and per pod: use the pod name there).
    consumer = f"orders-py-{socket.gethostname()}-{os.getpid()}"
    with sync.open_subscription(f"redis://{group}?topic=orders&consumer={consumer}") as subscription:
        for _ in range(n):
            message = subscription.receive(timeout=60)
            print(f"received {message.body.decode()} from {(message.metadata or {}).get('sender')}")
            message.ack()


if __name__ == "__main__":
    match sys.argv[1:]:
        case ["publish", count]:
            publish(int(count))
        case ["consume", group, count]:
            consume(group, int(count))
        case _:
            sys.exit("usage: service.py publish N | service.py consume GROUP N")
