# Two commands set up a fresh machine:  `make run` (whole pipeline)  and  `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Stages run `python -m pipelines.<stage>`: make that the venv's python.
export PATH := $(abspath $(BIN)):$(PATH)
# This machine's pip config names local indexes that may be absent; hide only those warnings.
QUIET_PIP := 2>&1 | { grep -v "WARNING: Location 'file:" || true; }
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: install run test lint check-shipped docs unit integration bench lock ui broker mlflow-server mlflow-migrate chromium clean bento serve monitor retrain \
	deploy-deps image run-image up rollout manifests prometheus prometheus-tools dashboard notebooks

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip $(QUIET_PIP)
	$(BIN)/python -m pip install -q -r requirements.lock $(QUIET_PIP)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e . $(QUIET_PIP)
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)  ## create .venv and install the locked stack

# OpenMP threads wait passively: spinning waiters starve the working threads on a busy machine
# (pipelines/common.py sets the same default for stages run by hand).
run: export OMP_WAIT_POLICY ?= PASSIVE
run: install  ## the whole pipeline on embedded defaults (no services needed); per-stage times at the end
	started=$$(date +%s); $(BIN)/dvc repro; $(BIN)/python -m phantom.ops.docs; $(BIN)/python -m pipelines.summary --started $$started

test: install lint chromium prometheus-tools deploy-deps  ## lint, then every test tier (starts its own Kafka broker and MLflow server; uses local Redis, PostgreSQL)
	$(BIN)/pytest $(PYTEST_ARGS)

docs: install  ## rewrite every figure the docs quote from the metrics files (markers: phantom/ops/docs.py)
	$(BIN)/python -m phantom.ops.docs

check-shipped: install  ## every shipped number (monitor thresholds, detector threshold, mu, lambda) agrees wherever it is held
	$(BIN)/python -m pipelines.check_shipped

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

unit: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

bench: install  ## print the throughput figures the issues ask for
	$(BIN)/python -m benchmarks.generate
	$(BIN)/python -m benchmarks.ingest
	$(BIN)/python -m benchmarks.reliability
	$(BIN)/python -m benchmarks.simulate

broker: install  ## a local Kafka-protocol broker (tansu) on 127.0.0.1:$${PORT:-9092}, in the foreground
	PYTHON=$(BIN)/python scripts/broker.sh

monitor: install  ## judge the newest traffic windows for drift (exit 1 + reports/drift/latest.json when one fails)
	$(BIN)/dvc repro monitor_reference monitor

# After a failing monitor whose recommended action is "retrain" (docs/monitor.md): rebuild the
# features from every ingested event (the newest window included), train both challengers
# (-f: their MLflow registration must happen even when DVC's run cache has the outputs), let the
# promotion gates decide on the frozen evaluation sets (the newest traffic), then rebuild the
# monitor's reference from the models that now serve.
retrain: install  ## features and challengers on the newest data; the promotion gates decide
	$(BIN)/dvc repro features
	$(BIN)/dvc repro -f -s train_detector train_multitask
	$(BIN)/dvc repro promote_detector promote_multitask
	$(BIN)/dvc repro monitor_reference

lock:  ## re-resolve the stack from pyproject ranges and freeze it
	rm -rf /tmp/phantom-lock && $(PYTHON) -m venv /tmp/phantom-lock
	/tmp/phantom-lock/bin/pip install -q --upgrade pip && /tmp/phantom-lock/bin/pip install -q ".[dev]"
	( echo "# Exact versions that install together on Python 3.11 (pip freeze of pyproject's deps + dev)."; \
	  echo "# Regenerate: make lock"; \
	  /tmp/phantom-lock/bin/pip freeze --exclude phantom | sed 's/+cpu$$//' ) > requirements.lock

bento: install  ## build the pricing Bento from the registry champions (MLFLOW_TRACKING_URI)
	$(BIN)/python -m pipelines.build_bento

serve: install  ## serve the latest pricing Bento on 127.0.0.1:$${PORT:-3000}
	$(BIN)/bentoml serve phantom-pricing:latest --host 127.0.0.1 --port $${PORT:-3000}

ui: install  ## MLflow UI on the embedded store
	$(BIN)/mlflow ui --backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db} --port $${PORT:-5000}

mlflow-server: install  ## MLflow tracking server on PostgreSQL (creates db+user if missing), foreground; Ctrl-C stops its process group
	$(BIN)/python -m phantom.registry.server

# Copy the embedded store (mlflow.db + mlruns/) into the server's store; run with the server stopped.
mlflow-migrate: install  ## SQLite store -> the PostgreSQL store of `make mlflow-server` (docs/registry.md)
	$(BIN)/python -m phantom.registry.server --create-only
	$(BIN)/python -m phantom.registry.migrate --source $${SOURCE:-sqlite:///mlflow.db} \
	  --dest $${PHANTOM_MLFLOW_DB:-postgresql://phantom@127.0.0.1:5432/phantom_mlflow} \
	  --artifacts-to $${PHANTOM_MLFLOW_ARTIFACTS:-mlartifacts}

# Debian's Prometheus, promtool (rule checks and unit tests) and the Pushgateway (docs/operate.md).
prometheus-tools:
	@test -x /usr/bin/promtool -a -x /usr/bin/prometheus-pushgateway || { [ "$$(id -u)" = 0 ] || { echo "prometheus missing: run as root or apt-get install prometheus prometheus-pushgateway"; exit 1; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus prometheus-pushgateway >/dev/null; }

prometheus: install prometheus-tools  ## Prometheus on :$${PROMETHEUS_PORT:-9090} scraping PHANTOM_SCRAPE_TARGETS (host:port,...) with deploy/prometheus/rules, a Pushgateway on :$${PUSHGATEWAY_PORT:-9091}
	$(BIN)/python -m phantom.ops.prometheus --pushgateway $${PUSHGATEWAY_PORT:-9091}

notebooks: install  ## execute notebooks/ headless on this checkout's outputs (dvc pull or make run first); figures in reports/notebooks/
	$(BIN)/python -m notebooks.execute

dashboard: install  ## regenerate deploy/grafana/phantom.json (the Grafana dashboard as code)
	$(BIN)/python -m phantom.ops.dashboard

# Containers (docs/deploy.md): Debian's buildah (chroot isolation: no OCI runtime can set rlimits here),
# debootstrap for the local base image, HAProxy in front of the replicas. Installed when missing (root).
DEPLOY_TOOLS := /usr/bin/buildah /usr/sbin/debootstrap /usr/sbin/haproxy
deploy-deps:
	@for f in $(DEPLOY_TOOLS); do test -x $$f || missing=1; done; [ -z "$$missing" ] || { \
	  [ "$$(id -u)" = 0 ] || { echo "buildah/debootstrap/haproxy missing: run as root or apt-get install buildah debootstrap haproxy"; exit 1; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah debootstrap haproxy >/dev/null; }

image: install deploy-deps  ## the Bento (BENTO=tag, default: the last `make bento`) as an OCI image, built by buildah; prints its tag
	$(BIN)/python -m phantom.deploy image $${BENTO:+--bento $$BENTO}

run-image: install deploy-deps  ## one container of the newest image (IMAGE=ref) on 127.0.0.1:$${PORT:-3000}, in the foreground
	$(BIN)/python -m phantom.deploy run $${IMAGE:+--image $$IMAGE}

up: install deploy-deps  ## $${REPLICAS:-2} replicas behind HAProxy on 127.0.0.1:$${PORT:-3000}, in the foreground
	$(BIN)/python -m phantom.deploy up $${IMAGE:+--image $$IMAGE} $${REPLICAS:+--replicas $$REPLICAS}

rollout: install  ## replace the replicas of a running `make up` one at a time by IMAGE=ref (a rollback: the previous image)
	$(BIN)/python -m phantom.deploy rollout --image $${IMAGE:?IMAGE=ref of the image to roll out}

manifests: install  ## compose file + HAProxy config + Kubernetes manifests for the Bento's image -> deploy/
	$(BIN)/python -m phantom.deploy manifests $${BENTO:+--bento $$BENTO}

# The browser the e2e tests drive (Debian's chromium: playwright cannot download its own here).
chromium:
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] || { echo "chromium missing: run as root or apt-get install chromium"; exit 1; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

clean:
	rm -rf $(VENV)
