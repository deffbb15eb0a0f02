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
# # Simulator calibration
#
# The pricing simulator's free parameters fitted from what a shop logs (`phantom.simulate.calibrate`:
# arrivals, agent share, agent family mix, people's and agents' price sensitivity from the labeled
# cohorts of the randomised price experiment), and the calibrated world's traffic compared with the
# logged one. The simulator's own settings (`params.yaml: simulate.world`) are shown beside the fit:
# on the pipeline's own world the fit should recover them. Figures go to `reports/notebooks/simulator_calibration/`.

# %%
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml

from phantom.simulate import calibrate

ROOT = Path(os.environ.get("PHANTOM_ROOT", ".."))
FIGURES = Path(os.environ.get("PHANTOM_FIGURES", ROOT / "reports/notebooks")) / "simulator_calibration"
FIGURES.mkdir(parents=True, exist_ok=True)
sessions = pd.read_parquet(ROOT / "data/features/sessions.parquet")
decisions = pd.read_parquet(ROOT / "data/features/decisions.parquet")
decisions = decisions.loc[decisions["price_ratio"].notna()]
p_agent = np.where(sessions["labeled"], sessions["is_agent"].fillna(0).astype(float), 0.3)  # a flat prior for the rest
fitted = calibrate.calibrate(sessions, decisions, p_agent)
world = yaml.safe_load((ROOT / "params.yaml").read_text())["generate"] if (ROOT / "params.yaml").exists() else {}
pd.DataFrame(
    {
        "fitted": {k: fitted[k] for k in ("sessions_per_hour", "human_sensitivity", "agent_sensitivity")},
        "generator": {k: world.get(k) for k in ("sessions_per_hour", "human_sensitivity", "agent_sensitivity")},
    }
)

# %% [markdown]
# ## Arrivals: the fitted hour-of-day profile

# %%
ax = pd.Series(fitted["hour_profile"]).plot.bar(figsize=(8, 3.5), title="fitted arrivals by hour (x mean rate)")
plt.tight_layout()
plt.savefig(FIGURES / "hour_profile.png", dpi=110)

# %% [markdown]
# ## Price response per cohort: logged conversion by price bucket and the fitted logit

# %%
cohort = decisions["cohort"].astype("string").fillna("")  # the shop's assignment, joined by the features stage
people = decisions.loc[cohort == calibrate.HUMAN_COHORT]
agents = decisions.loc[cohort.str.startswith(calibrate.AGENT_COHORT_PREFIX)]
edges = np.linspace(0.7, 1.5, 9)
fig, ax = plt.subplots(figsize=(7, 4))
for name, g in (("verified people", people), ("agent harness cohorts", agents)):
    bucket = pd.cut(g["price_ratio"], edges, include_lowest=True)
    rate = g.groupby(bucket, observed=False)["purchased_this_product"].mean()
    ax.plot([i.mid for i in rate.index], rate.to_numpy(), marker="o", label=f"{name} (logged)")
ax.set_xlabel("price / list price")
ax.set_ylabel("purchases per view")
ax.set_title(
    f"price response: fitted slopes people {fitted['human_sensitivity']:.2f}, agents {fitted['agent_sensitivity']:.2f}"
)
ax.legend()
plt.tight_layout()
plt.savefig(FIGURES / "price_response.png", dpi=110)

# %% [markdown]
# ## Agent family mix of the harness cohorts

# %%
mix = pd.Series(fitted["agents"]).sort_values()
ax = mix.plot.barh(figsize=(6, 3), title=f"agent family mix (fitted agent share {fitted['agent_share']:.3f})")
plt.tight_layout()
plt.savefig(FIGURES / "family_mix.png", dpi=110)
mix.round(3)
