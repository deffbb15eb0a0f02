"""Docs' figures, rendered from the metrics files (tests hold every doc equal to them).

    python -m phantom.ops.docs        # (make docs) rewrite docs/operate.md's blocks and every doc's inline figures

A block sits between `<!-- name -->` and `<!-- /name -->`; everything else in the doc is prose.
An inline figure names its metrics file, key (dotted path) and format in a marker around the value:
`<!--fig metrics/pricing.json revenue_vs_fixed .3f-->1.056<!--/fig-->` (a format `%` multiplies by
100: `.1%`); rendering rewrites the value, so a quoted figure cannot drift from its file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DOC = Path("docs/operate.md")


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def ab_block(metrics: Path = Path("metrics/ab.json")) -> str:
    """The A/B benchmark's figures (metrics/ab.json)."""
    m = _load(metrics)
    rows = [
        ("A/A runs (no effect)", f"{m['aa_runs']}"),
        ("A/A runs that declared a winner", f"{m['aa_false_winners']} ({m['aa_false_winners'] / m['aa_runs']:.1%})"),
        ("effect runs (ml vs static, the pool's effect)", f"{m['effect_runs']}"),
        ("effect runs that found the right winner (power)", f"{m['effect_found_share']:.1%}"),
        ("CUPED variance reduction, revenue per view", f"{m['cuped_variance_reduction']:.1%}"),
        (
            "median days to a decision (runs that decided)",
            "never within the horizon" if m["days_to_decision"] is None else f"{m['days_to_decision']:g}",
        ),
    ]
    return "| figure (metrics/ab.json) | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)


def alerts_block(rules_file: Path = Path("deploy/prometheus/rules/phantom.rules.yml")) -> str:
    """Each alert, its expression, how long, and why that threshold (from the generated rules file)."""
    import yaml

    groups = yaml.safe_load(rules_file.read_text())["groups"]
    lines = ["| alert | fires when | for | severity | why this threshold |", "|---|---|---|---|---|"]
    for g in groups:
        for r in g["rules"]:
            if "alert" in r:
                expr = r["expr"].replace("|", "\\|")
                why = r["annotations"]["threshold"].replace("|", "\\|")
                lines.append(f"| `{r['alert']}` | `{expr}` | {r['for']} | {r['labels']['severity']} | {why} |")
    return "\n".join(lines)


def baseline_block(alerts: Path = Path("metrics/alerts.json")) -> str:
    """Normal traffic's figures the shift alerts start from (metrics/alerts.json)."""
    a = _load(alerts)
    w = a["window_hours"]
    rows = "".join(
        f"| {h} h{' (chosen)' if int(h) == w else ''} | {d['p_agent']:.4f} | {d['price_ratio']:.4f} |\n"
        for h, d in sorted(a["max_dev_by_window_hours"].items(), key=lambda kv: int(kv[0]))
    )
    return (
        f"Over {a['hours']} h of normal traffic (the closed loop of `python -m benchmarks.ab`, ml arm): mean P(agent) "
        f"{a['p_agent_mean']:.4f}, mean price ratio {a['price_ratio_mean']:.4f}, decisions per hour "
        f"{a['decisions_per_hour_min']:.0f} in the quietest hour and {a['decisions_per_hour_mean']:.0f} on average. "
        "Largest deviation of a sliding window's mean from the overall mean:\n\n"
        "| window | P(agent) | price ratio |\n|---|---|---|\n" + rows.rstrip("\n")
    )


BLOCKS = {"ab-figures": ab_block, "alerts-table": alerts_block, "alert-baseline": baseline_block}


def rendered(root: Path = Path(".")) -> dict[str, str]:
    """Every block's text from the files under `root`."""
    out = {}
    for name, fn in BLOCKS.items():
        defaults = fn.__defaults__ or ()
        out[name] = fn(*(root / d for d in defaults))
    return out


def blocks_of(text: str) -> dict[str, str]:
    """The marked blocks of a doc."""
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"<!-- ([\w-]+) -->\n(.*?)<!-- /\1 -->", text, re.S)}


def update(text: str, new: dict[str, str]) -> str:
    """The doc with each marked block replaced."""
    for name, body in new.items():
        pattern = rf"(<!-- {name} -->\n).*?(<!-- /{name} -->)"
        text = re.sub(pattern, lambda m, b=body: m.group(1) + b + "\n" + m.group(2), text, flags=re.S)
    return text


FIGURE = re.compile(r"<!--fig (\S+) (\S+) (\S+?)-->(.*?)<!--/fig-->", re.S)
DOCS = Path("docs")


def figure(root: Path, path: str, key: str, fmt: str) -> str:
    """One metrics value, formatted: `key` is a dotted path into the JSON file (list items by index)."""
    value: Any = _load(root / path)
    for part in key.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value if isinstance(value, str) else format(value, fmt)


def render_figures(text: str, root: Path = Path(".")) -> str:
    """The doc with every inline figure rewritten from the metrics file its marker names."""
    return FIGURE.sub(
        lambda m: (
            f"<!--fig {m.group(1)} {m.group(2)} {m.group(3)}-->"
            f"{figure(root, m.group(1), m.group(2), m.group(3))}<!--/fig-->"
        ),
        text,
    )


def figures_of(text: str) -> list[tuple[str, str, str, str]]:
    """(file, key, format, quoted value) of every inline figure of a doc."""
    return [(m.group(1), m.group(2), m.group(3), m.group(4)) for m in FIGURE.finditer(text)]


def main() -> None:
    """Rewrite docs/operate.md's blocks and every doc's inline figures from the metrics files."""
    DOC.write_text(update(DOC.read_text(), rendered()))
    print(f"wrote {DOC}")
    for doc in [*sorted(DOCS.glob("*.md")), Path("README.md")]:
        text = doc.read_text()
        new = render_figures(text)
        if new != text:
            doc.write_text(new)
            print(f"wrote {doc} ({len(figures_of(new))} figures)")


if __name__ == "__main__":
    main()
