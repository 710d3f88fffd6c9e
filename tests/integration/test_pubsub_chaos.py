"""At-least-once under fire: consumer processes SIGKILLed at random while 10,000 messages flow."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

from redistreams.pubsub import sync
from tests.support.redis_server import RedisServer

CONSUMER = Path(__file__).parent / "helpers" / "chaos_consumer.py"
TOTAL = 10_000


def test_every_message_is_acknowledged_despite_killed_consumers(redis_server: RedisServer, tmp_path: Path) -> None:
    seed = int(os.environ.get("CHAOS_SEED", time.time()))
    rng = random.Random(seed)
    print(f"chaos seed {seed}")
    raw = redis_server.client()
    raw.xgroup_create("chaos", "workers", "$", mkstream=True)  # provisioned before any publisher
    env = dict(os.environ, REDIS_URL=redis_server.url)
    records: set[Path] = set()

    def start(name: str) -> subprocess.Popen[bytes]:
        out = tmp_path / f"{name}.log"
        records.add(out)  # a restart under the same name appends to the same record
        url = f"redis://workers?topic=chaos&consumer={name}&autoclaim=1s"
        return subprocess.Popen([sys.executable, str(CONSUMER), url, str(out)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    consumers = {f"c{i}": start(f"c{i}") for i in range(3)}

    def publish() -> None:
        with sync.open_topic("redis://chaos", redis_url=redis_server.url) as topic:
            for start_at in range(0, TOTAL, 100):
                topic.send_batch([str(n).encode() for n in range(start_at, start_at + 100)])
                time.sleep(0.05)

    publisher = threading.Thread(target=publish)
    publisher.start()
    kills = 0
    generation = 0
    try:
        while kills < 8:
            time.sleep(rng.uniform(0.3, 0.9))
            name = rng.choice(sorted(consumers))
            consumers[name].kill()
            consumers[name].wait()
            kills += 1
            # Half come back under the same name (own pending list first), half never do
            # (their entries must be reclaimed by the others).
            if rng.random() < 0.5:
                consumers[name] = start(name)
            else:
                del consumers[name]
                generation += 1
                consumers[f"n{generation}"] = start(f"n{generation}")
        publisher.join(120)
        assert not publisher.is_alive()

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            (group,) = raw.xinfo_groups("chaos")
            if group["pending"] == 0 and group["lag"] == 0:
                break
            time.sleep(0.2)
        (group,) = raw.xinfo_groups("chaos")
    finally:
        for process in consumers.values():
            process.kill()
            process.wait()

    assert raw.xlen("chaos") == TOTAL
    assert group["pending"] == 0 and group["lag"] == 0, group  # everything delivered and acknowledged
    seen = [int(line) for path in records if path.exists() for line in path.read_text().split()]
    missing = set(range(TOTAL)) - set(seen)
    assert not missing, f"lost {len(missing)} messages (seed {seed})"
    duplicates = len(seen) - len(set(seen))
    print(f"{kills} kills, {len(records)} consumer processes, {len(seen)} deliveries, {duplicates} duplicates")
    assert duplicates < TOTAL  # duplicates are allowed (at least once), not a second full copy

