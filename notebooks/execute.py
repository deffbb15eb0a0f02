"""Execute the notebooks headless (nbclient) and keep their figures; keep each .ipynb paired with its .py.

    python -m notebooks.execute                       # (make notebooks) all four on this checkout's outputs
    python -m notebooks.execute eda --root /other/checkout
    python -m notebooks.execute --sync                # rewrite each .ipynb from its .py source (no outputs)

Each notebook reads `PHANTOM_ROOT` (default: the checkout, after `dvc pull` or `make run`) and the
MLflow registry (`MLFLOW_TRACKING_URI`, default the checkout's mlflow.db), and saves its figures
under `PHANTOM_FIGURES` (default reports/notebooks/<name>/); the executed notebook goes beside them.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAMES = ("eda", "feature_analysis", "model_evaluation", "simulator_calibration")


def source(name: str) -> Path:
    """The plain-text source of a notebook."""
    return HERE / f"{name}.py"


def sync(name: str) -> Path:
    """Write `<name>.ipynb` from `<name>.py` (no outputs): the pair jupytext keeps."""
    import jupytext

    path = HERE / f"{name}.ipynb"
    jupytext.write(jupytext.read(source(name)), path)
    return path


def execute(name: str, root: Path, figures: Path, timeout_s: int = 900) -> tuple[Path, float]:
    """Run one notebook headless against `root`; the executed copy's path and the seconds it took."""
    import jupytext
    from nbclient import NotebookClient

    nb = jupytext.read(source(name))
    env = {"PHANTOM_ROOT": str(root.resolve()), "PHANTOM_FIGURES": str(figures.resolve())}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    started = time.perf_counter()
    try:
        NotebookClient(
            nb, timeout=timeout_s, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}
        ).execute()
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.update({k: v})
    out = figures / f"{name}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(nb, out)
    return out, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    """Execute (or --sync) the named notebooks."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help=f"some of {', '.join(NAMES)} (default: all)")
    p.add_argument("--root", type=Path, default=HERE.parent)
    p.add_argument("--figures", type=Path, default=None, help="default ROOT/reports/notebooks")
    p.add_argument("--sync", action="store_true")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in NAMES]
    if unknown:
        raise SystemExit(f"notebooks: no notebook {', '.join(unknown)}; one of {', '.join(NAMES)}")
    for name in args.names or NAMES:
        if args.sync:
            print(f"wrote {sync(name)}")
            continue
        out, seconds = execute(name, args.root, args.figures or args.root / "reports/notebooks")
        print(f"{name}: executed in {seconds:.1f} s -> {out}")


if __name__ == "__main__":
    main()
