"""Hash a file's bytes in chunks (data lineage in MLflow, stream identity in ingest)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_digest(path: Path | str, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file's bytes with `algorithm` (any name hashlib knows)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
