"""Publish and subscribe over Redis Streams, wire-compatible with the Go driver
``github.com/covrom/redispubsub`` (same URLs, same stream entries).

asyncio::

    topic = await open_topic("redis://orders")                  # REDIS_URL names the server
    await topic.send(Message(b"hello", {"kind": "greeting"}))
    sub = await open_subscription("redis://billing?topic=orders&consumer=billing-7f9c")
    async for message in sub:
        handle(message)
        message.ack()

Blocking code uses ``redistreams.pubsub.sync`` with the same names; ``peek`` reads a
stream without a group (debugging).
"""

from .cluster import SlotNotServedError
from .deadletter import DeadLetter
from .messages import (
    AcknowledgeError,
    ConsumerInUseError,
    DeadLetterError,
    GroupDeletedError,
    Message,
    PublishError,
    PubSubError,
    ReceivedMessage,
    SubscriptionClosed,
)
from .peek import peek
from .publisher import Topic, open_topic
from .subscriber import Subscription, open_subscription
from .urls import URLError, parse_go_duration, parse_subscription_url, parse_topic_url
from .wire import encode_headers

__all__ = [
    "AcknowledgeError", "ConsumerInUseError", "DeadLetter", "DeadLetterError", "GroupDeletedError", "Message",
    "PubSubError", "PublishError", "ReceivedMessage", "SlotNotServedError", "Subscription", "SubscriptionClosed",
    "Topic", "URLError",
    "encode_headers", "open_subscription", "open_topic", "parse_go_duration", "parse_subscription_url",
    "parse_topic_url", "peek",
]
