//! Outputs: `summary.json`, CSV time series and flows, and small hand-written SVG charts.
//! Everything is a pure function of its inputs, so a seeded run writes byte-identical files.

use std::fmt::Write as _;

use crate::measure::{DAY_S, Measures};

/// Chart width in SVG user units.
pub const CHART_WIDTH: f64 = 720.0;
/// Chart height in SVG user units.
pub const CHART_HEIGHT: f64 = 400.0;
const MARGIN: f64 = 64.0;
const COLOURS: [&str; 6] = [
    "#1b6ca8", "#d1495b", "#2e933c", "#edae49", "#6a4c93", "#00798c",
];

/// The per-period time series of every unit as CSV (one row per unit and period), with the
/// period's LM3 and LM-all by the flow definition and the flows they are made of (round 2 and
/// 3 spending), so periods can be added up into longer ones.
pub fn timeseries_csv(measures: &Measures) -> String {
    let mut out = String::from(
        "unit,period_start_s,deposits_minor,transfers_minor,transfers_count,local_transfers_minor,withdrawals_minor,stock_end_minor,stock_average_minor,velocity,tracked_deposits_minor,round2_minor,round3_minor,lm3,lm_all\n",
    );
    let show = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    for unit in &measures.units {
        for (p, lm) in unit.periods.iter().zip(&unit.lm_by_period) {
            let round = |g: usize| {
                lm.local_spending_by_round_minor
                    .get(g)
                    .copied()
                    .unwrap_or(0)
            };
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                unit.unit,
                p.start_s,
                p.deposits_minor,
                p.transfers_minor,
                p.transfers_count,
                p.local_transfers_minor,
                p.withdrawals_minor,
                p.stock_end_minor,
                p.stock_average_minor,
                show(p.velocity),
                lm.deposits_minor,
                round(0),
                round(1),
                show(lm.lm3),
                show(lm.lm_all)
            );
        }
    }
    out
}

/// Flows by participant category (the sectors) as CSV, with spending by round.
pub fn flows_csv(measures: &Measures) -> String {
    let mut out = String::from(
        "unit,category,received_minor,withdrawn_minor,round2_minor,round3_minor,later_rounds_minor\n",
    );
    for unit in &measures.units {
        for (category, flows) in &unit.by_category {
            let rounds = &flows.received_by_round_minor;
            let later: i64 = rounds.iter().skip(2).sum();
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{later}",
                unit.unit,
                if category.is_empty() {
                    "(no category)"
                } else {
                    category
                },
                flows.received_minor,
                flows.withdrawn_minor,
                rounds.first().copied().unwrap_or(0),
                rounds.get(1).copied().unwrap_or(0),
            );
        }
    }
    out
}

/// LM-n by cohort as CSV: one row per unit (and `all`, the units together) and cohort, with
/// the cohort's base and LM-1 … LM-10 and LM-all (see `simulations/README.md` for the two
/// kinds of cohort).
pub fn cohorts_csv(measures: &Measures) -> String {
    let lm_columns: String = (1..=crate::measure::ROUNDS)
        .map(|n| format!(",lm{n}"))
        .collect();
    let mut out = format!("unit,dimension,cohort,base_minor{lm_columns},lm_all\n");
    let units = measures
        .units
        .iter()
        .map(|u| (u.unit.as_str(), &u.lm_by_area, &u.lm_by_category));
    let all = std::iter::once((
        "all",
        &measures.combined_lm_by_area,
        &measures.combined_lm_by_category,
    ));
    for (unit, areas, categories) in units.chain(all) {
        for (dimension, cohorts) in [("area", areas), ("category", categories)] {
            for (name, cohort) in cohorts {
                let lm: String = cohort.lm.iter().map(|v| format!(",{v}")).collect();
                let _ = writeln!(
                    out,
                    "{unit},{dimension},{},{}{lm},{}",
                    if name.is_empty() { "(none)" } else { name },
                    cohort.base_minor,
                    cohort.lm_all.map_or(String::new(), |v| v.to_string())
                );
            }
        }
    }
    out
}

/// A named series of (x, y) points for [`line_chart`].
pub struct Series {
    /// Legend text.
    pub name: String,
    /// The points, in x order.
    pub points: Vec<(f64, f64)>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn svg_open(title: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {CHART_WIDTH} {CHART_HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        CHART_WIDTH / 2.0,
        escape(title)
    );
    out
}

fn axes(out: &mut String, y_max: f64, x_label: &str, y_label: &str) {
    let (left, bottom) = (MARGIN, CHART_HEIGHT - MARGIN);
    let _ = writeln!(
        out,
        "<path d=\"M{left} {MARGIN} V{bottom} H{}\" stroke=\"black\" fill=\"none\"/>",
        CHART_WIDTH - MARGIN / 2.0
    );
    for tick in 0..=4 {
        let value = y_max * f64::from(tick) / 4.0;
        let y = bottom - (bottom - MARGIN) * f64::from(tick) / 4.0;
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left - 4.0,
            y + 4.0,
            compact(value)
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
        CHART_WIDTH / 2.0,
        CHART_HEIGHT - 12.0,
        escape(x_label)
    );
    let _ = writeln!(
        out,
        "<text x=\"14\" y=\"{:.1}\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">{}</text>",
        CHART_HEIGHT / 2.0,
        CHART_HEIGHT / 2.0,
        escape(y_label)
    );
}

/// A number with a k / M / G suffix and at most two decimals, so tick labels fit the margin.
fn compact(value: f64) -> String {
    let trim = |text: String| text.trim_end_matches('0').trim_end_matches('.').to_owned();
    for (scale, suffix) in [(1e9, "G"), (1e6, "M"), (1e3, "k")] {
        if value.abs() >= scale {
            return trim(format!("{:.2}", value / scale)) + suffix;
        }
    }
    trim(format!("{value:.2}"))
}

/// A line chart of one or more series; the y axis starts at zero.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let points = series.iter().flat_map(|s| s.points.iter());
    let (mut x_min, mut x_max, mut y_max) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    for &(x, y) in points {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_max = y_max.max(y);
    }
    if !x_min.is_finite() {
        (x_min, x_max) = (0.0, 1.0);
    }
    let x_span = if x_max > x_min { x_max - x_min } else { 1.0 };
    let y_max = if y_max > 0.0 { y_max * 1.05 } else { 1.0 };
    let mut out = svg_open(title);
    axes(&mut out, y_max, x_label, y_label);
    let (plot_w, plot_h) = (CHART_WIDTH - 1.5 * MARGIN, CHART_HEIGHT - 2.0 * MARGIN);
    for tick in 0..=4 {
        let x = x_min + x_span * f64::from(tick) / 4.0;
        let px = MARGIN + plot_w * f64::from(tick) / 4.0;
        let _ = writeln!(
            out,
            "<text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            CHART_HEIGHT - MARGIN + 16.0,
            compact(x)
        );
    }
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut path = String::new();
        for (k, &(x, y)) in s.points.iter().enumerate() {
            let px = MARGIN + plot_w * (x - x_min) / x_span;
            let py = CHART_HEIGHT - MARGIN - plot_h * y / y_max;
            let _ = write!(path, "{}{px:.1} {py:.1}", if k == 0 { "M" } else { " L" });
        }
        let _ = writeln!(
            out,
            "<path d=\"{path}\" stroke=\"{colour}\" stroke-width=\"2\" fill=\"none\"/>"
        );
        let ly = MARGIN + 16.0 * i as f64;
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{ly:.1}\" fill=\"{colour}\">{}</text>",
            MARGIN + 10.0,
            escape(&s.name)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// A bar chart of labelled values; the y axis starts at zero.
pub fn bar_chart(title: &str, y_label: &str, bars: &[(String, f64)]) -> String {
    let y_max = bars.iter().map(|b| b.1).fold(0.0f64, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.05 } else { 1.0 };
    let mut out = svg_open(title);
    axes(&mut out, y_max, "", y_label);
    let (plot_w, plot_h) = (CHART_WIDTH - 1.5 * MARGIN, CHART_HEIGHT - 2.0 * MARGIN);
    let slot = plot_w / bars.len().max(1) as f64;
    for (i, (label, value)) in bars.iter().enumerate() {
        let height = plot_h * value.max(0.0) / y_max;
        let x = MARGIN + slot * i as f64 + slot * 0.15;
        let _ = writeln!(
            out,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\" fill=\"{}\"/>",
            CHART_HEIGHT - MARGIN - height,
            slot * 0.7,
            COLOURS[i % COLOURS.len()]
        );
        let cx = x + slot * 0.35;
        let _ = writeln!(
            out,
            "<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            CHART_HEIGHT - MARGIN + 16.0,
            escape(label)
        );
        let _ = writeln!(
            out,
            "<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            CHART_HEIGHT - MARGIN - height - 4.0,
            compact(*value)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Money stock (in major units, scale 2) per unit over time, by period start day.
pub fn stock_chart(measures: &Measures) -> String {
    let series = per_period(measures, |p| p.stock_average_minor / 100.0);
    line_chart(
        "Average money stock per period",
        "day",
        "stock (major units)",
        &series,
    )
}

/// Velocity per period per unit.
pub fn velocity_chart(measures: &Measures) -> String {
    let series = per_period(measures, |p| p.velocity.unwrap_or(0.0));
    line_chart(
        "Velocity per period",
        "day",
        "transfers / average stock",
        &series,
    )
}

fn per_period(measures: &Measures, value: impl Fn(&crate::measure::Period) -> f64) -> Vec<Series> {
    measures
        .units
        .iter()
        .map(|u| Series {
            name: u.unit.clone(),
            points: u
                .periods
                .iter()
                .map(|p| {
                    (
                        (p.start_s - measures.origin_s) as f64 / DAY_S as f64,
                        value(p),
                    )
                })
                .collect(),
        })
        .collect()
}

/// LM-1 … LM-n of all units together, as bars.
pub fn multiplier_chart(measures: &Measures) -> String {
    let mut bars = Vec::new();
    let deposits: i64 = measures
        .units
        .iter()
        .map(|u| u.tracked_deposits_minor)
        .sum();
    if deposits > 0 {
        let mut running = deposits;
        bars.push(("LM1".to_owned(), 1.0));
        for round in 0..5 {
            running += measures
                .units
                .iter()
                .map(|u| u.local_spending_by_round_minor[round])
                .sum::<i64>();
            bars.push((format!("LM{}", round + 2), running as f64 / deposits as f64));
        }
    }
    bar_chart(
        "Local multiplier by rounds (all units)",
        "local activity per unit deposited",
        &bars,
    )
}

/// Transfers received per category (sector), all units, in major units.
pub fn flows_chart(measures: &Measures) -> String {
    let mut totals: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    for unit in &measures.units {
        for (category, flows) in &unit.by_category {
            *totals
                .entry(if category.is_empty() {
                    "(no category)"
                } else {
                    category
                })
                .or_default() += flows.received_minor;
        }
    }
    let bars: Vec<(String, f64)> = totals
        .into_iter()
        .map(|(c, v)| (c.to_owned(), v as f64 / 100.0))
        .collect();
    bar_chart("Transfers received by sector", "major units", &bars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_well_formed_and_escape_text() {
        let svg = line_chart(
            "a < b & c",
            "x",
            "y",
            &[Series {
                name: "s".into(),
                points: vec![(0.0, 1.0), (10.0, 3.0)],
            }],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a &lt; b &amp; c"));
        assert!(svg.contains("M64.0 "));
        let bars = bar_chart("t", "y", &[("a".into(), 2.0), ("b".into(), 0.0)]);
        assert_eq!(bars.matches("<rect").count(), 3);
        let empty = line_chart("t", "x", "y", &[]);
        assert!(empty.ends_with("</svg>\n"));
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(compact(1.5), "1.5");
        assert_eq!(compact(2.0), "2");
        assert_eq!(compact(0.123456), "0.12");
        assert_eq!(compact(4_216_030.54), "4.22M");
        assert_eq!(compact(1500.0), "1.5k");
        assert_eq!(compact(0.25), "0.25");
    }
}
