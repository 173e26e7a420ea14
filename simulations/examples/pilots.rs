//! Runs every scenario in `simulations/scenarios/` and prints its headline measures:
//! `cargo run --release -p simulations --example pilots -- OUT_DIR`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::args().nth(1).ok_or("usage: pilots OUT_DIR")?);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    println!(
        "scenario | LM3 (all units) | LM-all | per unit: velocity/yr, holding days, redemption, expiry, outside"
    );
    for path in paths {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let summary = simulations::run_scenario(&path, &out.join(&name))?;
        let m = &summary.measures;
        let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
        let units: Vec<String> = m
            .units
            .iter()
            .map(|u| {
                format!(
                    "{}: {} {} {:.3} {:.3} {:.3}",
                    u.unit,
                    f(u.velocity_per_year),
                    f(u.mean_holding_time_days),
                    u.leakage.redemption,
                    u.leakage.expiry,
                    u.leakage.outside
                )
            })
            .collect();
        println!(
            "{name} | {} | {} | {}",
            f(m.combined_lm3),
            f(m.combined_lm_all),
            units.join("; ")
        );
    }
    Ok(())
}
