"""An independent reference for the model-quality targets: scikit-learn's own models on the
bundled Telco customers, with stratified 60/20/20 splits seeded 1..N like `churn compare` (the
splits are scikit-learn's, not the project's, so compare averages, not single seeds).

It answers one question: is ROC AUC >= 0.85 on five held-out splits within reach of standard
tabular models on this table, or is the ceiling the data's?

  pip install scikit-learn pandas
  python infra/bench/sklearn_reference.py [--seeds 10]
"""
import argparse
import os

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "training", "data", "telco", "customers.csv")


def table():
    df = pd.read_csv(DATA)
    df.columns = [c.lower() for c in df.columns]
    df["totalcharges"] = pd.to_numeric(df["totalcharges"], errors="coerce").fillna(0.0)
    y = (df["churn"] == "Yes").astype(int).values
    x = df.drop(columns=["customerid", "churn"])
    # The derived features of training/configs/telco.toml, plus log tenure (linear models like it).
    x["avg_monthly_charge"] = np.where(x.tenure > 0, x.totalcharges / x.tenure.clip(lower=1), x.monthlycharges)
    x["price_trend"] = x.monthlycharges - x["avg_monthly_charge"]
    x["log_tenure"] = np.log1p(x.tenure)
    categorical = [c for c in x.columns if not pd.api.types.is_numeric_dtype(x[c]) or c == "seniorcitizen"]
    return pd.get_dummies(x, columns=categorical).astype(float).values, y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=10)
    seeds = ap.parse_args().seeds
    x, y = table()
    aucs = {}
    for seed in range(1, seeds + 1):
        x_tv, x_te, y_tv, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=seed)
        x_tr, _, y_tr, _ = train_test_split(x_tv, y_tv, test_size=0.25, stratify=y_tv, random_state=seed)
        sc = StandardScaler().fit(x_tr)
        s_tr, s_te = sc.transform(x_tr), sc.transform(x_te)
        lr = LogisticRegression(max_iter=2000).fit(s_tr, y_tr)
        # The logistic model again on training + validation rows (more data, no early stopping).
        sc_tv = StandardScaler().fit(x_tv)
        lr_tv = LogisticRegression(max_iter=2000).fit(sc_tv.transform(x_tv), y_tv)
        hgb = HistGradientBoostingClassifier(max_depth=3, learning_rate=0.05, max_iter=200).fit(x_tr, y_tr)
        mlps = [MLPClassifier(hidden_layer_sizes=(16,), alpha=1.0, max_iter=500, random_state=s).fit(s_tr, y_tr) for s in range(5)]
        p_mlp = [m.predict_proba(s_te)[:, 1] for m in mlps]
        p_lr = lr.predict_proba(s_te)[:, 1]
        scores = {
            "logistic": p_lr,
            "logistic (train+val)": lr_tv.predict_proba(sc_tv.transform(x_te))[:, 1],
            "gradient boosting": hgb.predict_proba(x_te)[:, 1],
            "MLP [16]": p_mlp[0],
            "5 MLPs averaged": np.mean(p_mlp, axis=0),
            "logistic + 5 MLPs": (np.mean(p_mlp, axis=0) + p_lr) / 2,
        }
        for name, p in scores.items():
            aucs.setdefault(name, []).append(roc_auc_score(y_te, p))
    print(f"test ROC AUC, scikit-learn splits (mean over seeds 1..5 | 1..{seeds})")
    for name, v in aucs.items():
        print(f"{name:<22} {np.mean(v[:5]):.4f} | {np.mean(v):.4f}")


if __name__ == "__main__":
    main()
