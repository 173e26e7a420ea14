//! Timing check for the performance targets (release build):
//! `cargo run --release -p simulations --example perf -- DIR [households merchants days]`.
//! Runs the agent model (measuring as it goes), writes its events to `DIR/events.csv`, then
//! measures that file, printing the event count and both times. Given an existing `.csv` file
//! instead of a directory, it only measures that file.

use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or("usage: perf DIR [households merchants days]")?,
    );
    if dir.extension().is_some_and(|e| e == "csv") && dir.is_file() {
        let started = Instant::now();
        let measured = simulations::measure_file(&dir, &std::env::temp_dir().join("perf-measure"))?;
        println!(
            "measure_file: {} events in {:.2} s",
            measured.events,
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let mut number = |default: u32| args.next().map_or(Ok(default), |a| a.parse::<u32>());
    let mut scenario = simulations::scenario::Scenario::default();
    scenario.households.count = number(100_000)?;
    scenario.merchants.count = number(2_000)?;
    scenario.days = number(365)?;
    scenario.policy.local_unit_share = 0.5;
    scenario.policy.expiry_days = 90;
    scenario.validate()?;
    let started = Instant::now();
    let (_, measures) = simulations::simulate(&scenario, None)?;
    let events: u64 = measures.events;
    println!(
        "agents: {} events in {:.2} s (measured in-line, not written)",
        events,
        started.elapsed().as_secs_f64()
    );
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("events.csv");
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
    let started = Instant::now();
    simulations::simulate(&scenario, Some(&mut file))?;
    drop(file);
    println!(
        "agents + writing CSV: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let measured = simulations::measure_file(&path, &dir.join("measure"))?;
    println!(
        "measure_file: {} events in {:.2} s",
        measured.events,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
