"""The agent detector: is this session an automated agent? (docs/detector.md)

splits       train / validation / test by session and by time (start_ms), labeled sessions only
rules        the seed's baseline: events_per_min > 5 means agent
classifier   XGBoost tuned by Optuna (TPE, median pruning), refit, leave-one-family-out, SHAP importance
calibration  isotonic, Platt or none, chosen by cross-validated ECE on out-of-fold train scores
evaluate     metrics: ROC/PR-AUC, operating threshold, ECE, family recall, curves, bootstrap intervals
train        fit_detector (the recipe) and assess (every reported number)
package      the MLflow pyfunc model (pyfunc_model.py: booster + calibration + threshold, no pickle)
plots        ROC, PR, calibration and importance figures
explain      SHAP: per-request top reasons (exact TreeSHAP, no shap import) and the TreeExplainer report
"""
