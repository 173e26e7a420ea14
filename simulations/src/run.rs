//! Entry points for the `coledger simulate` subcommands: run a scenario, sweep a parameter in
//! parallel, measure an event file. Each writes its outputs into a directory.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use crate::book::{BookError, UnitTotals};
use crate::events::{Dictionary, EventReader, EventWriter, FieldError, Format, ReadError};
use crate::measure::{DAY_S, MeasureConfig, MeasureError, Measurer, Measures};
use crate::report;
use crate::scenario::{Model, Scenario, ScenarioError};

/// Most points one sweep may run.
pub const MAX_SWEEP_POINTS: usize = 1000;
/// Most worker threads a sweep may use.
pub const MAX_THREADS: usize = 256;

/// Why a simulation command failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The event file is malformed.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause, with its line.
        source: ReadError,
    },
    /// The scenario is invalid.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// The measurement refused the stream.
    #[error(transparent)]
    Measure(#[from] MeasureError),
    /// A model broke conservation or overdrew (a bug).
    #[error("model error: {0}")]
    Book(#[from] BookError),
    /// The scenario's participants could not be registered.
    #[error("model participants: {0}")]
    Field(#[from] FieldError),
    /// The sweep range is malformed.
    #[error(
        "sweep range {0:?}: expected start..end:step with step > 0 and at most {MAX_SWEEP_POINTS} points"
    )]
    Range(String),
    /// More programmes than `--by-programme` follows.
    #[error(
        "{found} programmes have deposits; --by-programme follows at most {MAX_PROGRAMMES} (one \
         pass over the file each): measure with --programme NAME for the ones you need, or \
         split the file"
    )]
    TooManyProgrammes {
        /// Programmes found.
        found: usize,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SimError + '_ {
    move |source| SimError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What `summary.json` holds for a scenario run.
#[derive(Debug, Serialize)]
pub struct RunSummary {
    /// The scenario as run (defaults filled in).
    pub scenario: Scenario,
    /// The model's totals per unit (conservation checked).
    pub totals: Vec<UnitTotals>,
    /// The measures of the emitted stream.
    pub measures: Measures,
}

/// Runs the scenario's model, measuring its events (every measure) and, if given, writing
/// them.
pub fn simulate(
    scenario: &Scenario,
    events: Option<&mut dyn Write>,
) -> Result<(Vec<UnitTotals>, Measures), SimError> {
    simulate_with(scenario, events, true)
}

/// [`simulate`], with LM-n per area and category (`cohort_multipliers`) or without.
pub fn simulate_with(
    scenario: &Scenario,
    events: Option<&mut dyn Write>,
    cohort_multipliers: bool,
) -> Result<(Vec<UnitTotals>, Measures), SimError> {
    let dictionary: Dictionary = match scenario.model {
        Model::Agents => crate::agents::dictionary(scenario)?,
        Model::MonteCarlo => crate::montecarlo::dictionary(scenario)?,
    };
    let config = MeasureConfig {
        period_s: i64::from(scenario.period_days) * DAY_S,
        calendar_months: false,
        programme: None,
        cohort_multipliers,
    };
    let mut measurer = Measurer::new(config)?;
    let mut writer = events
        .map(|w| EventWriter::new(w, Format::Csv))
        .transpose()
        .map_err(io(Path::new("events.csv")))?;
    let mut failure: Option<SimError> = None;
    let mut sink = |event: &crate::events::Event| {
        if failure.is_some() {
            return;
        }
        if let Err(e) = measurer.push(event, &dictionary) {
            failure = Some(e.into());
        } else if let Some(w) = writer.as_mut()
            && let Err(e) = w.write(event, &dictionary)
        {
            failure = Some(io(Path::new("events.csv"))(e));
        }
    };
    let totals = match scenario.model {
        Model::Agents => crate::agents::run(scenario, &dictionary, &mut sink)?,
        Model::MonteCarlo => crate::montecarlo::run(scenario, &dictionary, &mut sink)?,
    };
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some(w) = writer {
        w.finish().map_err(io(Path::new("events.csv")))?;
    }
    Ok((totals, measurer.finish(&dictionary)))
}

fn read_scenario(path: &Path) -> Result<Scenario, SimError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    Ok(Scenario::from_toml(&text)?)
}

fn write(dir: &Path, name: &str, contents: &str) -> Result<(), SimError> {
    let path = dir.join(name);
    std::fs::write(&path, contents).map_err(io(&path))
}

fn json<T: Serialize>(value: &T) -> String {
    // Our types serialise infallibly (no maps with non-string keys, no failing impls).
    serde_json::to_string_pretty(value)
        .map_or_else(|e| format!("{{\"error\":\"{e}\"}}"), |s| s + "\n")
}

fn write_measure_outputs(dir: &Path, measures: &Measures) -> Result<(), SimError> {
    write(dir, "timeseries.csv", &report::timeseries_csv(measures))?;
    write(dir, "flows.csv", &report::flows_csv(measures))?;
    write(dir, "cohorts.csv", &report::cohorts_csv(measures))?;
    write(dir, "stock.svg", &report::stock_chart(measures))?;
    write(dir, "velocity.svg", &report::velocity_chart(measures))?;
    write(dir, "multiplier.svg", &report::multiplier_chart(measures))?;
    write(dir, "flows.svg", &report::flows_chart(measures))
}

/// `simulate run`: runs a scenario file; writes `summary.json`, `timeseries.csv`, `flows.csv`,
/// `cohorts.csv`, the charts, and `events.csv` when the scenario asks for it.
pub fn run_scenario(path: &Path, out_dir: &Path) -> Result<RunSummary, SimError> {
    let scenario = read_scenario(path)?;
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let (totals, measures) = if scenario.write_events {
        // Written beside the target and renamed once whole: a model that fails part-way
        // leaves no events.csv that looks like a run's.
        let events_path = out_dir.join("events.csv");
        let partial = out_dir.join("events.csv.partial");
        let file = File::create(&partial).map_err(io(&partial))?;
        let mut output = BufWriter::with_capacity(1 << 20, file);
        let written = simulate(&scenario, Some(&mut output)).and_then(|measured| {
            // The last buffer's write error, which dropping the writer would swallow.
            output
                .into_inner()
                .map_err(|e| io(&partial)(e.into_error()))?;
            std::fs::rename(&partial, &events_path).map_err(io(&events_path))?;
            Ok(measured)
        });
        if written.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        written?
    } else {
        simulate(&scenario, None)?
    };
    let summary = RunSummary {
        scenario,
        totals,
        measures,
    };
    write(out_dir, "summary.json", &json(&summary))?;
    write_measure_outputs(out_dir, &summary.measures)?;
    Ok(summary)
}

/// `simulate measure`: measures an event file (CSV or JSON lines) with the default config.
pub fn measure_file(path: &Path, out_dir: &Path) -> Result<Measures, SimError> {
    measure_file_with(path, out_dir, &MeasureConfig::default())
}

/// Measures an event file with a given period and programme filter; writes `summary.json`,
/// the CSVs and the charts.
pub fn measure_file_with(
    path: &Path,
    out_dir: &Path,
    config: &MeasureConfig,
) -> Result<Measures, SimError> {
    let measures = measure_stream(path, config)?;
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    write(out_dir, "summary.json", &json(&measures))?;
    write_measure_outputs(out_dir, &measures)?;
    Ok(measures)
}

/// Most programmes [`measure_file_by_programme`] follows (one pass over the file each).
pub const MAX_PROGRAMMES: usize = 32;

/// Measures an event file once per programme named on its deposits, following only that
/// programme's money each time (LM-n, leakage and recirculation per programme cohort); writes
/// `programmes.json`. Costs one pass over the file per programme, plus one to find them.
/// `periods` gives the periods; its programme and cohort settings are not used.
pub fn measure_file_by_programme(
    path: &Path,
    out_dir: &Path,
    periods: &MeasureConfig,
) -> Result<BTreeMap<String, Measures>, SimError> {
    // This pass only finds the programmes.
    let all = measure_stream(
        path,
        &MeasureConfig {
            programme: None,
            cohort_multipliers: false,
            ..periods.clone()
        },
    )?;
    let mut names: Vec<String> = all
        .units
        .iter()
        .flat_map(|u| u.by_programme.iter())
        .filter(|(name, flows)| !name.is_empty() && flows.deposits_minor > 0)
        .map(|(name, _)| name.clone())
        .collect();
    names.sort();
    names.dedup();
    // Leaving some out would look like a whole answer.
    if names.len() > MAX_PROGRAMMES {
        return Err(SimError::TooManyProgrammes { found: names.len() });
    }
    let mut out = BTreeMap::new();
    for name in names {
        let config = MeasureConfig {
            period_s: periods.period_s,
            calendar_months: periods.calendar_months,
            programme: Some(name.clone()),
            ..MeasureConfig::default()
        };
        out.insert(name, measure_stream(path, &config)?);
    }
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    write(out_dir, "programmes.json", &json(&out))?;
    Ok(out)
}

fn measure_stream(path: &Path, config: &MeasureConfig) -> Result<Measures, SimError> {
    let file = File::open(path).map_err(io(path))?;
    let read = |source| SimError::Read {
        path: path.to_owned(),
        source,
    };
    let mut reader = EventReader::new(BufReader::with_capacity(1 << 20, file)).map_err(read)?;
    let mut measurer = Measurer::new(config.clone())?;
    while let Some(event) = reader.next_event().map_err(read)? {
        measurer.push(&event, reader.dictionary())?;
    }
    Ok(measurer.finish(reader.dictionary()))
}

/// Parses `start..end:step` (inclusive end) into the values to run.
pub fn parse_range(text: &str) -> Result<Vec<f64>, SimError> {
    let bad = || SimError::Range(text.to_owned());
    let (span, step) = text.split_once(':').ok_or_else(bad)?;
    let (start, end) = span.split_once("..").ok_or_else(bad)?;
    let number = |s: &str| {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(bad)
    };
    let (start, end, step) = (number(start)?, number(end)?, number(step)?);
    if step <= 0.0 || end < start {
        return Err(bad());
    }
    // Tolerate float steps that land a hair past the end (0.1 / 0.01).
    let count = ((end - start) / step + 1e-9).floor() + 1.0;
    if count > MAX_SWEEP_POINTS as f64 {
        return Err(bad());
    }
    // Rounded to 12 decimals so 0.1 + 0.2 prints as 0.3 in outputs.
    Ok((0..count as usize)
        .map(|i| ((start + step * i as f64) * 1e12).round() / 1e12)
        .collect())
}

/// One point of a sweep.
#[derive(Clone, Debug, Serialize)]
pub struct SweepPoint {
    /// The parameter's value.
    pub value: f64,
    /// LM3 of all units together.
    pub lm3: Option<f64>,
    /// LM-all of all units together.
    pub lm_all: Option<f64>,
    /// Per unit: (code, velocity per year, mean holding time in days, redemption leakage).
    pub units: Vec<(String, Option<f64>, Option<f64>, f64)>,
}

/// `simulate sweep`: runs the scenario for every value of `param` (a dotted key such as
/// `policy.redemption_fee`, or a bare policy key) over `range` (`0..0.1:0.01`) on `threads`
/// worker threads; writes `sweep.json`, `sweep.csv` and `multiplier_by_policy.svg`.
/// `progress(done, total)` is called on the calling thread after each point.
pub fn sweep(
    path: &Path,
    param: &str,
    range: &str,
    out_dir: &Path,
    threads: usize,
    progress: &dyn Fn(usize, usize),
) -> Result<Vec<SweepPoint>, SimError> {
    let base = read_scenario(path)?;
    let key = base.param_key(param);
    let values = parse_range(range)?;
    // Every point is validated before any work starts.
    let scenarios = values
        .iter()
        .map(|&v| base.with_param(&key, v))
        .collect::<Result<Vec<_>, _>>()?;
    let total = scenarios.len();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<SweepPoint, SimError>>>> =
        Mutex::new((0..total).map(|_| None).collect());
    let (sender, receiver) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, MAX_THREADS).min(total) {
            let sender = sender.clone();
            let (next, results, scenarios, values) = (&next, &results, &scenarios, &values);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= scenarios.len() {
                        break;
                    }
                    // A point reports no per-cohort LM-n, so it is not measured.
                    let point = simulate_with(&scenarios[i], None, false)
                        .map(|(_, m)| point(values[i], &m));
                    if let Ok(mut slots) = results.lock() {
                        slots[i] = Some(point);
                    }
                    let _ = sender.send(());
                }
            });
        }
        drop(sender);
        for done in 1..=total {
            if receiver.recv().is_err() {
                break;
            }
            progress(done, total);
        }
    });
    let slots = results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut points = Vec::with_capacity(total);
    // A slot is empty only if its worker panicked, and that panic propagated from `scope`.
    for result in slots.into_iter().flatten() {
        points.push(result?);
    }
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    write_sweep(out_dir, &key, &points)?;
    Ok(points)
}

fn point(value: f64, m: &Measures) -> SweepPoint {
    SweepPoint {
        value,
        lm3: m.combined_lm3,
        lm_all: m.combined_lm_all,
        units: m
            .units
            .iter()
            .map(|u| {
                (
                    u.unit.clone(),
                    u.velocity_per_year,
                    u.mean_holding_time_days,
                    u.leakage.redemption,
                )
            })
            .collect(),
    }
}

fn write_sweep(dir: &Path, key: &str, points: &[SweepPoint]) -> Result<(), SimError> {
    let mut csv = format!("{key},lm3,lm_all\n");
    let cell = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    for p in points {
        csv.push_str(&format!("{},{},{}\n", p.value, cell(p.lm3), cell(p.lm_all)));
    }
    write(dir, "sweep.csv", &csv)?;
    write(dir, "sweep.json", &json(&points))?;
    let series = ["LM3", "LM-all"]
        .iter()
        .enumerate()
        .map(|(k, name)| report::Series {
            name: (*name).to_owned(),
            points: points
                .iter()
                .map(|p| {
                    (
                        p.value,
                        if k == 0 { p.lm3 } else { p.lm_all }.unwrap_or(0.0),
                    )
                })
                .collect(),
        })
        .collect::<Vec<_>>();
    write(
        dir,
        "multiplier_by_policy.svg",
        &report::line_chart("Local multiplier by policy", key, "multiplier", &series),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn scenario_file(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("scenario.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    const SMALL: &str = "days = 60\n[households]\ncount = 100\n[merchants]\ncount = 10\n[policy]\nlocal_unit_share = 0.25\nexpiry_days = 30\n";

    fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn the_same_seed_writes_byte_identical_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let path = scenario_file(dir.path(), SMALL);
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        run_scenario(&path, &a).unwrap();
        run_scenario(&path, &b).unwrap();
        let (fa, fb) = (files(&a), files(&b));
        let names: Vec<_> = fa.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "cohorts.csv",
                "events.csv",
                "flows.csv",
                "flows.svg",
                "multiplier.svg",
                "stock.svg",
                "summary.json",
                "timeseries.csv",
                "velocity.svg"
            ]
        );
        assert_eq!(fa, fb);
    }

    /// Figures of this scenario from the measuring code before it was made faster (commit
    /// 37c628a): the rewrites of the proportional split, the holdings' storage and the
    /// model's lots must not move a single minor unit.
    #[test]
    fn a_fixed_scenario_measures_as_before() {
        let scenario = Scenario::from_toml(
            "days = 150\nareas = [\"north\", \"south\"]\n[households]\ncount = 300\n\
             [merchants]\ncount = 30\n[policy]\nlocal_unit_share = 0.5\n\
             redemption_fee = 0.03\nexpiry_days = 45\ndemurrage_per_month = 0.01\n",
        )
        .unwrap();
        let (_, m) = simulate(&scenario, None).unwrap();
        assert_eq!(m.events, 103853);
        assert_eq!(
            (m.combined_lm3, m.combined_lm_all),
            (Some(2.01516656), Some(2.765311373333333))
        );
        let expected = [
            (
                [
                    35796817, 22061631, 16707701, 11089030, 7755654, 5208548, 3549628, 2384110,
                    1600783, 3018775,
                ],
                (6459804, 109172677),
                (7.867607373578106, 12.99578515092487, 0.8168456533333334),
                [17761800, 11200697, 8374120],
            ),
            (
                [
                    11687535, 6591509, 2721188, 1262809, 543604, 238416, 102853, 44471, 19186,
                    14105,
                ],
                (5619930, 55105746),
                (6.3991426070956035, 8.885200271223926, 0.0),
                [5924170, 3278860, 1370433],
            ),
        ];
        for (u, (rounds, (stock, transfers), (holding, velocity, redemption), north)) in
            m.units.iter().zip(expected)
        {
            assert_eq!(u.local_spending_by_round_minor, rounds);
            assert_eq!((u.stock_end_minor, u.transfers_minor), (stock, transfers));
            assert_eq!(u.mean_holding_time_days, Some(holding));
            assert_eq!(u.velocity, Some(velocity));
            assert_eq!(u.leakage.redemption, redemption);
            assert_eq!(u.by_area["north"].received_by_round_minor[..3], north);
        }
    }

    #[test]
    fn measuring_the_written_events_gives_the_run_measures() {
        let dir = tempfile::tempdir().unwrap();
        let path = scenario_file(dir.path(), SMALL);
        let run = run_scenario(&path, &dir.path().join("run")).unwrap();
        assert!(!dir.path().join("run/events.csv.partial").exists());
        // A run whose events cannot be put in place fails and leaves nothing half-written.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir_all(blocked.join("events.csv/in-the-way")).unwrap();
        assert!(run_scenario(&path, &blocked).is_err());
        assert!(!blocked.join("events.csv.partial").exists());
        assert!(!blocked.join("summary.json").exists());
        let config = MeasureConfig {
            period_s: 30 * DAY_S,
            ..MeasureConfig::default()
        };
        let measured = measure_file_with(
            &dir.path().join("run/events.csv"),
            &dir.path().join("m"),
            &config,
        )
        .unwrap();
        assert_eq!(measured, run.measures);
        assert!(
            measured
                .units
                .iter()
                .all(|u| u.balances_reconcile && u.unbacked_minor == 0)
        );
        for (unit, totals) in measured.units.iter().zip(&run.totals) {
            assert_eq!(unit.stock_end_minor, totals.held_minor);
        }
    }

    #[test]
    fn a_sweep_runs_every_point_in_parallel_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = scenario_file(dir.path(), SMALL);
        let calls = std::cell::RefCell::new(Vec::new());
        let points = sweep(
            &path,
            "redemption_fee",
            "0..0.1:0.05",
            &dir.path().join("s"),
            2,
            &|d, t| calls.borrow_mut().push((d, t)),
        )
        .unwrap();
        assert_eq!(
            points.iter().map(|p| p.value).collect::<Vec<_>>(),
            [0.0, 0.05, 0.1]
        );
        assert_eq!(*calls.borrow(), [(1, 3), (2, 3), (3, 3)]);
        let single = sweep(
            &path,
            "policy.redemption_fee",
            "0..0.1:0.05",
            &dir.path().join("t"),
            1,
            &|_, _| {},
        )
        .unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("s/sweep.json")).unwrap(),
            std::fs::read(dir.path().join("t/sweep.json")).unwrap()
        );
        assert_eq!(single.len(), 3);
        assert!(matches!(
            sweep(
                &path,
                "nope",
                "0..1:1",
                &dir.path().join("u"),
                1,
                &|_, _| {}
            ),
            Err(SimError::Scenario(_))
        ));
    }

    fn daily() -> MeasureConfig {
        MeasureConfig {
            period_s: DAY_S,
            ..MeasureConfig::default()
        }
    }

    #[test]
    fn each_programme_is_followed_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.csv");
        let rows = [
            "0,deposit,issuance,city,issuer,,h1,household,,1000,U,a,",
            "0,deposit,issuance,city,issuer,,h2,household,,1000,U,b,",
            "1,transfer,payment,h1,household,,m1,merchant,,1000,U,,",
            "2,transfer,supply,m1,merchant,,m2,merchant,,500,U,,",
            "3,transfer,payment,h2,household,,o1,outside,,1000,U,,",
        ];
        let header = format!(
            "{}\n{}\n",
            crate::events::CSV_MAGIC,
            crate::events::CSV_HEADER
        );
        std::fs::write(&path, header + &rows.join("\n") + "\n").unwrap();
        let by = measure_file_by_programme(&path, dir.path(), &daily()).unwrap();
        assert_eq!(by.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(by["a"].combined_lm3, Some(2.5));
        assert_eq!(by["b"].combined_lm3, Some(1.0));
        assert!(dir.path().join("programmes.json").is_file());
    }

    #[test]
    fn more_programmes_than_followed_are_refused_not_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.csv");
        let mut text = format!(
            "{}\n{}\n",
            crate::events::CSV_MAGIC,
            crate::events::CSV_HEADER
        );
        for p in 0..=MAX_PROGRAMMES {
            text.push_str(&format!(
                "0,deposit,issuance,city,issuer,,h{p},household,,100,U,p{p},\n"
            ));
        }
        std::fs::write(&path, text).unwrap();
        let refused = measure_file_by_programme(&path, dir.path(), &daily()).unwrap_err();
        assert!(
            matches!(refused, SimError::TooManyProgrammes { found } if found == MAX_PROGRAMMES + 1),
            "{refused}"
        );
        assert!(!dir.path().join("programmes.json").exists());
    }

    #[test]
    fn sweep_ranges_are_parsed_and_bounded() {
        assert_eq!(parse_range("0..0.1:0.01").unwrap().len(), 11);
        assert_eq!(parse_range("0..0.1:0.01").unwrap()[3], 0.03);
        assert_eq!(parse_range("30..90:30").unwrap(), [30.0, 60.0, 90.0]);
        for bad in [
            "0..1", "1..0:0.1", "0..1:0", "0..1:-1", "a..1:1", "0..1e9:1",
        ] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_malformed_event_file_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.csv");
        std::fs::write(
            &path,
            format!(
                "{}\n{}\n1,deposit,oops\n",
                crate::events::CSV_MAGIC,
                crate::events::CSV_HEADER
            ),
        )
        .unwrap();
        let error = measure_file(&path, &dir.path().join("out")).unwrap_err();
        assert!(error.to_string().contains("line 3"), "{error}");
    }
}
