"""The pricing Bento: declares the models it carries and mounts phantom.serve's API.

The logic lives in phantom/serve (importable and tested without a server); this file only
declares. `make bento` (python -m pipelines.build_bento) imports the registry champions into the
BentoML model store and writes build_info.json next to this file (their tags, registry versions,
registry URI, git commit), then builds the Bento from bentofile.yaml.
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

import bentoml

from phantom.serve import keepalive, runtime, timer_patch
from phantom.serve.api import create_app

timer_patch.apply()  # before BentoML builds its middleware stack in this worker
keepalive.apply(keepalive.seconds())  # before BentoML builds this worker's uvicorn.Config (PHANTOM_KEEPALIVE_S)

BUILD_INFO = json.loads(Path(__file__).with_name("build_info.json").read_text())
_state: dict = {"engine": None, "publisher": None}


def _engine():
    engine = _state["engine"]
    if engine is None:
        from phantom.serve.engine import ServeError

        raise ServeError("models are still loading")
    return engine


def _version() -> dict:
    return {**BUILD_INFO, "bento": os.environ.get("BENTO_TAG") or BUILD_INFO.get("bento")}


LEAN = runtime.http_stack() == "lean"  # PHANTOM_HTTP_STACK (docs/deploy.md, "CPU per request")
app = create_app(
    _engine,
    _version,
    lambda: runtime.status(_state["engine"], _state["publisher"]),
    examples=BUILD_INFO.get("examples"),
    lean=LEAN,
)


@bentoml.service(
    name="phantom-pricing",
    workers=int(os.environ.get("PHANTOM_WORKERS", "1")),  # one per core to serve 500+ rps (docs/serve.md)
    traffic={"timeout": 10},
    resources={"cpu": "1"},
    logging={"access": {"enabled": False}},  # a log line per request costs more than pricing it; metrics count requests
    # lean: BentoML's request metrics are labelled by raw path (a series per product id a client sends), so the
    # app's own phantom.serve.http_metrics label by route template and serve GET /metrics; no span per request
    # unless tracing is configured (BENTOML_CONFIG_OPTIONS can set tracing.excluded_urls back)
    metrics={"enabled": not LEAN},
    **({"tracing": {"excluded_urls": ".*"}} if LEAN else {}),
)
@bentoml.asgi_app(app, path="/")
class Pricing:
    """Agent-aware pricing: the registry champions, the fitted policy and the catalogue."""

    detector = bentoml.models.BentoModel(BUILD_INFO["models"]["detector"]["tag"])
    multitask = bentoml.models.BentoModel(BUILD_INFO["models"]["multitask"]["tag"])
    context = bentoml.models.BentoModel(BUILD_INFO["models"]["context"]["tag"])

    def __init__(self) -> None:
        from phantom.serve.domain_metrics import DomainMetrics

        runtime.one_thread()
        versions = {v["registry"]: v["version"] for v in BUILD_INFO["models"].values() if v.get("registry")}
        versions["bento"] = _version()["bento"]
        metrics = DomainMetrics()  # here, in the worker: BentoML has set PROMETHEUS_MULTIPROC_DIR by now
        engine, publisher = runtime.build_engine(
            bentoml.mlflow.load_model(self.detector),
            bentoml.mlflow.load_model(self.multitask),
            self.context.path,
            versions,
            metrics=metrics,
        )
        _state.update(engine=engine, publisher=publisher, watcher=runtime.watch(engine, publisher, metrics))
        gc.collect()
        gc.freeze()  # the import-time heap is never collected again: no 70-100 ms full collections

    def __is_ready__(self) -> bool:
        """Ready when the models are loaded; the online store has an in-process fallback."""
        return _state["engine"] is not None

    @bentoml.on_shutdown
    def close(self) -> None:
        """Flush the decision log and the Kafka buffer."""
        engine, publisher = _state["engine"], _state["publisher"]
        if _state.get("watcher") is not None:
            _state["watcher"].close()
        if engine is not None:
            engine.log.close()
        if publisher is not None:
            publisher.close()
