"""The independent reference for model quality: scikit-learn's models cross-validated on the same
tables as `churn benchmark`, on the very same folds when given its JSON report.

  python infra/bench/sklearn_reference.py                      # StratifiedKFold(5, shuffle, random_state=0)
  python infra/bench/sklearn_reference.py --folds out/benchmark/benchmark.json   # churn benchmark's folds

Preprocessing for every model, fitted on each fold's training rows only: numbers median-imputed
and standardised, text columns one-hot (unknown categories ignored); text that is mostly numbers
(Telco's `totalcharges`) is read as numbers, columns unique per row (ids) are dropped. Models:
logistic regression, histogram gradient boosting, and an MLP (100 hidden units, early stopping):
scikit-learn's defaults otherwise, as in shared/data/README.md. Prints ROC AUC and Brier,
mean ± sd over folds, per table and model.

Needs scikit-learn and pandas (the test venv has both through shap).
"""
import argparse
import json
import os

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "training", "data")
BUNDLED = [
    ("telco", os.path.join(DATA, "telco", "customers.csv"), "churn", "Yes"),
    ("hr_turnover", os.path.join(DATA, "hr_turnover", "employees.csv"), "left", "1"),
    ("saas", os.path.join(DATA, "saas", "accounts.csv"), "churned", "1"),
]


def is_positive(value, positive):
    try:
        return float(value) == float(positive)
    except (TypeError, ValueError):
        return str(value).strip() == positive


def load(path, target, positive):
    df = pd.read_csv(path)
    y = np.array([is_positive(v, positive) for v in df[target]], dtype=int)
    x = df.drop(columns=[target])
    for c in list(x.columns):
        if x[c].dtype == object:
            as_number = pd.to_numeric(x[c].str.strip().replace("", np.nan), errors="coerce")
            if as_number.notna().sum() >= 0.9 * x[c].notna().sum():
                x[c] = as_number
            elif x[c].nunique() == len(x):
                x = x.drop(columns=[c])
    return x, y


def models(x):
    numeric = [c for c in x.columns if pd.api.types.is_numeric_dtype(x[c])]
    text = [c for c in x.columns if c not in numeric]

    def prep():
        return ColumnTransformer([
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), text),
        ])

    return {
        "logistic regression": lambda: make_pipeline(prep(), LogisticRegression(max_iter=5000)),
        "gradient boosting": lambda: make_pipeline(prep(), HistGradientBoostingClassifier(random_state=0)),
        "MLP (100, early stop)": lambda: make_pipeline(
            prep(), MLPClassifier(hidden_layer_sizes=(100,), early_stopping=True, max_iter=500, random_state=0)
        ),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--folds", help="churn benchmark's benchmark.json: use its tables and folds")
    args = ap.parse_args()
    if args.folds:
        with open(args.folds) as f:
            report = json.load(f)
        tables = [
            (t["table"]["name"], t["table"]["path"], t["table"]["target"], t["table"]["positive"], np.array(t["fold_of_row"]))
            for t in report["tables"]
        ]
        kept = " (each record's copies in one fold: --group-duplicates)" if report.get("group_duplicates") else ""
        source = f"the folds of {args.folds}{kept}"
    else:
        tables = [(n, p, t, pos, None) for n, p, t, pos in BUNDLED]
        source = "StratifiedKFold(5, shuffle=True, random_state=0)"
    print(f"scikit-learn, cross-validated on {source}; mean ± sd over folds")
    print(f"{'table':<12} {'model':<24} {'ROC AUC':>16} {'Brier':>16}")
    for name, path, target, positive, fold_of_row in tables:
        x, y = load(path, target, positive or "1")
        if fold_of_row is None:
            splits = list(StratifiedKFold(5, shuffle=True, random_state=0).split(x, y))
        else:
            splits = [(np.where(fold_of_row != k)[0], np.where(fold_of_row == k)[0]) for k in sorted(set(fold_of_row))]
        for model_name, make in models(x).items():
            aucs, briers = [], []
            for train, test in splits:
                m = make().fit(x.iloc[train], y[train])
                p = m.predict_proba(x.iloc[test])[:, 1]
                aucs.append(roc_auc_score(y[test], p))
                briers.append(brier_score_loss(y[test], p))
            auc = f"{np.mean(aucs):.4f} ± {np.std(aucs, ddof=1):.4f}"
            brier = f"{np.mean(briers):.4f} ± {np.std(briers, ddof=1):.4f}"
            print(f"{name:<12} {model_name:<24} {auc:>16} {brier:>16}", flush=True)


if __name__ == "__main__":
    main()
