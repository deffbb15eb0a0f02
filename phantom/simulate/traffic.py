"""The traffic generator: a day-by-day stream of sessions and their events, fully vectorised.

`simulate(config)` returns the catalogue, the hidden ground truth (one row per session) and the
contract-valid events (one row per event, with the time each was received). Bad events are added
separately by `phantom.simulate.stream`, so the truth about good events is never disturbed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from phantom.events.catalogue import CATEGORIES
from phantom.events.contract import AGENT_LABEL_PREFIX, HUMAN_LABEL
from phantom.simulate.catalogue import make_catalogue
from phantom.simulate.population import (
    BROWSE_TYPES,
    KINDS,
    REFERRERS,
    UA_POOLS,
    Kind,
    Mix,
    purchase_probability,
)

OTHER_EXPERIMENTS: tuple[str, ...] = ("xp_checkout_v2", "xp_reco_carousel", "xp_free_shipping")
MONITOR_PERIODS_H: tuple[float, ...] = (1.0, 2.0, 4.0, 6.0)
MS_PER_HOUR = 3_600_000


@dataclass(frozen=True)
class TrafficConfig:
    """Everything the generator reads; built from the `generate` section of params.yaml."""

    seed: int = 7
    start: str = "2026-11-02"
    days: float = 7.0
    sessions_per_hour: float = 120.0
    mix: Mix = field(
        default_factory=lambda: Mix(
            0.3,
            {"casual": 0.5, "deliberate": 0.35, "power": 0.15},
            {"scraper": 0.3, "price_monitor": 0.2, "llm_agent": 0.3, "stealth": 0.2},
        )
    )
    n_products: int = 2000
    price_multiplier: tuple[float, float] = (0.7, 1.5)
    human_sensitivity: float = 2.0
    agent_sensitivity: float = 5.0
    human_label_share: float = 0.3
    agent_label_share: float = 0.3
    other_experiment_share: float = 0.1
    network_delay_ms: float = 80.0
    out_of_order_rate: float = 0.01
    mix_concentration: float = 12.0  # how tightly a session's action mix follows its kind's

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TrafficConfig:
        """Build from a params.yaml section (unknown keys are an error, not a silent no-op)."""
        params = dict(params)
        mix = params.pop("mix", None)
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"unknown generate params: {sorted(unknown)}")
        if "price_multiplier" in params:
            params["price_multiplier"] = tuple(params["price_multiplier"])
        cfg = cls(**params)
        if mix is not None:
            cfg = replace(cfg, mix=Mix(mix["agent_share"], dict(mix["humans"]), dict(mix["agents"])))
        return cfg

    def kinds(self) -> dict[str, Kind]:
        """The visitor kinds with this config's price sensitivities applied."""
        return {
            name: replace(k, sensitivity=self.agent_sensitivity if k.is_agent else self.human_sensitivity)
            for name, k in KINDS.items()
        }

    @property
    def start_ms(self) -> int:
        """Epoch milliseconds (UTC) of the first moment of traffic."""
        return int(pd.Timestamp(self.start, tz="UTC").value // 1_000_000)


@dataclass
class Traffic:
    """One generated world: catalogue, hidden truth per session, and good events."""

    catalogue: pd.DataFrame
    sessions: pd.DataFrame
    events: pd.DataFrame
    config: TrafficConfig

    @property
    def cohorts(self) -> pd.DataFrame:
        """The shop's cohort assignment table (session_id, cohort): the experiments it placed sessions in.

        Server-side: the simulated shop assigned these, so they are the labels' source (phantom.features.cohorts);
        the visitors' events also carry the id, as a claim any client could forge.
        """
        placed = self.sessions.loc[self.sessions["experiment_id"].notna(), ["session_id", "experiment_id"]]
        return placed.rename(columns={"experiment_id": "cohort"}).reset_index(drop=True)


def _hex_ids(rng: np.random.Generator, n: int, prefix: str = "") -> np.ndarray:
    raw = rng.integers(0, np.iinfo(np.int64).max, size=n, dtype=np.int64)
    return np.array([f"{prefix}{x:016x}" for x in raw.tolist()], dtype=object)


def _arrivals(
    cfg: TrafficConfig, kinds: dict[str, Kind], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Session start offsets (ms), kind names and returning-visitor index (-1: one-off visitor).

    Arrivals are a Poisson process with an hour-of-day rate; price monitors return on a schedule.
    """
    shares = cfg.mix.kind_shares()
    hours = int(np.ceil(cfg.days * 24))
    hour_of_day = (np.arange(hours) % 24).astype(float)
    starts, names, visitors = [], [], []
    for name, share in shares.items():
        if name == "price_monitor" or share <= 0:
            continue
        amp = kinds[name].hour_amplitude
        rate = cfg.sessions_per_hour * share * (1 + amp * np.cos(2 * np.pi * (hour_of_day - 20) / 24))
        counts = rng.poisson(rate)
        hour_idx = np.repeat(np.arange(hours), counts)
        t = (hour_idx + rng.random(hour_idx.size)) * MS_PER_HOUR
        starts.append(t)
        names.append(np.full(t.size, name, dtype=object))
        visitors.append(np.full(t.size, -1, dtype=np.int64))
    monitor_share = shares.get("price_monitor", 0.0)
    if monitor_share > 0:
        t, visitor = _monitor_schedule(cfg, monitor_share, rng)
        starts.append(t)
        names.append(np.full(t.size, "price_monitor", dtype=object))
        visitors.append(visitor)
    start = np.concatenate(starts)
    kind = np.concatenate(names)
    visitor = np.concatenate(visitors)
    keep = start < cfg.days * 24 * MS_PER_HOUR
    return start[keep], kind[keep], visitor[keep]


def _monitor_schedule(cfg: TrafficConfig, share: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Price monitors come back on a fixed period: (session start ms, visitor index)."""
    horizon_h = cfg.days * 24
    expected_sessions = cfg.sessions_per_hour * share * horizon_h
    mean_per_visitor = horizon_h * np.mean([1 / p for p in MONITOR_PERIODS_H])
    n_visitors = max(1, int(round(expected_sessions / mean_per_visitor)))
    period = rng.choice(MONITOR_PERIODS_H, size=n_visitors)
    phase = rng.random(n_visitors) * period
    n_visits = np.floor((horizon_h - phase) / period).astype(int) + 1
    visitor = np.repeat(np.arange(n_visitors), n_visits)
    k = np.arange(visitor.size) - np.repeat(np.cumsum(n_visits) - n_visits, n_visits)
    t_h = phase[visitor] + k * period[visitor]
    t = t_h * MS_PER_HOUR + rng.normal(0, 30_000, visitor.size)
    return np.clip(t, 0, None), visitor


def simulate_sessions(cfg: TrafficConfig, catalogue: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """One row per session with its hidden truth: kind, family, willingness to pay, price shown."""
    kinds = cfg.kinds()
    start, kind_name, visitor = _arrivals(cfg, kinds, rng)
    order = np.argsort(start, kind="stable")
    start, kind_name, visitor = start[order], kind_name[order], visitor[order]
    n = start.size
    k_list = [kinds[str(x)] for x in kind_name]

    def per_kind(attr: str) -> np.ndarray:
        table = {name: getattr(k, attr) for name, k in kinds.items()}
        return np.array([table[x] for x in kind_name])

    mean_events = per_kind("n_events_mean")
    dispersion = per_kind("n_events_dispersion")
    p = dispersion / (dispersion + np.maximum(mean_events - 1, 1e-9))
    n_events = 1 + rng.negative_binomial(dispersion, p)
    gap_median_s = per_kind("gap_median_s") * np.exp(rng.normal(0, 1, n) * per_kind("session_sigma"))
    # regularity varies per session too: some bots add jitter, some people click steadily
    gap_sigma = per_kind("gap_sigma") * np.exp(rng.normal(0, 0.4, n))
    wtp = per_kind("wtp_median") * np.exp(rng.normal(0, 1, n) * per_kind("wtp_sigma"))
    lo, hi = cfg.price_multiplier
    multiplier = np.round(rng.uniform(lo, hi, n), 3)
    cat_weights = catalogue.groupby("category")["popularity"].sum()
    cat_names = np.array([c for c, _ in CATEGORIES], dtype=object)
    cat_p = cat_weights.reindex(cat_names).to_numpy()
    category = rng.choice(cat_names, size=n, p=cat_p / cat_p.sum())

    # user agents: pick a pool per session by the kind's mix, then a string in the pool
    ua = np.empty(n, dtype=object)
    u_pool = rng.random(n)
    u_item = rng.random(n)
    for i, k in enumerate(k_list):
        acc = 0.0
        pool = None
        for pool_name, prob in k.ua.items():
            acc += prob
            if u_pool[i] < acc:
                pool = UA_POOLS[pool_name]
                break
        pool = pool or UA_POOLS[next(iter(k.ua))]
        ua[i] = pool[int(u_item[i] * len(pool))]

    ref_idx = np.array([rng.choice(len(REFERRERS), p=np.array(k.referrers) / sum(k.referrers)) for k in k_list])
    referrer = np.array(REFERRERS, dtype=object)[ref_idx] if n else np.array([], dtype=object)

    is_agent = np.array([k.is_agent for k in k_list], dtype=bool)
    family = np.array([k.family for k in k_list], dtype=object)
    u_label = rng.random(n)
    label_share = np.where(is_agent, cfg.agent_label_share, cfg.human_label_share)
    labelled = u_label < label_share
    other = (~labelled) & (u_label < label_share + cfg.other_experiment_share)
    experiment = np.full(n, None, dtype=object)
    experiment[labelled & ~is_agent] = HUMAN_LABEL
    agent_labelled = labelled & is_agent
    experiment[agent_labelled] = np.array([AGENT_LABEL_PREFIX + f for f in family[agent_labelled]], dtype=object)
    experiment[other] = rng.choice(np.array(OTHER_EXPERIMENTS, dtype=object), size=int(other.sum()))

    session_id = _hex_ids(rng, n, "s")
    return pd.DataFrame(
        {
            "session_id": session_id,
            "visitor": visitor,
            "kind": kind_name.astype(object),
            "family": family,
            "is_agent": is_agent,
            "start_ms": cfg.start_ms + start.astype(np.int64),
            "n_browse_events": n_events.astype(np.int64),
            "gap_median_s": gap_median_s,
            "gap_sigma": gap_sigma,
            "wtp": wtp,
            "price_multiplier": multiplier,
            "intercept": per_kind("intercept").astype(float),
            "sensitivity": per_kind("sensitivity").astype(float),
            "category": category,
            "user_agent": ua,
            "referrer": referrer,
            "experiment_id": experiment,
        }
    )


def _category_sampler(catalogue: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """Arrays to draw popularity-weighted products inside a category with one searchsorted."""
    cat_names = [c for c, _ in CATEGORIES]
    cat_code = pd.Categorical(catalogue["category"], categories=cat_names).codes
    order = np.lexsort((np.arange(len(catalogue)), cat_code))
    codes = cat_code[order]
    pop = catalogue["popularity"].to_numpy()[order]
    csum = np.cumsum(pop)
    cat_total = np.bincount(codes, weights=pop, minlength=len(cat_names))
    cat_before = np.concatenate([[0.0], np.cumsum(cat_total)[:-1]])
    key = codes + (csum - cat_before[codes]) / cat_total[codes]  # category c occupies (c, c+1]
    counts = np.bincount(codes, minlength=len(cat_names))
    return order, key, counts, {c: i for i, c in enumerate(cat_names)}


def simulate_events(
    sessions: pd.DataFrame, catalogue: pd.DataFrame, cfg: TrafficConfig, rng: np.random.Generator
) -> pd.DataFrame:
    """Contract-valid events for the sessions, sorted by (session, ts), with `received_ms`."""
    kinds = cfg.kinds()
    kind_names = list(kinds)
    kind_code = pd.Categorical(sessions["kind"], categories=kind_names).codes
    n_browse = sessions["n_browse_events"].to_numpy()
    S, E = len(sessions), int(n_browse.sum())
    sess = np.repeat(np.arange(S), n_browse)
    first = np.cumsum(n_browse) - n_browse
    pos = np.arange(E) - np.repeat(first, n_browse)
    k_ev = kind_code[sess]

    def kind_attr(attr: str) -> np.ndarray:
        return np.array([getattr(kinds[name], attr) for name in kind_names])

    # browse actions
    # browse actions: each session's own mix scatters (Dirichlet) around its kind's mix
    mix = np.array([[kinds[name].mix[t] for t in BROWSE_TYPES] for name in kind_names])
    alpha = mix[kind_code] * cfg.mix_concentration + 1e-3
    session_mix = rng.gamma(alpha)
    session_mix /= session_mix.sum(axis=1, keepdims=True)
    cum = np.cumsum(session_mix, axis=1)
    u = rng.random(E)
    btype = np.minimum((u[:, None] > cum[sess]).sum(axis=1), len(BROWSE_TYPES) - 1)
    opens_page = rng.random(E) < kind_attr("first_page_view")[k_ev]
    btype[pos == 0] = np.where(opens_page[pos == 0], 0, 1)  # page_view or search

    # timing: lognormal gaps around each session's median; the first event is the arrival
    gaps = (
        sessions["gap_median_s"].to_numpy()[sess]
        * 1000
        * np.exp(rng.normal(0, 1, E) * sessions["gap_sigma"].to_numpy()[sess])
    )
    gaps[pos == 0] = 0.0
    csum = np.cumsum(gaps)
    ts = sessions["start_ms"].to_numpy()[sess] + np.round(csum - csum[first][sess]).astype(np.int64)

    # products for product views
    order, key, counts, cat_index = _category_sampler(catalogue)
    n_prod = len(catalogue)
    is_pv = btype == BROWSE_TYPES.index("product_view")
    pv = np.flatnonzero(is_pv)
    s_pv = sess[pv]
    strategy = np.array([kinds[name].products for name in kind_names], dtype=object)[k_ev[pv]]
    focus = kind_attr("focus")[k_ev[pv]]
    in_cat = rng.random(pv.size) < focus
    cat_of = np.array([cat_index[c] for c in sessions["category"]])[s_pv]
    prod = np.empty(pv.size, dtype=np.int64)
    pop_cum = np.cumsum(catalogue["popularity"].to_numpy())
    global_draw = np.minimum(np.searchsorted(pop_cum, rng.random(pv.size) * pop_cum[-1]), n_prod - 1)
    cat_draw = order[np.minimum(np.searchsorted(key, cat_of + rng.random(pv.size)), n_prod - 1)]
    cat_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    cat_uniform = order[cat_start[cat_of] + (rng.random(pv.size) * counts[cat_of]).astype(np.int64)]
    uniform = rng.integers(0, n_prod, pv.size)
    popular = (strategy == "popular") | (strategy == "search")
    prod[popular] = np.where(in_cat[popular], cat_draw[popular], global_draw[popular])
    crawl = strategy == "crawl"
    prod[crawl] = np.where(in_cat[crawl], cat_uniform[crawl], uniform[crawl])
    watch = strategy == "watchlist"
    if watch.any():
        # each monitor keeps one watchlist (3-8 products) and cycles through it on every visit
        visitor = sessions["visitor"].to_numpy()[s_pv[watch]]
        wl_size = 3 + (visitor * 2654435761) % 6
        seq = pos[pv[watch]] % wl_size
        prod[watch] = (visitor * 7919 + seq * 104729) % n_prod
    base = catalogue["base_price"].to_numpy()
    multiplier = sessions["price_multiplier"].to_numpy()
    pv_price = np.round(base[prod] * multiplier[s_pv], 2)

    # demand: a product view turns into a purchase with the logit demand probability
    wtp = sessions["wtp"].to_numpy()[s_pv]
    p_buy = purchase_probability(
        sessions["intercept"].to_numpy()[s_pv], sessions["sensitivity"].to_numpy()[s_pv], wtp, multiplier[s_pv]
    )
    buy = rng.random(pv.size) < p_buy
    abandon = (~buy) & (rng.random(pv.size) < kind_attr("abandon")[k_ev[pv]])
    removes = abandon & (rng.random(pv.size) < 0.5)

    # pages: navigation events set the page, hovers/scrolls/clicks happen on the current page
    cat_names = np.array([c for c, _ in CATEGORIES], dtype=object)
    product_pages = np.array(["/product/" + p for p in catalogue["product_id"]], dtype=object)
    search_pages = np.array(["/search?q=" + c for c in cat_names], dtype=object)
    browse_pages = np.array(["/", "/deals", "/new"] + ["/category/" + c for c in cat_names], dtype=object)
    page = np.empty(E, dtype=object)
    sess_cat = np.array([cat_index[c] for c in sessions["category"]])[sess]
    is_pageview = btype == 0
    page[is_pageview] = browse_pages[rng.integers(0, browse_pages.size, int(is_pageview.sum()))]
    is_search = btype == 1
    page[is_search] = search_pages[sess_cat[is_search]]
    page[pv] = product_pages[prod]
    nav = is_pageview | is_search | is_pv
    last_nav = np.maximum.accumulate(np.where(nav, np.arange(E), 0))
    page = page[last_nav]

    # dwell for hovers and scrolls
    is_hover = btype == 3
    is_scroll = btype == 4
    duration = np.full(E, -1, dtype=np.int64)
    duration[is_hover] = np.round(
        kind_attr("hover_ms")[k_ev[is_hover]] * np.exp(rng.normal(0, 0.7, int(is_hover.sum())))
    )
    duration[is_scroll] = np.round(
        kind_attr("scroll_ms")[k_ev[is_scroll]] * np.exp(rng.normal(0, 0.6, int(is_scroll.sum())))
    )
    depth_a = np.array([kinds[n].scroll_depth[0] for n in kind_names])[k_ev[is_scroll]]
    depth_b = np.array([kinds[n].scroll_depth[1] for n in kind_names])[k_ev[is_scroll]]
    depth = np.full(E, np.nan)
    depth[is_scroll] = np.round(rng.beta(depth_a, depth_b), 3)

    product = np.full(E, None, dtype=object)
    product[pv] = catalogue["product_id"].to_numpy()[prod]
    price = np.full(E, np.nan)
    price[pv] = pv_price
    event_type = np.array(BROWSE_TYPES, dtype=object)[btype]
    quantity = np.full(E, -1, dtype=np.int64)

    # the purchase funnel, appended after the product view that triggered it
    funnel = _funnel(rng, pv, buy, abandon, removes, sessions, sess, k_ev, kinds, kind_names)
    f_src, f_type, f_dt, f_qty = funnel
    f_page = np.where(
        f_type == "add_to_cart",
        product_pages[prod[np.searchsorted(pv, f_src)]],
        np.where(
            f_type == "remove_from_cart", "/cart", np.where(f_type == "checkout", "/checkout", "/checkout/complete")
        ),
    )
    all_sess = np.concatenate([sess, sess[f_src]])
    all_ts = np.concatenate([ts, ts[f_src] + f_dt])
    all_type = np.concatenate([event_type, f_type])
    all_product = np.concatenate([product, np.where(f_type == "checkout", None, product[f_src])])
    all_price = np.concatenate([price, np.where(f_type == "checkout", np.nan, price[f_src])])
    all_qty = np.concatenate([quantity, f_qty])
    all_duration = np.concatenate([duration, np.full(f_src.size, -1, dtype=np.int64)])
    all_depth = np.concatenate([depth, np.full(f_src.size, np.nan)])
    all_page = np.concatenate([page, f_page.astype(object)])

    order_ev = np.lexsort((all_ts, all_sess))
    all_sess = all_sess[order_ev]
    n_total = all_sess.size
    is_first = np.ones(n_total, dtype=bool)
    is_first[1:] = all_sess[1:] != all_sess[:-1]
    all_page = all_page[order_ev]
    referrer = np.empty(n_total, dtype=object)
    referrer[1:] = all_page[:-1]
    referrer[is_first] = sessions["referrer"].to_numpy()[all_sess[is_first]]
    all_ts = all_ts[order_ev]

    delay = np.round(cfg.network_delay_ms * np.exp(rng.normal(0, 0.6, n_total))).astype(np.int64)
    late = rng.random(n_total) < cfg.out_of_order_rate
    delay[late] += rng.integers(5_000, 900_000, int(late.sum()))

    events = pd.DataFrame(
        {
            "event_id": _hex_ids(rng, n_total, "e"),
            "session_id": sessions["session_id"].to_numpy()[all_sess],
            "ts": all_ts,
            "event_type": all_type[order_ev],
            "product_id": all_product[order_ev],
            "price": all_price[order_ev],
            "quantity": pd.array(np.where(all_qty[order_ev] < 0, 0, all_qty[order_ev]), dtype="Int64"),
            "duration_ms": pd.array(np.where(all_duration[order_ev] < 0, 0, all_duration[order_ev]), dtype="Int64"),
            "scroll_depth": all_depth[order_ev],
            "page": all_page,
            "referrer": referrer,
            "user_agent": sessions["user_agent"].to_numpy()[all_sess],
            "experiment_id": sessions["experiment_id"].to_numpy()[all_sess],
            "received_ms": all_ts + delay,
        }
    )
    events.loc[all_qty[order_ev] < 0, "quantity"] = pd.NA
    events.loc[all_duration[order_ev] < 0, "duration_ms"] = pd.NA
    return events


def _funnel(
    rng: np.random.Generator,
    pv: np.ndarray,
    buy: np.ndarray,
    abandon: np.ndarray,
    removes: np.ndarray,
    sessions: pd.DataFrame,
    sess: np.ndarray,
    k_ev: np.ndarray,
    kinds: dict[str, Kind],
    kind_names: list[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cart, checkout and purchase events: (source event index, type, ms after source, quantity)."""
    step = sessions["gap_median_s"].to_numpy() * 1000
    q_mean = np.array([kinds[n].quantity_mean for n in kind_names])
    src, types, dts, qty = [], [], [], []
    b = pv[buy]
    if b.size:
        d1 = step[sess[b]] * 0.5 * np.exp(rng.normal(0, 0.5, b.size))
        d2 = d1 + step[sess[b]] * 0.8 * np.exp(rng.normal(0, 0.5, b.size))
        d3 = d2 + 400 + step[sess[b]] * 0.3 * np.exp(rng.normal(0, 0.5, b.size))
        q = 1 + rng.poisson(q_mean[k_ev[b]])
        for dt, name, quantity in ((d1, "add_to_cart", q), (d2, "checkout", np.full(b.size, -1)), (d3, "purchase", q)):
            src.append(b)
            types.append(np.full(b.size, name, dtype=object))
            dts.append(dt)
            qty.append(quantity)
    a = pv[abandon]
    if a.size:
        d1 = step[sess[a]] * 0.5 * np.exp(rng.normal(0, 0.5, a.size))
        src.append(a)
        types.append(np.full(a.size, "add_to_cart", dtype=object))
        dts.append(d1)
        qty.append(np.ones(a.size, dtype=np.int64))
        r = pv[removes]
        d2 = step[sess[r]] * 1.5 * np.exp(rng.normal(0, 0.5, r.size))
        src.append(r)
        types.append(np.full(r.size, "remove_from_cart", dtype=object))
        dts.append(d2)
        qty.append(np.ones(r.size, dtype=np.int64))
    if not src:
        return (
            np.array([], dtype=np.int64),
            np.array([], dtype=object),
            np.array([], dtype=np.int64),
            np.array([], dtype=np.int64),
        )
    return (
        np.concatenate(src),
        np.concatenate(types),
        np.round(np.concatenate(dts)).astype(np.int64),
        np.concatenate(qty).astype(np.int64),
    )


def simulate(cfg: TrafficConfig, catalogue: pd.DataFrame | None = None) -> Traffic:
    """Generate one world deterministically from `cfg.seed` (on `catalogue` when given, e.g. a shop's own)."""
    rng = np.random.default_rng(cfg.seed)
    drawn = make_catalogue(cfg.n_products, rng)  # drawn either way: a given catalogue leaves the streams as they were
    catalogue = drawn if catalogue is None else catalogue.reset_index(drop=True)
    sessions = simulate_sessions(cfg, catalogue, rng)
    events = simulate_events(sessions, catalogue, cfg, rng)
    counts = events.groupby("session_id", sort=False).size()
    sessions["n_events"] = sessions["session_id"].map(counts).fillna(0).astype(np.int64)
    purchases = events.loc[events["event_type"] == "purchase"].groupby("session_id", sort=False).size()
    sessions["n_purchases"] = sessions["session_id"].map(purchases).fillna(0).astype(np.int64)
    return Traffic(catalogue=catalogue, sessions=sessions, events=events, config=cfg)
