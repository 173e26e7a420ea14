//! `coledger simulate run|sweep|measure` and `coledger bench simulate`: the research kit of
//! the `simulations` crate behind the command line.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use simulations::measure::Measures;
use simulations::scenario::Scenario;

use crate::bench_api::cpu::CpuUse;
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

/// LM3 of every named area (money deposited there) and category (money first spent there),
/// all units together.
fn print_cohorts(measures: &Measures) {
    let dimensions = [
        ("area", &measures.combined_lm_by_area),
        ("category", &measures.combined_lm_by_category),
    ];
    for (dimension, cohorts) in dimensions {
        for (name, cohort) in cohorts.iter().filter(|(name, _)| !name.is_empty()) {
            print_lm3(&format!("{dimension} {name}"), cohort.lm3);
        }
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
    print_cohorts(&summary.measures);
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
    let config = simulations::measure::MeasureConfig {
        period_s: i64::from(args.period_days).saturating_mul(86_400),
        calendar_months: args.calendar_months,
        ..simulations::measure::MeasureConfig::default()
    };
    let measures = simulations::measure_file_with(&args.events, &args.out, &config)?;
    println!("{} events measured", measures.events);
    print_lm3("all units", measures.combined_lm3);
    print_cohorts(&measures);
    if args.by_programme {
        let by = simulations::measure_file_by_programme(&args.events, &args.out, &config)?;
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

/// Wall-clock and CPU time (this process, all threads) of `work`.
fn timed<T>(work: impl FnOnce() -> Result<T>) -> Result<(T, Duration, Duration)> {
    let (cpu, started) = (CpuUse::now(), Instant::now());
    let value = work()?;
    Ok((value, started.elapsed(), CpuUse::now().since(&cpu).total))
}

/// The 1-minute load average, to judge how shared the machine was ("-" where unknown).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "-".to_owned())
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
        "bench simulate: {} households, {} merchants, {} days; a {}-event stream; {} sweep points; load average {}",
        args.households,
        args.merchants,
        args.days,
        args.events,
        args.sweep_points,
        load_average()
    );

    // The agent-based year, measured as it runs (events not written): every measure, as
    // `simulate run` does, then without LM-n by area and category, as a sweep point does.
    let scenario = year_scenario(&args, args.days)?;
    let (measures, year, year_cpu) = timed(|| Ok(simulations::simulate(&scenario, None)?.1))?;
    println!(
        "agent-based run: {:.2} s (CPU {:.2} s) for {} events, every measure (target <= 10 s for 100,000 households, 2,000 merchants, 365 days)",
        seconds(year),
        seconds(year_cpu),
        measures.events
    );
    let (_, point, point_cpu) =
        timed(|| Ok(simulations::simulate_with(&scenario, None, false)?.1))?;
    println!(
        "  without LM-n by area and category (as a sweep point): {:.2} s (CPU {:.2} s)",
        seconds(point),
        seconds(point_cpu)
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
        // Writing is not timed, so the cohorts (which change no event) are left out.
        simulations::simulate_with(&year_scenario(&args, days)?, Some(&mut file), false)?;
        file.flush()?;
    }
    let (measured, measure, measure_cpu) =
        timed(|| Ok(simulations::measure_file(&path, &dir.join("measure"))?))?;
    let per_10m = seconds(measure) * 10_000_000.0 / (measured.events.max(1) as f64);
    println!(
        "measuring a stream: {:.2} s (CPU {:.2} s) for {} events ({per_10m:.2} s per 10 million; target <= 10 s)",
        seconds(measure),
        seconds(measure_cpu),
        measured.events
    );
    std::fs::remove_file(&path).ok();

    if args.sweep_points > 0 {
        bench_sweep(&args, &dir)?;
    }
    println!("load average at the end: {}", load_average());
    Ok(())
}

/// The sweep of the year over `--sweep-points` fees spread over the whole 0 … 0.1 range, on
/// every core; 100 points are extrapolated by rounds (a round runs one point per thread), so
/// a point count that leaves a thread idle in the last round is not counted as a full one.
fn bench_sweep(args: &BenchSimulateArgs, dir: &Path) -> Result<()> {
    let scenario_path = dir.join("bench-scenario.toml");
    write_scenario(&scenario_path, args)?;
    let step = 0.1 / args.sweep_points as f64;
    let top = step * (args.sweep_points as f64 - 0.5);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (points, sweep, sweep_cpu) = timed(|| {
        Ok(simulations::sweep(
            &scenario_path,
            "redemption_fee",
            &format!("0..{top}:{step}"),
            &dir.join("sweep"),
            threads,
            &|_, _| {},
        )?)
    })?;
    let rounds = points.len().div_ceil(threads).max(1);
    let per_round = seconds(sweep) / rounds as f64;
    let per_100 = per_round * 100usize.div_ceil(threads) as f64;
    let cpu_per_point = seconds(sweep_cpu) / points.len().max(1) as f64;
    println!(
        "sweep: {:.1} s for {} points on {threads} threads, {rounds} rounds of {per_round:.2} s: {per_100:.0} s per 100 points (target <= 300 s); CPU {:.1} s, {cpu_per_point:.2} s a point",
        seconds(sweep),
        points.len(),
        seconds(sweep_cpu)
    );
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
