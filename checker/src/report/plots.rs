//! The SVG plots, drawn with plotters: latency of every operation, throughput,
//! and latency quantiles over time, each with the fault windows shaded.

use std::collections::BTreeMap;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::spans::{FaultWindow, Outcome, Spans};

const WIDTH: u32 = 1100;
const HEIGHT: u32 = 340;
/// Points drawn per series at most; beyond it every n-th ok operation is
/// drawn (fail and info always are), and the caption says so.
const MAX_POINTS: usize = 15_000;

/// A `#rrggbb` colour (grey when it is not one).
pub fn parse_colour(hex: &str) -> RGBColor {
    let channel = |i: usize| hex.get(i..i + 2).and_then(|c| u8::from_str_radix(c, 16).ok());
    match (hex.len(), hex.starts_with('#'), channel(1), channel(3), channel(5)) {
        (7, true, Some(r), Some(g), Some(b)) => RGBColor(r, g, b),
        _ => RGBColor(120, 120, 120),
    }
}

fn outcome_colour(outcome: Outcome) -> RGBColor {
    match outcome {
        Outcome::Ok => RGBColor(40, 150, 70),
        Outcome::Fail => RGBColor(220, 50, 50),
        Outcome::Info => RGBColor(240, 170, 20),
    }
}

fn f_colour(f: &str) -> RGBColor {
    match f {
        "read" => RGBColor(50, 110, 200),
        "write" => RGBColor(40, 150, 70),
        "cas" => RGBColor(150, 80, 180),
        "delete" => RGBColor(120, 120, 120),
        "append" => RGBColor(20, 160, 160),
        _ => RGBColor(90, 90, 90),
    }
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// A bucket width giving about 120 buckets over `span` ns: 1, 2 or 5 times a power of ten, 1 ms at least.
fn bucket_ns(span: u64) -> u64 {
    let target = (span / 120).max(1_000_000);
    let mut unit = 1_000_000u64;
    loop {
        for m in [1, 2, 5] {
            if unit * m >= target {
                return unit * m;
            }
        }
        unit *= 10;
    }
}

/// Axis labels with at most three significant digits (log axes otherwise print 0.30000000000000004).
fn label(v: &f64) -> String {
    let magnitude = if *v == 0.0 { 0 } else { v.abs().log10().floor() as i32 };
    let decimals = (2 - magnitude).clamp(0, 6) as usize;
    format!("{v:.decimals$}")
}

type Chart<'a, 'b, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>;

/// Shaded bands for the faults, labelled by kind at the top; `min_width` (s)
/// keeps an instant fault visible.
fn draw_faults<Y>(
    chart: &mut Chart<'_, '_, Y>,
    faults: &[FaultWindow],
    min_width: f64,
    y0: Y::ValueType,
    y1: Y::ValueType,
) where
    Y: Ranged,
    Y::ValueType: Clone + 'static,
{
    for w in faults {
        let colour = parse_colour(&w.colour);
        let (a, b) = (secs(w.start), secs(w.end).max(secs(w.start) + min_width));
        let _ = chart.draw_series(std::iter::once(Rectangle::new(
            [(a, y0.clone()), (b, y1.clone())],
            colour.mix(0.14).filled(),
        )));
        let _ = chart.draw_series(std::iter::once(Text::new(
            w.kind.clone(),
            (a, y1.clone()),
            ("sans-serif", 11).into_font().color(&colour),
        )));
    }
}

fn svg(draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), String>) -> String {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        let _ = root.fill(&WHITE);
        if let Err(e) = draw(&root) {
            let _ = root.draw(&Text::new(format!("plot failed: {e}"), (20, 20), ("sans-serif", 14).into_font()));
        }
        let _ = root.present();
    }
    out
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A labelled line, with a line for its legend.
fn draw_line<Y>(
    chart: &mut Chart<'_, '_, Y>,
    points: impl IntoIterator<Item = (f64, Y::ValueType)>,
    colour: RGBColor,
    name: &str,
) -> Result<(), String>
where
    Y: Ranged,
    Y::ValueType: Clone + 'static,
{
    chart
        .draw_series(LineSeries::new(points, colour.stroke_width(2)))
        .map_err(err)?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2)));
    Ok(())
}

/// The legend box, as every plot draws it.
fn draw_legend<'a, 'b: 'a, Y>(chart: &mut Chart<'a, 'b, Y>, position: SeriesLabelPosition) -> Result<(), String>
where
    Y: Ranged,
    Y::ValueType: Clone + 'static,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(err)
}

/// A chart of latency (log scale) over time, with its mesh and the faults drawn.
fn latency_chart<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    caption: String,
    end: f64,
    (min, max): (f64, f64),
    spans: &Spans,
) -> Result<Chart<'a, 'b, LogCoord<f64>>, String> {
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..end, (min..max).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("latency (ms)")
        .x_label_formatter(&label)
        .y_label_formatter(&label)
        .light_line_style(WHITE)
        .draw()
        .map_err(err)?;
    draw_faults(&mut chart, &spans.faults, secs(spans.end) / 500.0, min, max);
    Ok(chart)
}

/// Latency of every operation (log scale), coloured by type and outcome.
pub fn latency(spans: &Spans) -> String {
    let end = secs(spans.end).max(0.001);
    let mut series: BTreeMap<(String, Outcome), Vec<(f64, f64)>> = BTreeMap::new();
    for op in &spans.ops {
        let Some(latency) = op.latency(spans.gave_up.get(&op.invoke_index).copied()) else { continue };
        let ms = (latency as f64 / 1e6).max(0.01);
        series.entry((op.f.clone(), op.outcome)).or_default().push((secs(op.start), ms));
    }
    let max = series.values().flatten().map(|p| p.1).fold(1.0f64, f64::max) * 1.5;
    let min = series.values().flatten().map(|p| p.1).fold(max, f64::min).max(0.01) / 1.5;
    // Ok operations share most of the budget; failures and infos, rarer and
    // more telling, get the rest (all of them, usually).
    let count =
        |ok: bool| series.iter().filter(|((_, o), _)| (*o == Outcome::Ok) == ok).map(|(_, v)| v.len()).sum::<usize>();
    let stride = count(true).div_ceil(MAX_POINTS * 2 / 3).max(1);
    let other_stride = count(false).div_ceil(MAX_POINTS / 3).max(1);
    svg(|root| {
        let caption = if stride > 1 || other_stride > 1 {
            format!(
                "Latency by operation and outcome (1 in {stride} ok and 1 in {other_stride} other operations drawn)"
            )
        } else {
            "Latency by operation and outcome".to_string()
        };
        let mut chart = latency_chart(root, caption, end, (min, max), spans)?;
        for ((f, outcome), points) in &series {
            let colour = f_colour(f);
            let step = if *outcome == Outcome::Ok { stride } else { other_stride };
            let shape = *outcome;
            chart
                .draw_series(points.iter().step_by(step).map(
                    move |&(x, y)| -> DynElement<'static, SVGBackend<'_>, (f64, f64)> {
                        match shape {
                            Outcome::Ok => Circle::new((x, y), 2, colour.filled()).into_dyn(),
                            Outcome::Fail => Cross::new((x, y), 3, outcome_colour(Outcome::Fail)).into_dyn(),
                            Outcome::Info => {
                                TriangleMarker::new((x, y), 4, outcome_colour(Outcome::Info).filled()).into_dyn()
                            }
                        }
                    },
                ))
                .map_err(err)?
                .label(format!("{f} {}", outcome.name()))
                .legend(move |(x, y)| -> DynElement<'static, SVGBackend<'_>, (i32, i32)> {
                    match shape {
                        Outcome::Ok => Circle::new((x, y), 3, colour.filled()).into_dyn(),
                        Outcome::Fail => Cross::new((x, y), 3, outcome_colour(Outcome::Fail)).into_dyn(),
                        Outcome::Info => {
                            TriangleMarker::new((x, y), 4, outcome_colour(Outcome::Info).filled()).into_dyn()
                        }
                    }
                });
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

/// Completions per second, by outcome.
pub fn throughput(spans: &Spans) -> String {
    let width = bucket_ns(spans.end);
    let buckets = (spans.end / width + 1) as usize;
    let per_second = 1e9 / width as f64;
    let mut counts: BTreeMap<Outcome, Vec<u32>> = BTreeMap::new();
    for op in &spans.ops {
        let at = op.end.or_else(|| spans.gave_up.get(&op.invoke_index).copied());
        let Some(at) = at else { continue };
        counts.entry(op.outcome).or_insert_with(|| vec![0; buckets])[(at / width) as usize] += 1;
    }
    let max = counts.values().flatten().copied().max().unwrap_or(1).max(1) as f64 * per_second * 1.15;
    let end = buckets as f64 * secs(width);
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(format!("Throughput by outcome ({} ms buckets)", width / 1_000_000), ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..end, 0f64..max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("operations / s")
            .x_label_formatter(&label)
            .light_line_style(WHITE)
            .draw()
            .map_err(err)?;
        draw_faults(&mut chart, &spans.faults, secs(spans.end) / 500.0, 0.0, max);
        for (outcome, counts_of) in &counts {
            let colour = outcome_colour(*outcome);
            let points =
                counts_of.iter().enumerate().map(|(b, &c)| ((b as f64 + 0.5) * secs(width), c as f64 * per_second));
            draw_line(&mut chart, points, colour, outcome.name())?;
        }
        draw_legend(&mut chart, SeriesLabelPosition::MiddleRight)
    })
}

/// p50, p95, p99 and max latency of completed operations, per time bucket.
pub fn quantiles(spans: &Spans) -> String {
    let width = bucket_ns(spans.end);
    let mut buckets: Vec<Vec<f64>> = vec![Vec::new(); (spans.end / width + 1) as usize];
    let end = buckets.len() as f64 * secs(width);
    for op in spans.ops.iter().filter(|o| o.outcome != Outcome::Info) {
        if let (Some(done), Some(latency)) = (op.end, op.latency(None)) {
            buckets[(done / width) as usize].push((latency as f64 / 1e6).max(0.01));
        }
    }
    let lines: Vec<(&str, f64, RGBColor)> = vec![
        ("p50", 0.50, RGBColor(40, 150, 70)),
        ("p95", 0.95, RGBColor(50, 110, 200)),
        ("p99", 0.99, RGBColor(150, 80, 180)),
        ("max", 1.0, RGBColor(220, 50, 50)),
    ];
    let mut series: Vec<Vec<(f64, f64)>> = vec![Vec::new(); lines.len()];
    for (s, bucket) in buckets.iter_mut().enumerate() {
        if bucket.is_empty() {
            continue;
        }
        bucket.sort_by(f64::total_cmp);
        for (i, (_, q, _)) in lines.iter().enumerate() {
            let at = ((bucket.len() - 1) as f64 * q).round() as usize;
            series[i].push(((s as f64 + 0.5) * secs(width), bucket[at]));
        }
    }
    let max = series.iter().flatten().map(|p| p.1).fold(1.0f64, f64::max) * 1.5;
    let min = series.iter().flatten().map(|p| p.1).fold(max, f64::min).max(0.01) / 1.5;
    svg(|root| {
        let caption = format!("Latency quantiles per {} ms", width / 1_000_000);
        let mut chart = latency_chart(root, caption, end, (min, max), spans)?;
        for ((name, _, colour), points) in lines.iter().zip(&series) {
            draw_line(&mut chart, points.iter().copied(), *colour, name)?;
        }
        draw_legend(&mut chart, SeriesLabelPosition::MiddleRight)
    })
}

/// One line of a [`per_point`] chart: a value at each point, `None` where
/// that point has none (the line breaks there).
pub struct Series<'a> {
    pub name: &'a str,
    /// `#rrggbb`.
    pub colour: &'a str,
    pub values: Vec<Option<f64>>,
}

/// A small chart of a few series over points in order, one labelled x
/// position each (e.g. one per suite run): a dot per value, joined to the
/// next. Used for trends, where the x axis is runs, not time.
pub fn per_point(title: &str, y_desc: &str, labels: &[String], series: &[Series<'_>]) -> String {
    let n = labels.len().max(1);
    let max = series.iter().flat_map(|s| s.values.iter().flatten()).copied().fold(0.0f64, f64::max);
    let max = if max > 0.0 { max * 1.15 } else { 1.0 };
    let label_of = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, 260)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let drawn = (|| -> Result<(), String> {
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 16))
                .margin(12)
                .x_label_area_size(32)
                .y_label_area_size(56)
                .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..max)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_labels(n.min(12))
                .x_label_formatter(&label_of)
                .y_desc(y_desc)
                .y_label_formatter(&label)
                .light_line_style(WHITE)
                .draw()
                .map_err(err)?;
            for s in series {
                let colour = parse_colour(s.colour);
                let points: Vec<(f64, f64)> =
                    s.values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i as f64, v))).collect();
                // Segments of consecutive points only: a missing value breaks the line.
                for pair in s.values.windows(2).enumerate() {
                    if let (i, [Some(a), Some(b)]) = pair {
                        let segment = [(i as f64, *a), (i as f64 + 1.0, *b)];
                        chart.draw_series(LineSeries::new(segment, colour.stroke_width(2))).map_err(err)?;
                    }
                }
                chart
                    .draw_series(points.into_iter().map(|p| Circle::new(p, 3, colour.filled())))
                    .map_err(err)?
                    .label(s.name)
                    .legend(move |(x, y)| Circle::new((x + 8, y), 3, colour.filled()));
            }
            draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)
        })();
        if let Err(e) = drawn {
            let _ = root.draw(&Text::new(format!("plot failed: {e}"), (20, 20), ("sans-serif", 14).into_font()));
        }
        let _ = root.present();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_round_and_about_120_to_a_history() {
        assert_eq!(bucket_ns(60_000_000_000), 500_000_000);
        assert_eq!(bucket_ns(50_000_000), 1_000_000, "1 ms at least");
        assert_eq!(bucket_ns(3_600_000_000_000), 50_000_000_000);
        assert_eq!(label(&0.30000000000000004), "0.300");
        assert_eq!(label(&1234.6), "1235");
        assert_eq!(label(&0.0), "0.00");
    }

    #[test]
    fn a_per_point_chart_draws_a_dot_per_value_and_breaks_at_gaps() {
        let labels: Vec<String> = ["12-01", "12-02", "12-03"].map(String::from).to_vec();
        let svg = per_point(
            "Detection rate",
            "%",
            &labels,
            &[Series { name: "caught", colour: "#2a9d46", values: vec![Some(50.0), None, Some(90.0)] }],
        );
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("Detection rate") && svg.contains("12-03") && svg.contains("caught"));
        // Two dots and the legend's; no segment across the gap.
        assert_eq!(svg.matches("<circle").count(), 3, "{svg}");
        assert_eq!(svg.matches("stroke=\"#2A9D46\" stroke-width=\"2\"").count(), 0, "{svg}");
        let joined =
            per_point("t", "y", &labels, &[Series { name: "s", colour: "#2a9d46", values: vec![Some(1.0); 3] }]);
        assert_eq!(joined.matches("stroke=\"#2A9D46\" stroke-width=\"2\"").count(), 2, "{joined}");
    }
}
