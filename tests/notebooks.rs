//! The notebooks (training/notebooks/*.rs) run headless as cargo examples on the bundled data and
//! write their reports with their charts; their cells convert to Jupyter with jupytext.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use churn_e2e::*;
use churn_training::notebook::{CellKind, NOTEBOOKS_DIR, parse_cells};

const NOTEBOOKS: [&str; 5] = ["01_explore", "02_train", "03_evaluate", "04_explain", "05_drift"];

/// The notebook's example program, built once per test process (the whole workspace, as
/// [`binary`] does, so that features unify as in the test build and nothing heavy rebuilds).
fn example(notebook: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "--quiet", "--workspace", "--examples"]).current_dir(root());
        without_test_cargo_env(&mut cargo);
        assert!(cargo.status().expect("cargo build").success(), "building the notebooks failed");
    });
    bin_dir().join("examples").join(format!("notebook-{}", notebook.replace('_', "-")))
}

#[test]
fn every_notebook_runs_headless_and_writes_its_report_with_charts() {
    let reports = scratch("notebooks");
    // (notebook, least charts, texts the report must hold: a Markdown heading and chart titles)
    let expect: [(&str, usize, &[&str]); 5] = [
        (
            "01_explore",
            7,
            &[
                "<h2>Data quality</h2>",
                "Churn rate by contract",
                "Churn rate by tenure bucket",
                "Churn rate by payment method",
                "totalcharges",
            ],
        ),
        ("02_train", 4, &["<h2>Training curves</h2>", "MLP loss", "Validation ROC AUC", "logistic"]),
        ("03_evaluate", 5, &["Calibration (10 bins)", "Cumulative gains", "Campaign profit vs threshold", "predicted churn"]),
        ("04_explain", 5, &["Permutation importance", "Mean |Shapley value|", "Customer ", "contract_upgrade"]),
        ("05_drift", 2, &["PSI: after the simulated shift", "alert threshold", "monthlycharges"]),
    ];
    for (name, charts, texts) in expect {
        let o = Command::new(example(name))
            .env("CHURN_REPORTS_DIR", reports.path())
            .env("ID_PSEUDONYM_KEY", "notebook-test-key-0123456789abcdef")
            .current_dir(root())
            .output()
            .unwrap();
        let (out, err) = text(&o);
        assert!(o.status.success(), "{name} failed\n{out}\n{err}");
        let html = std::fs::read_to_string(reports.path().join(format!("{name}.html"))).unwrap();
        assert!(html.matches("<svg").count() >= charts, "{name}: {} charts", html.matches("<svg").count());
        for t in texts {
            assert!(html.contains(t), "{name}: report lacks {t:?}");
        }
        // Markdown cells are rendered, code cells folded, and outputs sit under their cell:
        // the first chart comes after the first code cell, not at the end of the page.
        assert!(html.contains("<h1>") && html.contains("<details class=\"code\">"), "{name}");
        let first_code = html.find("<details class=\"code\">").unwrap();
        let last_markdown = html.rfind("<h2>").unwrap_or(0);
        let first_chart = html.find("<svg").unwrap();
        assert!(
            first_code < first_chart && first_chart < html.rfind("<details").unwrap().max(last_markdown),
            "{name}: outputs not placed by cell"
        );
        // Privacy: no customer id in any report.
        for id in ["8879-ZKJOF", "0201-MIBOL", "7590-VHVEG"] {
            assert!(!html.contains(id), "{name} shows a customer id");
        }
    }
    // 05 flags the shifted features and not the untouched ones.
    let drift = std::fs::read_to_string(reports.path().join("05_drift.html")).unwrap();
    assert!(drift.contains("as they are: 0 of"), "unshifted test rows should not drift");
    assert!(
        drift.contains("after the shift: 3 (monthlycharges, price_trend, contract)"),
        "{}",
        &drift[drift.find("as they are").unwrap()..][..200]
    );
}

#[test]
fn notebooks_convert_to_jupyter_with_the_same_cells() {
    let dir = scratch("jupytext");
    for name in NOTEBOOKS {
        let src = PathBuf::from(NOTEBOOKS_DIR).join(format!("{name}.rs"));
        let cells = parse_cells(&std::fs::read_to_string(&src).unwrap());
        let out = dir.path().join(format!("{name}.ipynb"));
        let o = Command::new(python()).args(["-m", "jupytext", "--to", "ipynb", "--output"]).arg(&out).arg(&src).output().unwrap();
        let (so, se) = text(&o);
        assert!(o.status.success(), "jupytext {name}: {so}\n{se}");
        let nb: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        let kinds: Vec<&str> = nb["cells"].as_array().unwrap().iter().map(|c| c["cell_type"].as_str().unwrap()).collect();
        let ours: Vec<&str> = cells.iter().map(|c| if c.kind == CellKind::Markdown { "markdown" } else { "code" }).collect();
        assert_eq!(kinds, ours, "{name}: jupytext cells differ from the notebook runtime's");
        assert!(kinds.contains(&"markdown") && kinds.contains(&"code"), "{name}: {kinds:?}");
    }
}
