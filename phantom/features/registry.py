"""The one registry of every feature: name, group, definition, unit and why it is there.

Everything else reads from here: the extractors' column order, the matrices' column layout,
the online state's output, the expectation suite and `docs/features.md`
(`python -m phantom.features.registry` regenerates it; a test fails when it is stale).

Names are stable: other stages import `SESSION_FEATURES` and `PRODUCT_FEATURES`. Add, never rename.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

GROUPS: tuple[str, ...] = ("temporal", "behavioral", "product", "useragent")
GROUP_SIZES: dict[str, int] = {"temporal": 8, "behavioral": 10, "product": 8, "useragent": 3}


@dataclass(frozen=True)
class Feature:
    """One feature: what it is called, which group owns it, what it means and in which unit."""

    name: str
    group: str
    definition: str
    unit: str
    lo: float = 0.0  # the smallest value it can take (the expectation suite checks it)
    hi: float | None = None  # the largest, when bounded
    why: str = ""


# Every session feature is a running aggregate over the session's distinct events (a resend,
# repeating an event's ts and event_id, counts once) ordered by (ts, event_id), up to and
# including the last one seen. "Gaps" are the differences
# between consecutive ts in that order. A feature that is undefined so far (no gaps yet, no
# product view yet) is 0, never NaN.
SESSION_FEATURE_SPECS: tuple[Feature, ...] = (
    # temporal (8)
    Feature("event_count", "temporal", "distinct events so far", "events", why="session length; scales the shares"),
    Feature("duration_s", "temporal", "last ts minus first ts", "s", why="scrapers are over in seconds"),
    Feature(
        "events_per_min",
        "temporal",
        "(event_count - 1) / duration in minutes, the duration floored at 1 s",
        "events/min",
        why="interaction velocity; the seed's one rule, kept as a learned input",
    ),
    Feature("gap_std_s", "temporal", "population std of the gaps", "s", why="among the strongest single signals"),
    Feature("gap_cv", "temporal", "gap std / gap mean (0 while the mean is 0)", "ratio", why="scale-free irregularity"),
    Feature(
        "gap_log_mean",
        "temporal",
        "mean of ln(1 + gap in ms), each term rounded to 1e-4",
        "ln ms",
        why="geometric-mean pace; robust to one long pause, unlike the arithmetic mean",
    ),
    Feature(
        "gap_log_std",
        "temporal",
        "population std of ln(1 + gap in ms), each term rounded to 1e-4",
        "ln ms",
        why="rhythm regularity: agents tick, people burst; separates LLM agents better than any raw gap stat",
    ),
    Feature(
        "time_to_first_action_s",
        "temporal",
        "first action (click, product view, cart, checkout, purchase) minus first event; "
        "the duration so far while there is no action yet",
        "s",
        why="agents act at once; people land and look around",
    ),
    # behavioral (10)
    Feature("product_view_count", "behavioral", "product_view events", "events", why="harvest volume"),
    Feature(
        "product_view_share", "behavioral", "product views / events", "share", hi=1.0, why="scrapers: mostly views"
    ),
    Feature("search_share", "behavioral", "searches / events", "share", hi=1.0, why="the LLM agents' signature"),
    Feature("hover_share", "behavioral", "hovers / events", "share", hi=1.0, why="agents barely hover"),
    Feature("scroll_share", "behavioral", "scrolls / events", "share", hi=1.0, why="agents barely scroll"),
    Feature("unique_product_count", "behavioral", "distinct products viewed", "products", why="breadth of harvest"),
    Feature("hover_mean_ms", "behavioral", "mean hover dwell (0 without hovers)", "ms", why="people read; bots don't"),
    Feature(
        "scroll_mean_ms",
        "behavioral",
        "mean scroll dwell (0 without scrolls)",
        "ms",
        why="the most important input of a gradient-boosted detector on simulated traffic",
    ),
    Feature(
        "scroll_depth_mean",
        "behavioral",
        "mean scroll depth, each rounded to 1e-6 (0 without scrolls)",
        "fraction",
        hi=1.0,
        why="weak alone, third most important in a joint model (scrapers scroll to the bottom)",
    ),
    Feature("cart_add_count", "behavioral", "add_to_cart events", "events", why="purchase intent, for pricing"),
    # product (8)
    Feature(
        "price_mean",
        "product",
        "mean price shown on product views, in cents rounded (0 without views)",
        "currency",
        why="what the visitor has been shopping for",
    ),
    Feature("price_max", "product", "highest price shown (0 without views)", "currency", why="basket ambition"),
    Feature(
        "price_log_std",
        "product",
        "population std of ln(price shown), each rounded to 1e-4",
        "ln currency",
        why="crawlers span every price band; people stay in one",
    ),
    Feature(
        "popularity_log_mean",
        "product",
        "mean ln(catalogue popularity) of the products viewed, each rounded to 1e-4; products not in "
        "the catalogue count as the least popular",
        "ln share",
        lo=-100.0,
        hi=0.0,
        why="crawlers and price monitors visit the long tail: AUC 0.94 / 0.95 against people",
    ),
    Feature(
        "popularity_log_min",
        "product",
        "min ln(catalogue popularity) of the products viewed (0 without views)",
        "ln share",
        lo=-100.0,
        hi=0.0,
        why="one deep-tail visit is telling",
    ),
    Feature("category_count", "product", "distinct categories viewed", "categories", why="crawlers wander"),
    Feature(
        "category_focus",
        "product",
        "views in the most viewed category / product views (0 without views)",
        "share",
        hi=1.0,
        why="people stay on a mission; LLM agents even more so",
    ),
    Feature(
        "repeat_view_share",
        "product",
        "1 - distinct products / product views (0 without views)",
        "share",
        hi=1.0,
        why="price monitors cycle a short watch list",
    ),
    # user agent (3)
    Feature(
        "ua_automation",
        "useragent",
        "1 if any event's user agent carries an automation marker (headless browser, HTTP library, crawler framework)",
        "flag",
        hi=1.0,
        why="rare, and then almost surely an agent",
    ),
    Feature(
        "ua_declared_bot",
        "useragent",
        "1 if any event's user agent declares a bot (bot, crawler, spider, '-User/' agents)",
        "flag",
        hi=1.0,
        why="honest agents say so",
    ),
    Feature(
        "ua_browser_family",
        "useragent",
        "browser family of the first event's user agent: 0 none yet, 1 Chrome, 2 Safari, 3 Firefox, 4 Edge, "
        "5 other browser or in-app webview, 6 not a browser",
        "code",
        hi=6.0,
        why="the strongest user-agent signal alone (AUC 0.59); family 6 is a script",
    ),
)

# Product features on decision rows: the catalogue's static facts plus point-in-time demand
# counted over every session's events strictly earlier than the decision in (ts, event_id) order.
PRODUCT_FEATURE_SPECS: tuple[Feature, ...] = (
    Feature("product_base_price", "catalogue", "catalogue base price (0 if not in the catalogue)", "currency"),
    Feature(
        "product_category_code",
        "catalogue",
        "index of the category in the fixed category list; -1 if not in the catalogue",
        "code",
        lo=-1.0,
    ),
    Feature(
        "product_category_price_pct",
        "catalogue",
        "percentile of the base price inside its category (0.5 if not in the catalogue)",
        "fraction",
        hi=1.0,
    ),
    Feature(
        "product_margin_rate",
        "catalogue",
        "(base price - unit cost) / base price (0 if not in the catalogue)",
        "fraction",
        lo=-10.0,
        hi=1.0,
    ),
    Feature(
        "product_log_popularity",
        "catalogue",
        "ln(catalogue popularity); the catalogue minimum if not in the catalogue",
        "ln share",
        lo=-100.0,
        hi=0.0,
    ),
    Feature("product_past_views", "demand", "product views of this product before the decision", "views"),
    Feature("product_past_purchases", "demand", "purchases of this product before the decision", "purchases"),
    Feature(
        "product_past_conversion",
        "demand",
        "(past purchases + s * prior) / (past views + s): smoothed conversion, prior and s from params",
        "fraction",
        hi=None,
    ),
    Feature(
        "product_views_last_hour",
        "demand",
        "product views of this product in the hour before the decision (window from params)",
        "views",
    ),
    Feature(
        "product_session_views",
        "demand",
        "earlier views of this product in the same session",
        "views",
    ),
)

SESSION_FEATURES: list[str] = [f.name for f in SESSION_FEATURE_SPECS]
PRODUCT_FEATURES: list[str] = [f.name for f in PRODUCT_FEATURE_SPECS]
FEATURES_BY_NAME: dict[str, Feature] = {f.name: f for f in (*SESSION_FEATURE_SPECS, *PRODUCT_FEATURE_SPECS)}


def group_features(group: str) -> list[str]:
    """Session feature names of one group, in registry order."""
    return [f.name for f in SESSION_FEATURE_SPECS if f.group == group]


# Column layout of the matrices the `features` stage writes.
SESSION_KEYS: list[str] = [
    "session_id",
    "experiment_id",  # what the client said (its first event's): kept as data, never a label
    "cohort",  # the shop's assignment (phantom.features.cohorts): the only source of the labels
    "label_family",  # agent family of xp_agent_<family>; "human" for xp_human_only; null if unlabeled
    "is_agent",  # nullable Int8: 1, 0 or <NA>
    "labeled",  # bool
    "purchased",  # int8 0/1: the session made a purchase (whole session, also in sessions_early)
    "start_ms",  # first event ts
    "n_events",  # distinct events in the whole session (also in sessions_early)
]
SESSION_COLUMNS: list[str] = SESSION_KEYS + SESSION_FEATURES
DECISION_KEYS: list[str] = [
    "session_id",
    "event_id",
    "ts",
    "product_id",
    "category",
    "price",  # price shown
    "base_price",
    "price_ratio",  # price / base_price (NaN if the product is not in the catalogue)
]
DECISION_LABELS: list[str] = [
    "is_agent",
    "labeled",
    "label_family",
    "experiment_id",
    "cohort",
    "purchased_this_product",  # int8: this view made a sale (a purchase of the product is attributed to it)
]
DECISION_COLUMNS: list[str] = DECISION_KEYS + SESSION_FEATURES + PRODUCT_FEATURES + DECISION_LABELS


def _check() -> None:
    sizes = {g: len(group_features(g)) for g in GROUPS}
    if sizes != GROUP_SIZES or len(SESSION_FEATURES) != 29:
        raise AssertionError(f"feature groups {sizes} differ from {GROUP_SIZES}")
    names = SESSION_FEATURES + PRODUCT_FEATURES
    if len(set(names)) != len(names) or set(names) & set(SESSION_KEYS + DECISION_KEYS + DECISION_LABELS):
        raise AssertionError("feature names must be unique and not clash with key or label columns")


_check()


SEMANTICS = """
- **Order.** Events are sorted by `(session_id, ts, event_id)` before anything is computed: `ts` is
  client time and may arrive out of order; arrival order never matters. Ties in `ts` are broken by
  `event_id`.
- **Resends.** An event repeating another's `session_id`, `ts` and `event_id` is a resend and counts
  once (batch and online alike). An `event_id` reused with a different `ts` is a different event to
  the features; ingest is where the contract's global uniqueness of `event_id` is enforced.
- **Point in time.** A decision row (a product view) carries the session features of the session's
  events strictly before it in `(ts, event_id)` order, and the empty state (all 0) when it opens the
  session. `sessions_early` is the state after each session's first `features.early_events` events.
  Product demand features count every session's views and purchases at strictly earlier `ts`
  (events in the same millisecond are not "earlier"), from the start of the data on.
- **Online.** `SessionState` (`phantom/features/online.py`) holds the same integers as the batch
  running state in a JSON-serialisable dict (Redis key `session_features:{session_id}`, TTL 1 h).
  After ingesting any collection of a session's events, in any order and with resends, its 29
  numbers equal the batch final state over the distinct events, bit for bit. Online, "before a
  decision" is what has arrived when the price is asked; an event that arrives later with an earlier
  `ts` is in the batch row (rebuilt from the complete log) but was not known online: that is the
  one, documented, difference between serving and training rows.
- **Exactness.** Running sums are over integers (ms, cents, 1e-4 log units, 1e-6 depth units), so
  they do not depend on summation order; floats are made from them by one shared `finalize`.
  Gaps and dwell times are capped at one hour, prices clipped to [0.01, 1e9].
- **Unknown products** (not in the catalogue) count as their own category with the catalogue's
  lowest popularity; decision rows give them `category` null, `base_price` and `price_ratio` NaN.
- **Popularity** is part of the catalogue contract the features read (`phantom/features/popularity.py`):
  a positive number per product on any scale (normalised to a share), e.g. the shop's view or sales
  counts. A catalogue without the column stops the features stage with one line naming the file and
  the column (it used to give every session popularity 0, outside anything the detector saw); values
  that are not positive and finite count as the least popular and are counted in
  `metrics/features.json` (`catalogue_popularity_invalid`). `features.popularity: traffic` derives it
  instead from the events given: 1 + each product's product views, one snapshot table for batch and
  online (not point-in-time: a session's own views are in it, so use a log much larger than a session).
- **Labels** come only from the shop's cohort assignment (`cohort`, joined by session id from the
  table the shop controls, phantom/features/cohorts.py): `xp_human_only` is a person (0, family
  `human`), `xp_agent_<family>` an agent (1, `<family>`), anything else or no assignment unlabeled
  (`is_agent` null, `labeled` false, kept). The client's `experiment_id` is kept as data and never
  becomes a label: a bot that sends `xp_human_only` stays unlabeled. Hidden ground truth is never read.
- **Purchase label.** `purchased_this_product` is 1 on the view that made the sale: each purchase
  event credits the latest view of the same product in the same session at or before it (in
  `(ts, event_id)` order, a view sorting before a purchase with the same `ts`), and a view is 1 when
  at least one purchase credits it. A product viewed three times and then bought labels only the
  third view; bought twice after two separate views, both; a purchase with no earlier view of its
  product credits nothing. The traffic model draws one purchase decision per product view at that
  view's price and the funnel follows that view, so the label's mean per view estimates the
  per-view purchase probability the pricing model learns (a data test holds it to the truth).
"""


def render_markdown() -> str:
    """docs/features.md, generated from this registry."""
    lines = [
        "# Features",
        "",
        "Generated by `python -m phantom.features.registry` from `phantom/features/registry.py`; do not edit by hand.",
        "",
        "## Session features (29)",
        "",
        "Every session feature is a running aggregate over the session's distinct events, ordered by "
        "`(ts, event_id)`, up to the point of interest. Gaps are differences of consecutive `ts` in that order. "
        "Undefined values (no gap, no view yet) are 0, never NaN. The batch pipeline "
        "(`phantom.features.aggregator`) and the online state (`phantom.features.online`) compute them "
        "from the same integer state, so they agree exactly (a property test holds them equal).",
        "",
    ]
    for group in GROUPS:
        specs = [f for f in SESSION_FEATURE_SPECS if f.group == group]
        lines += [f"### {group} ({len(specs)})", "", "| # | name | definition | unit | why |", "|---|---|---|---|---|"]
        for f in specs:
            lines.append(f"| {SESSION_FEATURES.index(f.name) + 1} | `{f.name}` | {f.definition} | {f.unit} | {f.why} |")
        lines.append("")
    lines += [
        f"## Product features on decision rows ({len(PRODUCT_FEATURES)})",
        "",
        "| name | kind | definition | unit |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{f.name}` | {f.group} | {f.definition} | {f.unit} |" for f in PRODUCT_FEATURE_SPECS]
    lines += [
        "",
        "## Matrices",
        "",
        "- `data/features/sessions.parquet`: one row per session, final state: "
        + ", ".join(f"`{c}`" for c in SESSION_KEYS)
        + ", then the 29 session features (float64).",
        "- `data/features/sessions_early.parquet`: the same columns, the features over only the first "
        "`features.early_events` events of each session (keys and labels describe the whole session).",
        "- `data/features/decisions.parquet`: one row per product view: "
        + ", ".join(f"`{c}`" for c in DECISION_KEYS)
        + ", the 29 session features as of just before the view, the product features, then "
        + ", ".join(f"`{c}`" for c in DECISION_LABELS)
        + ".",
        "",
    ]
    from phantom.features.evidence_notes import EVIDENCE

    lines += ["## Semantics", "", SEMANTICS.strip(), "", "## Why these 29 (evidence)", "", EVIDENCE.strip(), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Write docs/features.md (or, with --check, fail if it is stale)."""
    parser = argparse.ArgumentParser(description="Generate docs/features.md from the feature registry.")
    parser.add_argument("--out", type=Path, default=Path("docs/features.md"))
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from the registry")
    args = parser.parse_args(argv)
    text = render_markdown()
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run python -m phantom.features.registry", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
