//! `coledger simulate run|sweep|measure` and `coledger bench simulate`: the research kit of
//! the `simulations` crate behind the command line.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use simulations::scenario::Scenario;

use crate::config::{BenchSimulateArgs, SimulateMeasureArgs, SimulateRunArgs, SimulateSweepArgs};

fn print_lm(label: &str, lm3: Option<f64>, lm_all: Option<f64>) {
    let show = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
    println!("{label}: LM3 {}, LM-all {}", show(lm3), show(lm_all));
}

fn print_lm3(label: &str, lm3: Option<f64>) {
    match lm3 {
        Some(v) => println!("{label}: LM3 {v:.3}"),
        None => println!("{label}: LM3 - (no deposits)"),
    }
}

/// `coledger simulate run`.
pub fn run(args: SimulateRunArgs) -> Result<()> {
    let summary = simulations::run_scenario(&args.scenario, &args.out)?;
    println!(
        "{}: {} events; outputs in {}",
        summary.scenario.name,
        summary.measures.events,
        args.out.display()
    );
    print_lm3("all units", summary.measures.combined_lm3);
    Ok(())
}

/// `coledger simulate sweep`.
pub fn sweep(args: SimulateSweepArgs) -> Result<()> {
    let Some((param, range)) = args.param.split_once('=') else {
        bail!("--param {:?}: write name=from..to:step", args.param);
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let bar = |done: usize, total: usize| {
        let width = 30;
        let filled = width * done / total.max(1);
        eprint!(
            "\r[{}{}] {done}/{total} points",
            "#".repeat(filled),
            " ".repeat(width - filled)
        );
        if done == total {
            eprintln!();
        }
        let _ = std::io::stderr().flush();
    };
    let points = simulations::sweep(&args.scenario, param, range, &args.out, threads, &bar)?;
    for point in &points {
        print_lm(
            &format!("{param} = {}", point.value),
            point.lm3,
            point.lm_all,
        );
    }
    println!("outputs in {}", args.out.display());
    Ok(())
}

/// `coledger simulate measure`.
pub fn measure(args: SimulateMeasureArgs) -> Result<()> {
    let measures = simulations::measure_file(&args.events, &args.out)?;
    println!("{} events measured", measures.events);
    print_lm3("all units", measures.combined_lm3);
    if args.by_programme {
        let by =
            simulations::measure_file_by_programme(&args.events, &args.out, measures.period_s)?;
        for (programme, m) in &by {
            print_lm3(&format!("programme {programme}"), m.combined_lm3);
        }
    }
    println!("outputs in {}", args.out.display());
    Ok(())
}

fn year_scenario(args: &BenchSimulateArgs, days: u32) -> Result<Scenario> {
    let mut scenario = Scenario::default();
    scenario.households.count = args.households;
    scenario.merchants.count = args.merchants;
    scenario.days = days;
    scenario.policy.local_unit_share = 0.5;
    scenario.policy.expiry_days = 90;
    scenario.validate()?;
    Ok(scenario)
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// `coledger bench simulate`.
pub fn bench(args: BenchSimulateArgs) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| scratch.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    println!(
        "bench simulate: {} households, {} merchants, {} days; a {}-event stream; {} sweep points",
        args.households, args.merchants, args.days, args.events, args.sweep_points
    );

    // The agent-based year, measured as it runs (events not written).
    let scenario = year_scenario(&args, args.days)?;
    let started = Instant::now();
    let (_, measures) = simulations::simulate(&scenario, None)?;
    let year = started.elapsed();
    println!(
        "agent-based run: {:.2} s for {} events (target <= 10 s for 100,000 households, 2,000 merchants, 365 days)",
        seconds(year),
        measures.events
    );

    // A stream of about --events events from the same model, written, then measured.
    let per_day = (measures.events / u64::from(args.days.max(1))).max(1);
    let days = u32::try_from(args.events.div_ceil(per_day))
        .unwrap_or(u32::MAX)
        .max(1);
    let path = dir.join("bench-events.csv");
    {
        let mut file = std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?,
        );
        simulations::simulate(&year_scenario(&args, days)?, Some(&mut file))?;
        file.flush()?;
    }
    let started = Instant::now();
    let measured = simulations::measure_file(&path, &dir.join("measure"))?;
    let measure = started.elapsed();
    let per_10m = seconds(measure) * 10_000_000.0 / (measured.events.max(1) as f64);
    println!(
        "measuring a stream: {:.2} s for {} events ({per_10m:.2} s per 10 million; target <= 10 s)",
        seconds(measure),
        measured.events
    );
    std::fs::remove_file(&path).ok();

    if args.sweep_points > 0 {
        let scenario_path = dir.join("bench-scenario.toml");
        write_scenario(&scenario_path, &args)?;
        let step = 0.1 / args.sweep_points as f64;
        let top = step * (args.sweep_points as f64 - 0.5);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let started = Instant::now();
        let points = simulations::sweep(
            &scenario_path,
            "redemption_fee",
            &format!("0..{top}:{step}"),
            &dir.join("sweep"),
            threads,
            &|_, _| {},
        )?;
        let sweep = started.elapsed();
        let per_100 = seconds(sweep) * 100.0 / points.len().max(1) as f64;
        println!(
            "sweep: {:.1} s for {} points on {threads} threads ({per_100:.0} s per 100 points; target <= 300 s)",
            seconds(sweep),
            points.len()
        );
    }
    Ok(())
}

fn write_scenario(path: &Path, args: &BenchSimulateArgs) -> Result<()> {
    let text = format!(
        "name = \"bench\"\ndays = {}\nwrite_events = false\n\n[households]\ncount = {}\n\n\
         [merchants]\ncount = {}\n\n[policy]\nlocal_unit_share = 0.5\nexpiry_days = 90\n",
        args.days, args.households, args.merchants
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
