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
# # Model evaluation from the registry
#
# The champions as the MLflow registry serves them (`models:/agent-detector@champion`,
# `models:/pricing-multitask@champion`; `MLFLOW_TRACKING_URI`, default the checkout's `mlflow.db`),
# judged on the newest labeled sessions (the time split's last 20 %, never trained on by the
# pipeline's split): ROC, reliability of P(agent), recall per agent family, and the pricing
# network's purchase curves. Figures go to `reports/notebooks/model_evaluation/`.

# %%
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score, roc_curve

from phantom.detect import package as detector_package
from phantom.pricing import package as pricing_package

ROOT = Path(os.environ.get("PHANTOM_ROOT", ".."))
FIGURES = Path(os.environ.get("PHANTOM_FIGURES", ROOT / "reports/notebooks")) / "model_evaluation"
FIGURES.mkdir(parents=True, exist_ok=True)
mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{(ROOT / 'mlflow.db').resolve()}"))
client = mlflow.MlflowClient()
champions = {
    name: client.get_model_version_by_alias(name, "champion") for name in ("agent-detector", "pricing-multitask")
}
{name: (v.version, v.run_id) for name, v in champions.items()}

# %% [markdown]
# ## The detector on the newest labeled sessions

# %%
sessions = pd.read_parquet(ROOT / "data/features/sessions.parquet")
labeled = sessions.loc[sessions["labeled"]].sort_values("start_ms")
test = labeled.iloc[int(0.8 * len(labeled)) :].copy()
detector = detector_package.load("models:/agent-detector@champion")
test["p_agent"] = detector_package.score(detector, test)["p_agent"].to_numpy()
y = test["is_agent"].astype(int).to_numpy()
fpr, tpr, _ = roc_curve(y, test["p_agent"])
bins = np.linspace(0, 1, 11)
which = np.clip(np.digitize(test["p_agent"], bins) - 1, 0, 9)
reliability = pd.DataFrame({"p": test["p_agent"], "y": y, "bin": which}).groupby("bin").mean()
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
axes[0].plot(fpr, tpr)
axes[0].plot([0, 1], [0, 1], "k:")
axes[0].set_title(f"ROC, newest labeled sessions (AUC {roc_auc_score(y, test['p_agent']):.3f})")
axes[1].plot(reliability["p"], reliability["y"], marker="o")
axes[1].plot([0, 1], [0, 1], "k:")
axes[1].set_title("reliability: mean P(agent) vs share of agents")
plt.tight_layout()
plt.savefig(FIGURES / "detector_roc_reliability.png", dpi=110)
print(f"{len(test):,} sessions, {y.mean():.1%} agents")

# %% [markdown]
# ## Recall per agent family at the registered threshold (P(agent) >= 0.5 here)

# %%
agents = test.loc[y == 1]
recall = (agents["p_agent"] >= 0.5).groupby(agents["label_family"]).mean().sort_values()
people_fpr = float((test.loc[y == 0, "p_agent"] >= 0.5).mean())
ax = recall.plot.barh(figsize=(7, 3.5), title=f"recall per family (people flagged: {people_fpr:.2%})")
plt.tight_layout()
plt.savefig(FIGURES / "detector_recall_by_family.png", dpi=110)
recall.round(3)

# %% [markdown]
# ## The pricing network's purchase curves (mean over the newest decisions)

# %%
decisions = pd.read_parquet(ROOT / "data/features/decisions.parquet")
recent = decisions.loc[decisions["price_ratio"].notna()].tail(2000)
network = pricing_package.load("models:/pricing-multitask@champion")
grid = np.round(np.arange(0.7, 1.5001, 0.05), 2)
demand = pricing_package.score_grid(network, recent, grid)
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(grid, np.asarray(demand.p_buy_human).mean(axis=0), label="P(buy | person)")
ax.plot(grid, np.asarray(demand.p_buy_agent).mean(axis=0), label="P(buy | agent)")
ax.set_xlabel("price / list price")
ax.set_title("purchase probability on the price grid")
ax.legend()
plt.tight_layout()
plt.savefig(FIGURES / "pricing_purchase_curves.png", dpi=110)
