"""A person promotes, and rolls back, `agent-detector` in the MLflow UI; the gate respects it.

Everything is real: an `mlflow server` on PostgreSQL with served artifacts, detectors packaged
and registered as `train_detector` does, `python -m pipelines.promote` as a separate process,
and Debian's chromium driven by Playwright through the UI with clicks and typing.

The story, on one frozen evaluation set:
  v1  strong detector, v2 medium detector (registered in that order)
  gate: challenger v2, no champion yet           -> v2 champion (the floors alone)
  a person pins `champion` on the older v1 in the UI (it ranks agents better)
                                                 -> the Bento build pins v1 (and the pricing champion);
                                                    `bentoml serve` reports both versions and the tag
  v3  medium again                               -> gated against the person's v1: kept (against
                                                    the gate's own v2 it would have passed)
  v4  strong                                     -> no worse than v1 beyond tolerance: promoted
  the person rolls back to v1 (the same motion) and takes `challenger` off v4
                                                 -> the gate has nothing to promote, changes nothing;
                                                    the next Bento serves v1 again
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests import serve_support as ss
from tests.e2e import detectors
from tests.e2e import registry_ui as ui

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
MODEL = "agent-detector"
PRICING = "pricing-multitask"
GATE = {"minimum": {"roc_auc": 0.85}, "maximum": {"ece": 0.10}, "tolerance": {"roc_auc": 0.01}}


def _start_promote(env: dict[str, str], tmp: Path, *extra: str) -> subprocess.Popen:
    """`python -m pipelines.promote --model agent-detector` started as its own process."""
    metrics = tmp / "promotion.json"
    metrics.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pipelines.promote", "--model", MODEL, "--report", str(tmp / "promotion.md")]
    cmd += ["--metrics", str(metrics), *extra]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish_promote(proc: subprocess.Popen, tmp: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """Wait for a started promote; returns it and its summary."""
    out, err = proc.communicate(timeout=300)
    metrics = tmp / "promotion.json"
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return done, json.loads(metrics.read_text()) if metrics.exists() else {}


def _promote(env: dict[str, str], tmp: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Run promote to the end; returns it and its summary."""
    return _finish_promote(_start_promote(env, tmp, *extra), tmp)


def _gated(env: dict[str, str], tmp: Path, *extra: str) -> dict:
    done, summary = _promote(env, tmp, *extra)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return summary


@pytest.fixture(scope="session")
def pricing_world(server_starting, tmp_path_factory) -> Iterator[tuple[subprocess.Popen, Path, Path]]:
    """A small world and a quickly trained pricing champion, registered on the test's server by a process of its own.

    The Bento carries both champions; this one trains while the server starts and the detectors train.
    Yields (process, world folder, its log).
    """
    from phantom.serve.launch import stop

    root = tmp_path_factory.mktemp("pricing-world")
    log = root / "register.log"
    cmd = [sys.executable, "-m", "tests.serve_support", str(root), "--registry", server_starting.url, "--only", PRICING]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc, root, log
    finally:
        stop(proc)


def _processes_naming(text: str) -> list[int]:
    """Pids of live processes whose command line contains `text` (zombies have none)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:  # it exited while we looked
            continue
    return pids


def _build_and_serve(world: Path, env: dict[str, str], name: str, arbiter_dies: bool = False) -> dict:
    """Build the Bento from the registry's champions, `bentoml serve` it, ask /version and one ml price, stop it.

    With `arbiter_dies` BentoML's arbiter is SIGKILLed before the stop (a crash): its workers, in
    sessions of their own, must not outlive it either. Returns the tag, what the service answered,
    what the Bento recorded, and the seconds each step took.
    """
    import pandas as pd

    from phantom.registry.server import group_alive
    from phantom.serve.launch import serve_bento

    started = time.perf_counter()
    tag = ss.build_bento(world, env)
    built_s = time.perf_counter() - started
    product = str(pd.read_parquet(world / "catalogue.parquet", columns=["product_id"])["product_id"].iloc[0])
    serve_env = {**env, "PHANTOM_DECISION_LOG": str(world / f"decision-log-{name}")}
    log_dir = world / f"serve-{name}"
    log_dir.mkdir()
    with serve_bento(tag, env=serve_env, log_dir=log_dir, cwd=world) as (url, proc):
        ready_s = time.perf_counter() - started - built_s
        version = ss.get_json(f"{url}/version")
        price = ss.get_json(f"{url}/api/ml/price/{product}")  # a first visit: the service issues the session
        if arbiter_dies:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not group_alive(proc.pid), f"a process of `bentoml serve {tag}` outlived it"
    # BentoML's workers run in sessions of their own, outside that group: look for any process naming the Bento
    assert not _processes_naming(tag), f"processes of `bentoml serve {tag}` outlived it: {_processes_naming(tag)}"
    return {
        "tag": tag,
        "version": version,
        "price": price,
        "record": ss.bento_record(Path(env["BENTOML_HOME"]), tag),
        "seconds": {"build": round(built_s, 1), "serve_ready": round(ready_s, 1)},
    }


def _reported(version: dict) -> dict[str, str]:
    """{registry name: version} of the models a /version answer names."""
    return {m["registry"]: m["version"] for m in version["models"].values() if "registry" in m}


def _assert_serves(served: dict, detector: str, pricing: str, registry: str, run_ids: dict[str, str]) -> None:
    """The running service and the Bento's own records name `detector` and `pricing` and the Bento tag."""
    tag, (status, version), record = served["tag"], served["version"], served["record"]
    assert status == 200 and version["bento"] == tag
    assert _reported(version) == {MODEL: detector, PRICING: pricing}
    assert version["registry_uri"] == registry
    assert version == {**record["build_info"], "bento": tag}  # what the service says is what the Bento carries
    assert record["labels"]["detector_version"] == detector and record["labels"]["multitask_version"] == pricing
    for name, want in ((MODEL, detector), (PRICING, pricing)):
        imported = record["models"][name]
        assert imported["registry_version"] == want and imported["registry_uri"] == registry
        assert imported["run_id"] == run_ids[name]  # the very version's run, not just its number
        assert version["models"]["detector" if name == MODEL else "multitask"]["tag"] == imported["tag"]
    status, price = served["price"]
    assert status == 200, price
    assert price["model_versions"] == {MODEL: detector, PRICING: pricing, "bento": tag}
    assert price["p_agent_detector"] is not None  # the person's detector scored this view in the service


@pytest.fixture(scope="session")
def trained(server_starting) -> dict[str, tuple[object, object]]:
    """The four detectors of the story, trained while the tracking server starts."""
    return {
        "strong detector": detectors.train(seed=1),
        "medium detector (blind to 3 of the 6 telling features)": detectors.train(seed=2, blind_to=3),
        "medium detector again": detectors.train(seed=3, blind_to=3),
        "strong detector, retrained": detectors.train(seed=4),
    }


def test_person_promotes_and_rolls_back_in_the_ui(
    pricing_world, trained, server_starting, tracking_server, browser, shots, tmp_path, monkeypatch
) -> None:
    import mlflow

    from phantom.registry import models, promotion, tracking

    started = time.perf_counter()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    tracking.configure(tracking_server)
    client = mlflow.MlflowClient()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    eval_set = detectors.frozen_eval_set(tmp_path / "detector_test.parquet")
    params["promote"][MODEL].update(eval_set=str(eval_set), gate=GATE)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PHANTOM_PARAMS": str(tmp_path / "params.yaml"), "MLFLOW_TRACKING_URI": tracking_server}
    train_set = tmp_path / "sessions.parquet"
    detectors.world(0, 10).to_parquet(train_set)  # an input file whose md5 the versions carry

    laps: dict[str, float] = {}

    def lap(name: str) -> None:
        laps[name] = round(time.perf_counter() - started, 1)
        print(f"  {laps[name]:6.1f}s {name}", flush=True)

    def register(note: str) -> str:
        detector, frame = trained[note]
        version = detectors.register(detector, frame, train_set, note)
        lap(f"registered v{version}")
        return version

    v1 = register("strong detector")
    v2 = register("medium detector (blind to 3 of the 6 telling features)")
    first = _gated(env, tmp_path)
    lap("gate run 1")
    assert first["action"] == "promoted" and first["champion_after"] == int(v2)
    assert models.champion_versions([MODEL]) == {MODEL: v2}
    setup_s = time.perf_counter() - started

    # ---- a person, in the browser, logged in as themselves (the model's owners gave them MANAGE) ----
    import secrets

    from phantom.registry import server

    person = ("alice", secrets.token_urlsafe(12))
    server.ensure_user(tracking_server, server_starting.accounts.admin, *person)
    server.grant(tracking_server, server_starting.accounts.admin, person[0], MODEL, "MANAGE")
    clicks: list[str] = []
    page = browser.new_page(
        viewport={"width": 1600, "height": 1000}, http_credentials={"username": person[0], "password": person[1]}
    )
    ui_started = time.perf_counter()
    ui.open_model(page, tracking_server, MODEL, clicks)
    page.screenshot(path=str(shots / "1-before-promotion.png"), full_page=True)
    ui.set_alias(page, v1, models.CHAMPION, clicks, shot=shots / "2-alias-dialog.png")
    page.reload()
    ui.version_row(page, v1).get_by_text(f"@ {models.CHAMPION}").wait_for(timeout=ui.TIMEOUT_MS)
    page.screenshot(path=str(shots / "3-after-promotion.png"), full_page=True)
    promote_ui_s = time.perf_counter() - ui_started
    lap("ui promotion")
    assert models.champion_versions([MODEL]) == {MODEL: v1}  # what a Bento build now pins
    moved = json.loads(client.get_registered_model(MODEL).tags["audit.alias.champion"])
    assert (moved["user"], moved["version"]) == (person[0], v1)  # the server recorded who moved it

    registering, world, register_log = pricing_world
    assert registering.wait(timeout=300) == 0, register_log.read_text()[-3000:]
    pricing = models.champion_versions([PRICING])[PRICING]
    lap(f"{PRICING} v{pricing} champion (trained alongside)")
    bento_env = {**env, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    run_ids = {
        MODEL: client.get_model_version(MODEL, v1).run_id,
        PRICING: client.get_model_version(PRICING, pricing).run_id,
    }

    # ---- a new challenger, and while the gate judges it, the next Bento is built and served ---------
    v3 = register("medium detector again")
    gating = _start_promote(env, tmp_path)
    try:  # the newest version is v3, the gate's last pick v2: the build must pin the person's v1
        at_pick = _build_and_serve(world, bento_env, "pick")
        lap("bento built and served (person's pick)")
    finally:
        done, kept = _finish_promote(gating, tmp_path)
    _assert_serves(at_pick, v1, pricing, tracking_server, run_ids)
    assert at_pick["tag"].split(":")[1].startswith(f"d{v1}-p{pricing}-")

    # ---- the gate respects the person's champion ---------------------------------------------------
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    lap("gate run 2")
    assert kept["action"] == "kept" and kept["champion_before"] == int(v1) and kept["champion_set_by_hand"]
    assert kept["champion"]["roc_auc"] > kept["challenger"]["roc_auc"] + GATE["tolerance"]["roc_auc"]
    assert models.champion_versions([MODEL]) == {MODEL: v1}
    # against the gate's own champion v2 (re-scored in this very run, same frozen set) v3 passes:
    # it is the person's choice, not the floors, that keeps v3 out
    gate = promotion.GateConfig.from_params(GATE)
    assert promotion.decide(kept["challenger"], kept["earlier_champions"][v2], gate).passed
    report = (tmp_path / "promotion.md").read_text()
    assert f"champion before: v{v1} (set by hand in the registry)" in report
    tags = client.get_model_version(MODEL, v3).tags
    assert tags["gate.decision"] == "rejected" and tags["gate.against"] == v1
    assert tags["gate.champion_set_by_hand"] == "true"
    assert (
        tags["gate.roc_auc"]
        == f"{kept['challenger']['roc_auc']:.4f} (champion v{v1}: {kept['champion']['roc_auc']:.4f})"
    )
    # the report is an artifact of v3's run, fetched through the server
    run_id = client.get_model_version(MODEL, v3).run_id
    served = mlflow.artifacts.load_text(f"runs:/{run_id}/{tags['gate.report']}")
    assert served == report

    v4 = register("strong detector, retrained")
    promoted = _gated(env, tmp_path)
    lap("gate run 3")
    assert promoted["action"] == "promoted" and promoted["champion_before"] == int(v1)
    assert models.champion_versions([MODEL]) == {MODEL: v4}
    moved = json.loads(client.get_registered_model(MODEL).tags["audit.alias.champion"])
    assert (moved["user"], moved["version"]) == ("phantom-pipeline", v4)  # the gate, as its service account

    # ---- rollback: the same motion, back to v1, and v4 is no longer offered to the gate -------------
    rollback_started = time.perf_counter()
    page.reload()
    ui.version_row(page, v4).get_by_text(f"@ {models.CHAMPION}").wait_for(timeout=ui.TIMEOUT_MS)
    page.screenshot(path=str(shots / "4-before-rollback.png"), full_page=True)
    ui.set_alias(page, v1, models.CHAMPION, clicks)
    ui.remove_alias(page, v4, models.CHALLENGER, clicks)
    page.reload()
    ui.version_row(page, v1).get_by_text(f"@ {models.CHAMPION}").wait_for(timeout=ui.TIMEOUT_MS)
    page.screenshot(path=str(shots / "5-after-rollback.png"), full_page=True)
    rollback_ui_s = time.perf_counter() - rollback_started
    lap("ui rollback")
    assert models.champion_versions([MODEL]) == {MODEL: v1}
    assert models.version_by_alias(MODEL, models.CHALLENGER) is None
    gating = _start_promote(env, tmp_path)
    try:  # the next Bento follows the rollback: v1 again (the gate had made v4 champion), a new tag
        after_rollback = _build_and_serve(world, bento_env, "rollback", arbiter_dies=True)
        lap("bento built and served (after rollback)")
    finally:
        done, _ = _finish_promote(gating, tmp_path)
    lap("gate run 4")
    assert done.returncode != 0 and "no 'challenger'" in done.stdout + done.stderr  # stops loudly
    assert models.champion_versions([MODEL]) == {MODEL: v1}
    _assert_serves(after_rollback, v1, pricing, tracking_server, run_ids)
    assert after_rollback["tag"] != at_pick["tag"]

    # the version page tells a person why v3 is not champion
    page.goto(f"{tracking_server}/#/models/{MODEL}/versions/{v3}")
    page.get_by_text("not champion").first.wait_for(timeout=ui.TIMEOUT_MS)
    page.screenshot(path=str(shots / "6-version-page.png"), full_page=True)
    page.close()

    flow = {
        "clicks": clicks,
        "seconds": {
            "server_to_first_gate": round(setup_s, 1),
            "ui_promotion": round(promote_ui_s, 1),
            "ui_rollback": round(rollback_ui_s, 1),
            "total": round(time.perf_counter() - started, 1),
        },
        "laps_since_test_start": laps,
        "versions": {"v1": v1, "v2": v2, "v3": v3, "v4": v4, PRICING: pricing},
        "bento": {
            name: {"tag": served["tag"], "reported": _reported(served["version"][1]), **served["seconds"]}
            for name, served in (("at_pick", at_pick), ("after_rollback", after_rollback))
        },
        "screenshots": sorted(p.name for p in shots.glob("*.png")),
    }
    (shots / "flow.json").write_text(json.dumps(flow, indent=2))
    print(json.dumps(flow, indent=2))
