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
# # Feature analysis
#
# The 29 session features (`data/features/sessions.parquet`) on the labeled cohorts: how each
# separates verified people from the agent harness cohorts, and which features move together.
# Figures go to `reports/notebooks/feature_analysis/`.

# %%
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from phantom.features.registry import SESSION_FEATURES

ROOT = Path(os.environ.get("PHANTOM_ROOT", ".."))
FIGURES = Path(os.environ.get("PHANTOM_FIGURES", ROOT / "reports/notebooks")) / "feature_analysis"
FIGURES.mkdir(parents=True, exist_ok=True)
sessions = pd.read_parquet(ROOT / "data/features/sessions.parquet")
labeled = sessions.loc[sessions["labeled"]].copy()
labeled["is_agent"] = labeled["is_agent"].astype(int)
print(f"{len(sessions):,} sessions, {len(labeled):,} labeled ({labeled['is_agent'].mean():.1%} agents)")

# %% [markdown]
# ## One feature at a time: ROC-AUC of the raw feature (0.5 = no signal; below 0.5: lower means agent)

# %%
auc = pd.Series(
    {f: roc_auc_score(labeled["is_agent"], labeled[f].fillna(labeled[f].median())) for f in SESSION_FEATURES}
).sort_values()
ax = (auc - 0.5).plot.barh(figsize=(7, 8), title="single-feature ROC-AUC - 0.5, labeled sessions")
plt.tight_layout()
plt.savefig(FIGURES / "single_feature_auc.png", dpi=110)
auc.round(3)

# %% [markdown]
# ## The strongest features by cohort family

# %%
top = (auc - 0.5).abs().sort_values(ascending=False).index[:6]
fig, axes = plt.subplots(2, 3, figsize=(13, 7))
for ax, f in zip(axes.ravel(), top, strict=True):
    for family, g in labeled.groupby("label_family"):
        values = g[f].dropna()
        if len(values) > 1:
            ax.hist(values.clip(*np.nanpercentile(labeled[f], [1, 99])), bins=30, alpha=0.5, density=True, label=family)
    ax.set_title(f)
axes[0, 0].legend(fontsize=7)
plt.tight_layout()
plt.savefig(FIGURES / "top_features_by_family.png", dpi=110)

# %% [markdown]
# ## Which features move together (Spearman correlation, all sessions)

# %%
corr = sessions[list(SESSION_FEATURES)].corr(method="spearman")
fig, ax = plt.subplots(figsize=(10, 9))
im = ax.imshow(corr, cmap="RdBu_r", vmin=-1, vmax=1)
ax.set_xticks(range(len(corr)), corr.columns, rotation=90, fontsize=7)
ax.set_yticks(range(len(corr)), corr.columns, fontsize=7)
fig.colorbar(im)
plt.tight_layout()
plt.savefig(FIGURES / "feature_correlation.png", dpi=110)
pairs = corr.where(np.triu(np.ones(corr.shape, bool), 1)).stack().abs().sort_values(ascending=False)
pairs.head(8).round(3)
