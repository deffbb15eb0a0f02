"""A bounded, non-blocking Kafka publisher for the service (ingested events, price decisions).

Requests never wait for Kafka: `offer` appends to a bounded in-process buffer and returns; a
background thread connects (and reconnects) and drains it. When Kafka is down the buffer fills;
once it holds `capacity` messages, new ones are refused and counted in `dropped`: the loss is
bounded, counted and reported (`stats()`, /readyz), never silent. A message the broker
rejects after the producer's own retries goes back to the buffer while there is room.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class PublisherStats:
    """Counts since start: what was offered, sent, dropped, and what is waiting."""

    offered: int = 0
    sent: int = 0
    dropped: int = 0
    buffered: int = 0
    connected: bool = False


class BufferedPublisher:
    """Publish (topic, key, value) messages from a background thread through a bounded buffer."""

    def __init__(
        self, servers: str, capacity: int = 100_000, client_id: str = "phantom-serve", connect_timeout_s: float = 2.0
    ):
        self.servers = servers
        self.capacity = capacity
        self.client_id = client_id
        self.connect_timeout_s = connect_timeout_s
        self._buf: deque[tuple[str, bytes | None, bytes, list | None]] = deque()
        self._cv = threading.Condition()
        self._stats = PublisherStats()
        self.dropped_by_topic: dict[str, int] = {}  # what `dropped` counts, per topic (domain metrics)
        self._producer: Any = None
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="kafka-publisher", daemon=True)
        self._thread.start()

    def offer(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None
    ) -> bool:
        """Queue one message (with Kafka headers); False (and counted as dropped) when the buffer is full."""
        with self._cv:
            self._stats.offered += 1
            if len(self._buf) >= self.capacity:
                self._drop(topic)
                return False
            self._buf.append((topic, key, value, headers))
            self._cv.notify()
            return True

    def _drop(self, topic: str, n: int = 1) -> None:
        """Count dropped messages (call with the lock held)."""
        self._stats.dropped += n
        self.dropped_by_topic[topic] = self.dropped_by_topic.get(topic, 0) + n

    def drops(self) -> dict[str, int]:
        """Dropped messages per topic so far."""
        with self._cv:
            return dict(self.dropped_by_topic)

    def stats(self) -> PublisherStats:
        """A copy of the counters."""
        with self._cv:
            s = PublisherStats(**vars(self._stats))
            s.buffered = len(self._buf)
            return s

    def _connect(self) -> Any:
        from kafka import KafkaProducer

        from phantom.events.kafka import security_config

        return KafkaProducer(
            bootstrap_servers=self.servers,
            client_id=self.client_id,
            acks=1,
            linger_ms=5,
            retries=3,
            request_timeout_ms=5000,
            delivery_timeout_ms=15000,
            max_block_ms=1000,
            bootstrap_timeout_ms=int(self.connect_timeout_s * 1000),
            **security_config(),
        )

    def _requeue(self, message: tuple[str, bytes | None, bytes, list | None]) -> None:
        with self._cv:
            if len(self._buf) < self.capacity:
                self._buf.appendleft(message)
            else:
                self._drop(message[0])
            self._stats.connected = False

    def _sent(self, _: Any) -> None:
        with self._cv:
            self._stats.sent += 1

    def _run(self) -> None:
        while not self._stop:
            if self._producer is None:
                try:
                    self._producer = self._connect()
                    with self._cv:
                        self._stats.connected = True
                except Exception as exc:  # no broker: keep buffering, try again
                    log.debug("kafka connect failed: %s", exc)
                    time.sleep(0.5)
                    continue
            with self._cv:
                while not self._buf and not self._stop:
                    self._cv.wait(0.2)
                batch = [self._buf.popleft() for _ in range(min(len(self._buf), 1000))]
            for message in batch:
                topic, key, value, headers = message
                try:
                    future = self._producer.send(topic, key=key, value=value, headers=headers)
                except Exception:
                    self._requeue(message)
                    self._reset()
                    break
                future.add_callback(self._sent)
                future.add_errback(lambda _exc, m=message: self._requeue(m))

    def _reset(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                producer.close(timeout=0)
        time.sleep(0.5)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until the buffer is empty and the producer has sent everything; True if it did."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._cv:
                empty = not self._buf
            if empty and self._producer is not None:
                try:
                    self._producer.flush(timeout=max(deadline - time.monotonic(), 0.1))
                except Exception:
                    return False
                with self._cv:
                    if not self._buf:
                        return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        """Stop the thread and close the producer (what is still buffered is reported as dropped)."""
        self.flush(2.0)
        self._stop = True
        with self._cv:
            for topic, _, _ in self._buf:
                self._drop(topic)
            self._buf.clear()
            self._cv.notify_all()
        self._thread.join(timeout=5)
        if self._producer is not None:
            with contextlib.suppress(Exception):
                self._producer.close(timeout=2)
