"""`python -m phantom.deploy image|run|up|rollout|manifests` (the make targets of docs/deploy.md).

- `image [--bento TAG]`: build the image of a Bento (default: the one `make bento` built last);
- `run [--image REF] [--port P]`: one container serving on 127.0.0.1:P, in the foreground;
- `up [--image REF] [--replicas N] [--port P]`: N replicas behind HAProxy on 127.0.0.1:P, in the
  foreground; it takes rollouts from `rollout`;
- `rollout --image REF [--folder F]`: ask the running `up` to replace its replicas by REF one at a
  time (a rollback is a rollout to the previous image);
- `manifests [--bento TAG] [--out deploy]`: the compose file, its HAProxy configuration and the
  Kubernetes manifests for the Bento's image.

Environment: REDIS_URL, KAFKA_BOOTSTRAP_SERVERS and PHANTOM_* reach the containers as they reach
`bentoml serve`; PHANTOM_IMAGE_CACHE moves the base/wheel cache (default ~/.cache/phantom-image).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RUN_DIR = Path(os.environ.get("PHANTOM_DEPLOY_DIR", ".deploy"))


def _params() -> Any:
    from phantom.params import load

    params = load(Path(os.environ.get("PHANTOM_PARAMS", ROOT / "params.yaml")))[1]
    if params.deploy is None:
        raise SystemExit("params.yaml has no deploy section (docs/deploy.md)")
    return params.deploy


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _bento_tag(given: str | None) -> str:
    if given:
        return given
    info = ROOT / "bentofiles/pricing/build_info.json"
    if info.exists():
        return json.loads(info.read_text())["bento"]
    return "phantom-pricing:latest"


def _latest_image(cfg: Any) -> str:
    from phantom.deploy import buildah

    rows = buildah.images(cfg.image.repository)
    if not rows:
        raise SystemExit(f"no image of {cfg.image.repository}: make image first")
    return rows[0]["tags"][0]


def cmd_image(args: argparse.Namespace) -> None:
    """Build the image; print its reference and size."""
    from phantom.deploy import image

    cfg = _params()
    built = image.build(
        _bento_tag(args.bento), cfg.image, image.cache_dir(os.environ), ROOT / "requirements.lock", _say
    )
    _say(
        f"image {built.ref}: {built.size_bytes / 1e6:,.0f} MB, built in {built.seconds:.0f}s; labels {json.dumps(built.labels)}"
    )
    print(built.ref)


def _wait_for_signal() -> None:
    stop = {"now": False}

    def handler(*_: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    while not stop["now"]:
        time.sleep(0.5)
        yield


def cmd_run(args: argparse.Namespace) -> None:
    """One container in the foreground."""
    from phantom.deploy.deployment import replica_env
    from phantom.deploy.replica import Replica
    from phantom.processes import free_port

    cfg = _params()
    replica = Replica(
        "phantom-run", args.image or _latest_image(cfg), args.port or free_port(), replica_env(cfg, os.environ), RUN_DIR
    )
    replica.start()
    try:
        took = replica.wait_ready()
        _say(f"{replica.image} serving on {replica.url} (ready in {took:.1f}s); Ctrl-C stops it")
        for _ in _wait_for_signal():
            if replica.proc is not None and replica.proc.poll() is not None:
                raise SystemExit(f"the container exited: {replica.log}")
    finally:
        replica.stop()


def cmd_up(args: argparse.Namespace) -> None:
    """Replicas behind HAProxy in the foreground; a rollout request file triggers a rollout."""
    from phantom.deploy.deployment import Deployment, replica_env

    cfg = _params()
    folder = Path(args.folder)
    request = folder / "rollout.request"
    request.unlink(missing_ok=True)
    deployment = Deployment(cfg, folder, replica_env(cfg, os.environ), _say)
    try:
        deployment.up(args.image or _latest_image(cfg), args.replicas, args.port)
        (folder / "state.json").write_text(json.dumps(deployment.state(), indent=1))
        _say(f"serving on {deployment.lb.url}; `python -m phantom.deploy rollout --image REF` rolls out; Ctrl-C stops")
        for _ in _wait_for_signal():
            if request.exists():
                target = request.read_text().strip()
                request.unlink()
                report = deployment.rollout(target)
                (folder / "state.json").write_text(json.dumps(deployment.state(), indent=1))
                (folder / "rollout.done").write_text(json.dumps({"image": target, "slots": report}))
                _say(f"rolled out {target}: {json.dumps(report)}")
    finally:
        deployment.down()


def cmd_rollout(args: argparse.Namespace) -> None:
    """Hand a rollout to the running `up` and wait for it."""
    folder = Path(args.folder)
    if not (folder / "state.json").exists():
        raise SystemExit(f"no running deployment in {folder} (make up)")
    done = folder / "rollout.done"
    done.unlink(missing_ok=True)
    (folder / "rollout.request").write_text(args.image)
    deadline = time.monotonic() + args.timeout
    while not done.exists():
        if time.monotonic() > deadline:
            raise SystemExit("the rollout did not finish in time; see the `up` output")
        time.sleep(0.5)
    print(done.read_text())


def cmd_manifests(args: argparse.Namespace) -> None:
    """Write the compose file, its HAProxy configuration and the Kubernetes manifests."""
    import yaml

    from phantom.deploy import manifests
    from phantom.deploy.image import image_ref, labels

    cfg = _params()
    tag = _bento_tag(args.bento)
    info_path = ROOT / "bentofiles/pricing/build_info.json"
    info = {**json.loads(info_path.read_text()), "bento": tag} if info_path.exists() else {"bento": tag}
    measured = json.loads(Path(args.measured).read_text()) if Path(args.measured).exists() else {}
    ref = image_ref(cfg.image.repository, tag)
    out = Path(args.out)
    (out / "kubernetes").mkdir(parents=True, exist_ok=True)
    image_labels = labels(info)
    (out / "compose.yaml").write_text(
        yaml.safe_dump(manifests.compose(ref, image_labels, cfg, measured), sort_keys=False)
    )
    (out / "haproxy.cfg").write_text(manifests.compose_haproxy(cfg))
    docs = manifests.kubernetes(ref, image_labels, cfg, measured)
    (out / "kubernetes/pricing.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    _say(
        f"wrote {out}/compose.yaml, {out}/haproxy.cfg, {out}/kubernetes/pricing.yaml for {ref} (sizing from {args.measured})"
    )


def main(argv: list[str] | None = None) -> None:
    """Parse the subcommand and run it."""
    parser = argparse.ArgumentParser(
        prog="python -m phantom.deploy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("image", help="build the image of a Bento")
    p.add_argument("--bento", help="Bento tag (default: bentofiles/pricing/build_info.json)")
    p.set_defaults(func=cmd_image)
    p = sub.add_parser("run", help="one container in the foreground")
    p.add_argument("--image", help="image reference (default: the newest of deploy.image.repository)")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("up", help="replicas behind HAProxy in the foreground")
    p.add_argument("--image")
    p.add_argument("--replicas", type=int, help="default: deploy.replicas")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    p.add_argument("--folder", default=str(RUN_DIR))
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("rollout", help="replace the running replicas one at a time")
    p.add_argument("--image", required=True)
    p.add_argument("--folder", default=str(RUN_DIR))
    p.add_argument("--timeout", type=float, default=900.0)
    p.set_defaults(func=cmd_rollout)
    p = sub.add_parser("manifests", help="compose file and Kubernetes manifests")
    p.add_argument("--bento")
    p.add_argument("--measured", default=str(ROOT / "metrics/deploy.json"))
    p.add_argument("--out", default="deploy")
    p.set_defaults(func=cmd_manifests)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
