//! `coledger simulate run | measure | sweep` on small scenarios: the outputs a researcher
//! opens are written and read back, the events a run writes measure to the same LM3, and
//! a bad scenario or event file is a clear error.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::process::{Command, Output};

fn coledger(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coledger"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn a_scenario_runs_measures_and_sweeps() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("small.toml");
    std::fs::write(
        &scenario,
        "name = \"small\"\ndays = 60\n\n[households]\ncount = 200\n\n[merchants]\ncount = 10\n\n\
         [policy]\nlocal_unit_share = 1.0\nredemption_fee = 0.05\nexpiry_days = 30\n",
    )
    .unwrap();
    let out = dir.path().join("run");
    let run = ok(&coledger(&[
        "simulate",
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    for file in [
        "summary.json",
        "timeseries.csv",
        "flows.csv",
        "cohorts.csv",
        "events.csv",
        "stock.svg",
        "velocity.svg",
        "multiplier.svg",
        "flows.svg",
    ] {
        assert!(out.join(file).exists(), "{file} missing: {run}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert!(summary.is_object());
    let lm3 = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("all units: LM3 "))
            .map(str::to_owned)
            .unwrap()
    };
    let measured_dir = dir.path().join("measured");
    let measured = ok(&coledger(&[
        "simulate",
        "measure",
        out.join("events.csv").to_str().unwrap(),
        "--out",
        measured_dir.to_str().unwrap(),
    ]));
    assert_eq!(
        lm3(&run),
        lm3(&measured),
        "measuring the written events gives the run's LM3"
    );

    // Weekly periods: the same events in more, shorter periods, each with its LM-n.
    let weekly_dir = dir.path().join("weekly");
    ok(&coledger(&[
        "simulate",
        "measure",
        out.join("events.csv").to_str().unwrap(),
        "--out",
        weekly_dir.to_str().unwrap(),
        "--period-days",
        "7",
    ]));
    let periods = |dir: &std::path::Path| {
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap())
                .unwrap();
        summary["combined_lm_by_period"].as_array().unwrap().len()
    };
    assert!(
        periods(&weekly_dir) > periods(&measured_dir),
        "weekly {} vs 30-day {} periods",
        periods(&weekly_dir),
        periods(&measured_dir)
    );
    let refused = coledger(&[
        "simulate",
        "measure",
        out.join("events.csv").to_str().unwrap(),
        "--period-days",
        "0",
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("period-days"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // Calendar months: the summary says so, and each period after the first (which starts on
    // the first event's day) starts on a month's first day.
    let monthly_dir = dir.path().join("monthly");
    ok(&coledger(&[
        "simulate",
        "measure",
        out.join("events.csv").to_str().unwrap(),
        "--out",
        monthly_dir.to_str().unwrap(),
        "--calendar-months",
    ]));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(monthly_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["calendar_months"], true);
    for period in summary["combined_lm_by_period"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
    {
        let start_day = period["start_s"].as_i64().unwrap().div_euclid(86_400);
        assert_eq!(ledger::policy::civil_from_days(start_day).2, 1, "{period}");
    }
    let both = coledger(&[
        "simulate",
        "measure",
        out.join("events.csv").to_str().unwrap(),
        "--period-days",
        "7",
        "--calendar-months",
    ]);
    assert!(!both.status.success(), "one kind of period at a time");

    let sweep_dir = dir.path().join("sweep");
    let sweep = ok(&coledger(&[
        "simulate",
        "sweep",
        scenario.to_str().unwrap(),
        "--param",
        "redemption_fee=0..0.1:0.05",
        "--out",
        sweep_dir.to_str().unwrap(),
    ]));
    assert_eq!(
        sweep
            .lines()
            .filter(|l| l.starts_with("redemption_fee = "))
            .count(),
        3,
        "{sweep}"
    );
    assert!(sweep_dir.join("sweep.csv").exists());

    // The shipped pilot scenarios all parse (running them is the research, not the test).
    for entry in std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/simulations/scenarios"
    ))
    .unwrap()
    {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        simulations::scenario::Scenario::from_toml(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    // Bad input: a clear error naming the problem.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "days = \"many\"\n").unwrap();
    let refused = coledger(&[
        "simulate",
        "run",
        bad.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    let events = dir.path().join("bad.csv");
    std::fs::write(&events, "# coledger-events v1\nnot,a,header\n").unwrap();
    let refused = coledger(&["simulate", "measure", events.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("line"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
