"""The decision log: every priced request, for the drift monitor and the A/B report.

To Kafka topic `price-decisions` (keyed by session) when Kafka is configured, else to rotating
parquet files `decisions-<start>-<pid>-<n>.parquet` in a folder: a file is written when it holds
`rotate_rows` decisions or is `rotate_s` old, and on shutdown. A write that fails keeps the rows
in memory for the next attempt (up to `max_rows`; beyond that the loss is counted).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
DECISIONS_TOPIC = "price-decisions"
COLUMNS = (
    "decision_id",
    "ts",
    "session_id",
    "product_id",
    "mode",
    "arm",
    "ratio",
    "price",
    "base_price",
    "p_agent",
    "p_agent_detector",
    "reason",
    "degraded",
    "session_origins",  # distinct (client address, token) pairs the session was used from; > 1: flagged
    "features",
    "model_versions",
)


def record(decision: dict[str, Any], features: dict[str, float] | None) -> dict[str, Any]:
    """The logged row of one decision (features and model versions as JSON text)."""
    row = {k: decision.get(k) for k in COLUMNS if k not in ("features", "model_versions")}
    row["features"] = json.dumps(features or {}, separators=(",", ":"))
    row["model_versions"] = json.dumps(decision.get("model_versions") or {}, separators=(",", ":"))
    return row


class DecisionLog(ABC):
    """Where decisions go."""

    @abstractmethod
    def write(self, row: dict[str, Any]) -> None:
        """Log one decision (never blocks on I/O longer than a local append)."""

    def stats(self) -> dict[str, Any]:
        """Counters for /readyz."""
        return {}

    def close(self) -> None:  # noqa: B027 (optional hook: sinks without a buffer have nothing to flush)
        """Flush what is pending."""


class ParquetDecisionLog(DecisionLog):
    """Rotating parquet files in `folder`."""

    def __init__(
        self, folder: Path | str, rotate_rows: int = 10_000, rotate_s: float = 60.0, max_rows: int = 1_000_000
    ):
        self.folder = Path(folder)
        self.rotate_rows, self.rotate_s, self.max_rows = rotate_rows, rotate_s, max_rows
        self._rows: list[dict[str, Any]] = []
        self._started = time.time()
        self._files = 0
        self.written = 0
        self.dropped = 0
        self._flushing = False  # a background thread is writing a file (requests never wait for it)
        self._lock = threading.Lock()

    def write(self, row: dict[str, Any]) -> None:
        """Append; rotate to a file when the buffer is full or old."""
        with self._lock:
            if len(self._rows) >= self.max_rows:
                self.dropped += 1
                return
            self._rows.append(row)
            due = len(self._rows) >= self.rotate_rows or time.time() - self._started >= self.rotate_s
            if due and not self._flushing:
                self._flushing = True
                threading.Thread(target=self._flush_in_background, name="decision-log", daemon=True).start()

    def _flush_in_background(self) -> None:
        try:
            self.flush()
        finally:
            with self._lock:
                self._flushing = False

    def flush(self) -> Path | None:
        """Write the buffered rows to a new file; the path, or None when there was nothing (or it failed)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        with self._lock:
            rows, self._rows = self._rows, []
            started, self._started = self._started, time.time()
            n = self._files
            self._files += 1
        if not rows:
            return None
        path = self.folder / f"decisions-{int(started * 1000)}-{os.getpid()}-{n:05d}.parquet"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".parquet.tmp")
            pq.write_table(pa.Table.from_pylist(rows), tmp)
            tmp.replace(path)  # readers never see half a file
        except Exception as exc:
            log.error("decision log: could not write %s (%s); keeping %d rows", path, exc, len(rows))
            with self._lock:
                self._rows = rows + self._rows
            return None
        with self._lock:
            self.written += len(rows)
        return path

    def stats(self) -> dict[str, Any]:
        """Rows written, pending and dropped."""
        with self._lock:
            return {
                "sink": "parquet",
                "folder": str(self.folder),
                "written": self.written,
                "pending": len(self._rows),
                "dropped": self.dropped,
            }

    def close(self) -> None:
        """Write what is pending."""
        self.flush()


class KafkaDecisionLog(DecisionLog):
    """Decisions as JSON on `price-decisions`, keyed by session, through a BufferedPublisher."""

    def __init__(self, publisher: Any, topic: str = DECISIONS_TOPIC) -> None:
        self.publisher = publisher
        self.topic = topic

    def write(self, row: dict[str, Any]) -> None:
        """Offer the decision to the publisher (counted as dropped if its buffer is full)."""
        self.publisher.offer(
            self.topic, str(row["session_id"]).encode(), json.dumps(row, separators=(",", ":")).encode()
        )

    def stats(self) -> dict[str, Any]:
        """The publisher's counters."""
        return {"sink": "kafka", "topic": self.topic, **vars(self.publisher.stats())}
