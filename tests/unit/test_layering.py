"""Layering: every package of `phantom/` imports only what its rule allows, and docs/architecture.md shows the rules.

`LAYERS` is the one statement of the rules. The checks read every import, at the top of a module
or inside a function: each layer uses exactly what its rule allows (an import beyond the rule
fails, and so does a rule that allows what nobody uses, so the doc never drifts from the code);
the rules form no cycle; no two modules import each other, directly or round a loop; no private
name (`_x`) is imported from another package; and the layer table of docs/architecture.md lists
the same rules. Production packages never import the simulator (its population model holds the
hidden truth).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"

# layer (a package `phantom/<x>/` or a module `phantom/<x>.py`) -> the layers it may import
LAYERS: dict[str, frozenset[str]] = {
    name: frozenset(allowed)
    for name, allowed in {
        "digest": (),
        "secrets": (),
        "processes": (),
        "metrics": (),
        "hyperparams": (),
        "events": ("digest", "processes", "secrets"),
        "features": ("events",),
        "quality": ("events", "features"),
        "registry": ("digest", "processes", "secrets"),
        "detect": ("features", "metrics", "hyperparams", "registry"),
        "pricing": ("detect", "digest", "features", "metrics", "hyperparams", "registry"),
        "monitor": ("detect", "features", "pricing"),
        "serve": ("detect", "events", "features", "pricing", "processes", "registry"),
        "experiment": (),
        "ops": ("processes", "serve"),
        "deploy": ("params", "processes", "serve"),
        "params": ("experiment", "monitor"),
        "simulate": ("events", "pricing", "hyperparams", "registry"),
        "loadgen": ("events", "features", "pricing", "serve", "simulate"),
    }.items()
}
KNOWS_THE_TRUTH = frozenset({"simulate", "loadgen"})  # the world, and the load generator that drives it
PRODUCTION = tuple(sorted(set(LAYERS) - KNOWS_THE_TRUTH))
FORBIDDEN = "phantom.simulate"


def imported_names(tree: ast.AST) -> Iterator[tuple[int, str, list[str]]]:
    """(line, module, imported names as dotted paths) of every absolute import in a parsed module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, [alias.name]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module, [node.module] + [f"{node.module}.{a.name}" for a in node.names]


def forbidden_imports(package_dir: Path, forbidden: str = FORBIDDEN) -> list[str]:
    """`file:line module` for every import of `forbidden` (top level or inside functions) in a module or folder."""
    hits = []
    for path in [package_dir] if package_dir.is_file() else sorted(package_dir.rglob("*.py")):
        for line, module, names in imported_names(ast.parse(path.read_text(), filename=str(path))):
            if any(n == forbidden or n.startswith(forbidden + ".") for n in names):
                hits.append(f"{path.relative_to(package_dir.parent.parent)}:{line} {module}")
    return hits


def layer_of(path: Path, root: Path) -> str:
    """The layer a file of `root/phantom` belongs to: its top package, or the module's own name."""
    parts = path.relative_to(root / "phantom").parts
    return parts[0] if len(parts) > 1 else Path(parts[0]).stem


def layer_imports(root: Path = ROOT) -> dict[str, dict[str, list[str]]]:
    """layer -> {imported layer: [`file:line`, ...]} over every file of `root/phantom` (`__init__` excluded)."""
    out: dict[str, dict[str, list[str]]] = {}
    for path in sorted((root / "phantom").rglob("*.py")):
        if path.parent == root / "phantom" and path.stem == "__init__":
            continue
        source = layer_of(path, root)
        uses = out.setdefault(source, {})
        for line, module, names in imported_names(ast.parse(path.read_text(), filename=str(path))):
            if module == "phantom":  # `from phantom import x`: the names are the layers
                targets = {n.split(".")[1] for n in names[1:]}
            elif module.startswith("phantom."):
                targets = {module.split(".")[1]}
            else:
                continue
            for target in targets - {source}:
                uses.setdefault(target, []).append(f"{path.relative_to(root)}:{line}")
    return out


def layer_problems(root: Path = ROOT, rules: dict[str, frozenset[str]] = LAYERS) -> list[str]:
    """Every import beyond its layer's rule, every layer without a rule, every allowed import nobody uses."""
    problems = []
    found = layer_imports(root)
    for layer in sorted(set(found) - set(rules)):
        problems.append(f"phantom/{layer} has no rule in LAYERS (and no row in docs/architecture.md)")
    for layer, uses in sorted(found.items()):
        allowed = rules.get(layer, frozenset())
        for target in sorted(set(uses) - allowed):
            problems.append(f"{layer} may not import {target}: {', '.join(uses[target])}")
        for target in sorted(allowed - set(uses)):
            problems.append(
                f"{layer}'s rule allows {target}, which it never imports: drop it from the rule and the doc"
            )
    return problems


def module_cycles(root: Path = ROOT) -> list[list[str]]:
    """Groups of `phantom` modules that import each other round a loop (strongly connected, size > 1)."""
    paths = {}
    for path in sorted((root / "phantom").rglob("*.py")):
        dotted = ".".join(path.relative_to(root).with_suffix("").parts)
        paths[dotted.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        for _, _, names in imported_names(ast.parse(path.read_text(), filename=str(path))):
            graph[name].update(n for n in names if n in paths and n != name)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return cycles


def private_imports(root: Path = ROOT) -> list[str]:
    """`file:line module.name` for each private name (`_x`) imported from another layer's module."""
    hits = []
    for path in sorted((root / "phantom").rglob("*.py")):
        source = layer_of(path, root)
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("phantom.")):
                continue
            if node.module.split(".")[1] == source:
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    hits.append(f"{path.relative_to(root)}:{node.lineno} {node.module}.{alias.name}")
    return hits


def doc_rules(doc: Path = DOC) -> dict[str, frozenset[str]]:
    """The `may import` column of the layer table under `## Layers`, per `phantom/...` layer."""
    section = doc.read_text().split("\n## Layers", 1)[1].split("\n## ", 1)[0]
    rules: dict[str, frozenset[str]] = {}
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`phantom/"):
            continue
        allowed = frozenset() if cells[2] in ("", "—") else frozenset(c.strip() for c in cells[2].split(","))
        for layer in re.findall(r"`phantom/(\w+)(?:\.py|/)?`", cells[0]):
            rules[layer] = allowed
    return rules


def test_every_layer_imports_exactly_what_its_rule_allows() -> None:
    assert layer_problems() == []


def test_the_rules_form_no_cycle() -> None:
    done: list[str] = []
    pending = dict(LAYERS)
    while pending:
        ready = [layer for layer, allowed in pending.items() if allowed <= set(done)]
        assert ready, f"the rules of {sorted(pending)} import each other round a loop"
        done += ready
        for layer in ready:
            del pending[layer]


def test_the_architecture_doc_lists_the_rules() -> None:
    assert doc_rules() == LAYERS


def test_no_two_modules_import_each_other() -> None:
    assert module_cycles() == []


def test_no_private_name_crosses_a_package() -> None:
    assert private_imports() == []


@pytest.mark.parametrize("package", PRODUCTION)
def test_production_package_does_not_import_the_simulator(package: str) -> None:
    folder = ROOT / "phantom" / package
    target = folder if folder.is_dir() else folder.with_suffix(".py")
    assert target.exists(), f"phantom/{package} is missing"
    assert forbidden_imports(target) == []


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
    assert "pricing may not import simulate" in " ".join(layer_problems(tmp_path, {"pricing": frozenset()}))


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "phantom" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_an_upward_import_an_unused_rule_and_a_layer_without_rule_are_caught(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "features/a.py": "def f():\n    from phantom.pricing import objective\n",
            "pricing/objective.py": "from phantom.features import a\n",
            "newpkg/x.py": "",
        },
    )
    rules = {"features": frozenset({"events"}), "pricing": frozenset({"features"})}
    assert layer_problems(root, rules) == [
        "phantom/newpkg has no rule in LAYERS (and no row in docs/architecture.md)",
        "features may not import pricing: phantom/features/a.py:2",
        "features's rule allows events, which it never imports: drop it from the rule and the doc",
    ]


def test_a_module_circle_and_a_private_import_are_caught(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "registry/models.py": "def f():\n    from phantom.registry.annotate import describe\n",
            "registry/annotate.py": "from phantom.registry.models import _client\n",
            "detect/gate.py": "from phantom.registry.models import _client\nfrom phantom.detect.train import _ok\n",
        },
    )
    assert module_cycles(root) == [["phantom.registry.annotate", "phantom.registry.models"]]
    assert private_imports(root) == ["phantom/detect/gate.py:1 phantom.registry.models._client"]


def test_the_doc_table_parser_reads_grouped_rows_and_dashes(tmp_path: Path) -> None:
    doc = tmp_path / "architecture.md"
    doc.write_text(
        "# A\n\n## Layers\n\n| package | job | may import |\n|---|---|---|\n"
        "| `phantom/digest.py`, `phantom/metrics.py` | helpers | — |\n"
        "| `phantom/detect` | the detector | features, metrics |\n"
        "| `pipelines/` | stages | everything |\n\n## Next\n\n| `phantom/x` | y | z |\n"
    )
    assert doc_rules(doc) == {
        "digest": frozenset(),
        "metrics": frozenset(),
        "detect": frozenset({"features", "metrics"}),
    }
