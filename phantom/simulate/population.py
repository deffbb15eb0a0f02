"""Who visits the shop: the kinds of people and agents, their behaviour and their demand.

One model serves two masters: the traffic generator (training data) and the pricing simulator
(the world pricing policies are scored in). Keeping both on this module is what makes the
simulator's oracle an honest ceiling.

Every behavioural signal of an agent family overlaps some kind of person on purpose: no single
feature may separate a family from people, or a detector would learn a shortcut.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Browse actions drawn per event; the purchase funnel (cart, checkout, purchase) is added by the
# demand model on top of product views.
BROWSE_TYPES: tuple[str, ...] = ("page_view", "search", "product_view", "hover", "scroll", "click")

STOCK_UAS: tuple[str, ...] = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
)
# Unusual but human: privacy browsers, old devices, embedded webviews.
RARE_HUMAN_UAS: tuple[str, ...] = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 9; SM-J600F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/88.0.4324.93 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 312.0.0",
)
HEADLESS_UAS: tuple[str, ...] = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 PhantomJS/2.1.1",
    "python-requests/2.32.3",
    "Scrapy/2.11.2 (+https://scrapy.org)",
    "curl/8.5.0",
    "Go-http-client/2.0",
)
DECLARED_BOT_UAS: tuple[str, ...] = (
    "Mozilla/5.0 (compatible; PriceSpy/2.1; +https://pricespy.example/bot)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ChatGPT-User/1.0; +https://openai.com/bot)",
    "Mozilla/5.0 (compatible; Claude-User/1.0; +Claude-User@anthropic.com)",
)
UA_POOLS: dict[str, tuple[str, ...]] = {
    "stock": STOCK_UAS,
    "rare_human": RARE_HUMAN_UAS,
    "headless": HEADLESS_UAS,
    "declared_bot": DECLARED_BOT_UAS,
}
REFERRERS: tuple[str | None, ...] = (
    None,
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://duckduckgo.com/",
    "https://www.instagram.com/",
    "https://news.ycombinator.com/",
    "https://chatgpt.com/",
)


@dataclass(frozen=True)
class Kind:
    """Behaviour and demand of one kind of visitor."""

    name: str
    family: str  # "human" or the agent family
    n_events_mean: float  # events per session (before the purchase funnel)
    n_events_dispersion: float  # negative-binomial shape; smaller is more spread
    gap_median_s: float  # median seconds between events
    gap_sigma: float  # within-session log-sd of gaps (regularity: small is robotic)
    session_sigma: float  # between-session log-sd of the median gap
    mix: dict[str, float]  # browse action probabilities
    first_page_view: float  # probability a session opens on a page view (else a search)
    hover_ms: float  # median hover dwell
    scroll_ms: float  # median scroll dwell
    scroll_depth: tuple[float, float]  # beta(a, b) of scroll depth
    products: str  # how products are chosen: popular, crawl, watchlist, search
    focus: float  # share of product views inside the session's category
    ua: dict[str, float]  # user-agent pool -> probability
    intercept: float  # demand logit at price == willingness to pay
    sensitivity: float  # demand slope in (willingness to pay - price ratio)
    wtp_median: float  # willingness to pay, as a multiple of base price
    wtp_sigma: float
    quantity_mean: float  # extra units beyond one (Poisson)
    abandon: float  # probability a product view is carted and not bought
    hour_amplitude: float  # day/night swing of the arrival rate
    referrers: tuple[float, ...] = field(default=(0.3, 0.35, 0.08, 0.05, 0.12, 0.05, 0.05))

    @property
    def is_agent(self) -> bool:
        """True for automated visitors."""
        return self.family != "human"


def _mix(
    page_view: float, search: float, product_view: float, hover: float, scroll: float, click: float
) -> dict[str, float]:
    raw = dict(zip(BROWSE_TYPES, (page_view, search, product_view, hover, scroll, click), strict=True))
    total = sum(raw.values())
    return {k: v / total for k, v in raw.items()}


HUMAN_KINDS: dict[str, Kind] = {
    "casual": Kind(
        "casual",
        "human",
        16,
        1.2,
        6.0,
        1.0,
        0.45,
        _mix(0.22, 0.05, 0.2, 0.2, 0.25, 0.08),
        0.9,
        900,
        1500,
        (2.0, 3.0),
        "popular",
        0.6,
        {"stock": 0.985, "rare_human": 0.015},
        -4.0,
        2.0,
        1.05,
        0.2,
        0.2,
        0.03,
        0.6,
    ),
    "deliberate": Kind(
        "deliberate",
        "human",
        28,
        1.5,
        4.0,
        0.9,
        0.4,
        _mix(0.12, 0.15, 0.3, 0.18, 0.17, 0.08),
        0.75,
        1200,
        1800,
        (3.0, 2.0),
        "popular",
        0.75,
        {"stock": 0.985, "rare_human": 0.015},
        -3.0,
        2.0,
        1.15,
        0.2,
        0.3,
        0.05,
        0.6,
    ),
    "power": Kind(
        "power",
        "human",
        18,
        1.5,
        1.6,
        0.8,
        0.4,
        _mix(0.15, 0.25, 0.3, 0.08, 0.1, 0.12),
        0.6,
        500,
        700,
        (2.0, 2.0),
        "popular",
        0.8,
        {"stock": 0.97, "rare_human": 0.03},
        -2.6,
        2.0,
        1.2,
        0.2,
        0.4,
        0.04,
        0.5,
    ),
}
AGENT_KINDS: dict[str, Kind] = {
    "scraper": Kind(
        "scraper",
        "scraper",
        45,
        0.8,
        1.0,
        0.4,
        0.6,
        _mix(0.35, 0.04, 0.55, 0.01, 0.02, 0.03),
        0.95,
        250,
        300,
        (5.0, 1.0),
        "crawl",
        0.2,
        {"headless": 0.3, "declared_bot": 0.1, "stock": 0.6},
        -7.0,
        5.0,
        0.9,
        0.1,
        0.0,
        0.0,
        0.1,
    ),
    "price_monitor": Kind(
        "price_monitor",
        "price_monitor",
        20,
        2.0,
        2.2,
        0.45,
        0.5,
        _mix(0.25, 0.08, 0.58, 0.03, 0.04, 0.02),
        0.9,
        300,
        400,
        (3.0, 2.0),
        "watchlist",
        0.5,
        {"declared_bot": 0.25, "headless": 0.2, "stock": 0.55},
        -7.0,
        5.0,
        0.9,
        0.1,
        0.0,
        0.0,
        0.0,
    ),
    "llm_agent": Kind(
        "llm_agent",
        "llm_agent",
        22,
        2.0,
        5.0,
        0.45,
        0.3,
        _mix(0.15, 0.25, 0.35, 0.02, 0.1, 0.13),
        0.35,
        400,
        600,
        (6.0, 1.5),
        "search",
        0.9,
        {"stock": 0.85, "declared_bot": 0.15},
        -1.8,
        5.0,
        1.0,
        0.1,
        0.6,
        0.03,
        0.3,
    ),
    "stealth": Kind(
        "stealth",
        "stealth",
        26,
        1.5,
        2.5,
        0.55,
        0.45,
        _mix(0.15, 0.12, 0.4, 0.08, 0.15, 0.1),
        0.7,
        350,
        500,
        (3.0, 2.0),
        "popular",
        0.7,
        {"stock": 0.97, "headless": 0.03},
        -2.2,
        5.0,
        1.0,
        0.1,
        1.0,
        0.02,
        0.2,
    ),
}
KINDS: dict[str, Kind] = {**HUMAN_KINDS, **AGENT_KINDS}
KIND_NAMES: tuple[str, ...] = tuple(KINDS)
FAMILIES: tuple[str, ...] = tuple(AGENT_KINDS)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically safe logistic function."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=float)))


def purchase_probability(
    intercept: np.ndarray, sensitivity: np.ndarray, wtp: np.ndarray, price_ratio: np.ndarray
) -> np.ndarray:
    """Logit demand: P(buy) for a visitor shown `price_ratio` x base price."""
    return sigmoid(np.asarray(intercept) + np.asarray(sensitivity) * (np.asarray(wtp) - np.asarray(price_ratio)))


def kind_demand_curve(kind: Kind, price_ratio: np.ndarray, n_draws: int = 4001) -> np.ndarray:
    """A kind's expected purchase probability at each price ratio, integrating over its WTP."""
    q = (np.arange(n_draws) + 0.5) / n_draws
    from scipy.stats import norm  # scipy is already a dependency of the stack

    wtp = kind.wtp_median * np.exp(kind.wtp_sigma * norm.ppf(q))
    ratio = np.asarray(price_ratio, dtype=float)
    return (
        purchase_probability(kind.intercept, kind.sensitivity, wtp[None, :], ratio.reshape(-1, 1))
        .mean(axis=1)
        .reshape(ratio.shape)
    )


@dataclass(frozen=True)
class Mix:
    """How the population is composed: agent share and the mix inside people and agents."""

    agent_share: float
    humans: dict[str, float]
    agents: dict[str, float]

    def kind_shares(self) -> dict[str, float]:
        """Share of sessions of each kind, summing to one."""
        h_total = sum(self.humans.values())
        a_total = sum(self.agents.values())
        shares = {k: (1 - self.agent_share) * v / h_total for k, v in self.humans.items()}
        shares.update({k: self.agent_share * v / a_total for k, v in self.agents.items()})
        for name in shares:
            if name not in KINDS:
                raise ValueError(f"unknown visitor kind {name!r}; known: {', '.join(KIND_NAMES)}")
        return shares
