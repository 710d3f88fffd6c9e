"""A consumer process for the chaos test: records each message, then acknowledges it."""

import asyncio
import sys

from redistreams.pubsub import open_subscription


async def main(url: str, out: str) -> None:
    subscription = await open_subscription(url, block=0.5, reclaim_interval=0.5)
    with open(out, "a", buffering=1) as record:
        while True:
            batch = await subscription.receive_batch(50, timeout=1)
            # Written before the ack: a kill in between gives a duplicate, never a loss.
            record.write("".join(f"{m.body.decode()}\n" for m in batch))
            if batch:
                await asyncio.sleep(0.02)  # "work": a kill lands between recording and acknowledging
            subscription.ack(*batch)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
