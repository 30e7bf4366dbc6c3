//! Times the two Shapley paths on one customer at a time: the API's evaluator
//! ([`Explainer::explain`]) and the tract reference ([`explain::shapley`]), with the API's
//! budget. The customers are the bundle's own background sample (real training rows).
//!
//! `cargo run --release -p churn-core --example explain-bench -- <bundle dir> [iterations]`
//! (`--profile profiling` keeps symbols for `perf record`).

use std::time::Instant;

use churn_core::Bundle;
use churn_core::explain::{self, BackgroundRow, REASON_PERMUTATIONS, ShapleyParams};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: explain-bench <bundle dir> [iterations]")?;
    let iterations: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(20_000);
    let bundle = Bundle::load_dir(std::path::Path::new(&dir))?;
    let background = bundle.background.as_ref().ok_or("the bundle has no background sample")?;
    let explainer = bundle.explainer.as_ref().ok_or("the model is not a dense stack")?;
    let params = ShapleyParams { permutations: REASON_PERMUTATIONS, seed: 0 };
    let rows = &background.rows;
    let time = |label: &str, n: usize, f: &dyn Fn(&BackgroundRow) -> f64| {
        let mut times: Vec<f64> = (0..n)
            .map(|i| {
                let row = BackgroundRow(&rows[i % rows.len()]);
                let t = Instant::now();
                std::hint::black_box(f(&row));
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
        println!("{label:<28} median {:8.2} µs  p99 {:8.2} µs  ({n} customers)", at(0.5), at(0.99));
    };
    time("Shapley, API evaluator", iterations, &|r| explainer.explain(&bundle.spec, r, params).unwrap().values[0]);
    time("Shapley, tract reference", iterations / 20, &|r| {
        explain::shapley(&bundle.spec, &bundle.scorer, background, r, params).unwrap().values[0]
    });
    Ok(())
}
