"""Layering: production packages never import the simulator (its population model holds the hidden truth)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = (
    "events",
    "quality",
    "features",
    "detect",
    "pricing",
    "registry",
    "monitor",
    "serve",
    "experiment",
    "ops",
    "deploy",
)
FORBIDDEN = "phantom.simulate"


def forbidden_imports(package_dir: Path, forbidden: str = FORBIDDEN) -> list[str]:
    """`file:line module` for every import of `forbidden` (top level or inside functions) under a folder."""
    hits = []
    for path in sorted(package_dir.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
                if node.module == "phantom":
                    names += [f"phantom.{alias.name}" for alias in node.names]
            if any(n == forbidden or n.startswith(forbidden + ".") for n in names):
                hits.append(f"{path.relative_to(package_dir.parent.parent)}:{node.lineno} {names[0]}")
    return hits


@pytest.mark.parametrize("package", PRODUCTION)
def test_production_package_does_not_import_the_simulator(package: str) -> None:
    folder = ROOT / "phantom" / package
    assert folder.is_dir(), f"phantom/{package} is missing"
    assert forbidden_imports(folder) == []


@pytest.mark.parametrize(
    "source",
    [
        "import phantom.simulate.population\n",
        "from phantom.simulate import oracle\n",
        "from phantom import simulate\n",
        "def f():\n    from phantom.simulate.traffic import simulate\n    return simulate\n",
    ],
)
def test_a_deliberate_import_is_caught(tmp_path: Path, source: str) -> None:
    pkg = tmp_path / "phantom" / "pricing"
    pkg.mkdir(parents=True)
    (pkg / "sneaky.py").write_text(source)
    (pkg / "fine.py").write_text("from phantom.pricing import objective\nimport phantom.simulated_annealing\n")
    hits = forbidden_imports(pkg)
    assert len(hits) == 1 and hits[0].startswith("phantom/pricing/sneaky.py:")
