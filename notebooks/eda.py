# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exploratory analysis of the ingested events
#
# What the shop's traffic looks like once ingested (`data/raw/events`, `dvc pull`): the event mix,
# arrivals by hour, session lengths, the randomised price experiment and the labeled cohorts.
# `PHANTOM_ROOT` points at another checkout's outputs (the tests run this on a small world);
# figures go to `reports/notebooks/eda/`.

# %%
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

ROOT = Path(os.environ.get("PHANTOM_ROOT", ".."))
FIGURES = Path(os.environ.get("PHANTOM_FIGURES", ROOT / "reports/notebooks")) / "eda"
FIGURES.mkdir(parents=True, exist_ok=True)
events = pd.read_parquet(
    ROOT / "data/raw/events",
    columns=["session_id", "ts", "event_type", "product_id", "price", "experiment_id", "user_agent"],
)
catalogue = pd.read_parquet(ROOT / "data/raw/catalogue.parquet")
print(f"{len(events):,} events, {events['session_id'].nunique():,} sessions, {len(catalogue):,} products")

# %% [markdown]
# ## The event mix

# %%
mix = events["event_type"].value_counts(normalize=True)
ax = mix.plot.barh(figsize=(7, 4), title="share of events by type")
ax.invert_yaxis()
plt.tight_layout()
plt.savefig(FIGURES / "event_mix.png", dpi=110)
mix.round(3)

# %% [markdown]
# ## Arrivals by hour of day (UTC) and session lengths

# %%
first = events.groupby("session_id")["ts"].min()
hours = pd.to_datetime(first, unit="ms", utc=True).dt.hour.value_counts().sort_index()
length = events.groupby("session_id").size()
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
hours.plot.bar(ax=axes[0], title="sessions started per hour of day")
axes[1].hist(np.log10(length), bins=40)
axes[1].set_title("events per session (log10)")
plt.tight_layout()
plt.savefig(FIGURES / "arrivals_and_lengths.png", dpi=110)
length.describe().round(1)

# %% [markdown]
# ## The randomised price experiment: shown price / list price

# %%
views = events.loc[events["event_type"] == "product_view", ["product_id", "price"]].dropna()
ratio = views["price"] / views["product_id"].map(catalogue.set_index("product_id")["base_price"])
ax = ratio.plot.hist(bins=40, figsize=(7, 4), title="price shown / list price, product views")
plt.tight_layout()
plt.savefig(FIGURES / "price_ratio.png", dpi=110)
ratio.describe().round(3)

# %% [markdown]
# ## Labeled cohorts (the shop's assignment table; a client's `experiment_id` is only a claim)

# %%
sessions = pd.Series(events["session_id"].unique(), name="session_id")
placed = pd.read_parquet(ROOT / "data/raw/cohorts.parquet").set_index("session_id")["cohort"]
cohort = sessions.map(placed).fillna("(none)")
shares = cohort.where(cohort.str.startswith("xp_"), "unlabeled or other A/B").value_counts(normalize=True)
ax = shares.plot.barh(figsize=(7, 3.5), title="share of sessions by cohort")
plt.tight_layout()
plt.savefig(FIGURES / "cohorts.png", dpi=110)
shares.round(3)
