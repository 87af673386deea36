//! The self-contained HTML report: tables and inline SVG plots written by this module (no
//! JavaScript, no external file), so the page opens anywhere, offline.
//!
//! Plots: throughput over time (and the echo baseline's, when there is one, in a plot of its own
//! with its own scale), latency percentiles over time (log scale), and the latency distribution
//! (log-scale buckets).

use std::fmt::Write as _;

use crate::config::Peer;
use crate::report::{Report, micros};
use crate::stats::SeriesPoint;

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 300.0;
const MARGIN_LEFT: f64 = 80.0;
const MARGIN_RIGHT: f64 = 150.0;
const MARGIN_TOP: f64 = 30.0;
const MARGIN_BOTTOM: f64 = 45.0;
/// Styles inside every SVG, so that a plot saved on its own looks the same as in the page.
const SVG_STYLE: &str = "text{font-family:system-ui,sans-serif}.title{font-size:14px;font-weight:600}\
.tick{font-size:11px;fill:#444}.label{font-size:12px;fill:#222}.grid{stroke:#eee}.axis{stroke:#888}\
.warmup{fill:#f3f0e0}.bar{fill:#1f77b4}";
/// Ticks aimed for on a linear axis.
const TICKS: f64 = 6.0;

/// Escapes text for HTML and SVG.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One line of a line chart.
struct Line<'a> {
    name: &'a str,
    color: &'a str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// How values map onto an axis.
#[derive(Clone, Copy)]
struct Axis {
    min: f64,
    max: f64,
    log: bool,
}

impl Axis {
    fn linear(max: f64) -> Axis {
        // Round the top up to a whole tick step, so that the data fill most of the height.
        let step = nice(max.max(f64::MIN_POSITIVE) / TICKS);
        Axis {
            min: 0.0,
            max: if max > 0.0 {
                (max * 1.02 / step).ceil() * step
            } else {
                1.0
            },
            log: false,
        }
    }

    fn log(min: f64, max: f64) -> Axis {
        let low = 10f64.powf(min.max(1.0).log10().floor());
        let high = 10f64.powf(max.max(low * 10.0).log10().ceil());
        Axis {
            min: low,
            max: high,
            log: true,
        }
    }

    /// Position of `value` in 0..=1.
    fn fraction(&self, value: f64) -> f64 {
        let f = if self.log {
            (value.max(self.min).log10() - self.min.log10()) / (self.max.log10() - self.min.log10())
        } else {
            (value - self.min) / (self.max - self.min)
        };
        f.clamp(0.0, 1.0)
    }

    fn ticks(&self) -> Vec<f64> {
        if self.log {
            // Two decades or less: 1, 2 and 5 of each decade, else one tick per decade.
            let steps: &[f64] = if self.max / self.min <= 100.0 {
                &[1.0, 2.0, 5.0]
            } else {
                &[1.0]
            };
            let mut ticks = Vec::new();
            let mut decade = self.min;
            while decade <= self.max * 1.0001 {
                ticks.extend(
                    steps
                        .iter()
                        .map(|s| s * decade)
                        .filter(|t| *t <= self.max * 1.0001),
                );
                decade *= 10.0;
            }
            return ticks;
        }
        let step = nice((self.max - self.min) / TICKS);
        (0..=((self.max - self.min) / step).round() as u32)
            .map(|i| self.min + f64::from(i) * step)
            .collect()
    }
}

/// The smallest 1, 2 or 5 times a power of ten at or above `value`.
fn nice(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|candidate| *candidate >= value * 0.999_999)
        .unwrap_or(10.0 * magnitude)
}

/// A number for an axis label: 12k, 1.5M, 250.
fn short(value: f64) -> String {
    match value.abs() {
        v if v >= 1e6 => format!("{}M", trim(value / 1e6)),
        v if v >= 1e3 => format!("{}k", trim(value / 1e3)),
        _ => trim(value),
    }
}

fn trim(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

struct Frame {
    x: Axis,
    y: Axis,
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        MARGIN_LEFT + self.x.fraction(x) * (WIDTH - MARGIN_LEFT - MARGIN_RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        HEIGHT - MARGIN_BOTTOM - self.y.fraction(y) * (HEIGHT - MARGIN_TOP - MARGIN_BOTTOM)
    }

    /// Opens the SVG and draws title, grid, ticks and axis labels.
    fn open(
        &self,
        svg: &mut String,
        title: &str,
        x_label: &str,
        y_label: &str,
        y_fmt: fn(f64) -> String,
    ) {
        let _ = write!(
            svg,
            r#"<svg class="plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{t}"><title>{t}</title><style>{SVG_STYLE}</style>"#,
            t = esc(title)
        );
        let _ = write!(
            svg,
            r#"<text x="{MARGIN_LEFT}" y="18" class="title">{}</text>"#,
            esc(title)
        );
        let (left, right) = (MARGIN_LEFT, WIDTH - MARGIN_RIGHT);
        let (top, bottom) = (MARGIN_TOP, HEIGHT - MARGIN_BOTTOM);
        for tick in self.y.ticks() {
            let y = self.py(tick);
            let _ = write!(
                svg,
                r#"<line x1="{left}" y1="{y:.1}" x2="{right}" y2="{y:.1}" class="grid"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{}</text>"#,
                left - 6.0,
                y + 4.0,
                esc(&y_fmt(tick))
            );
        }
        for tick in self.x.ticks() {
            let x = self.px(tick);
            let _ = write!(
                svg,
                r#"<line x1="{x:.1}" y1="{bottom}" x2="{x:.1}" y2="{:.1}" class="axis"/><text x="{x:.1}" y="{:.1}" class="tick" text-anchor="middle">{}</text>"#,
                bottom + 5.0,
                bottom + 18.0,
                esc(&short(tick))
            );
        }
        let _ = write!(
            svg,
            r#"<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" class="axis"/><line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" class="axis"/>"#
        );
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" class="label" text-anchor="middle">{}</text><text x="14" y="{:.1}" class="label" text-anchor="middle" transform="rotate(-90 14 {:.1})">{}</text>"#,
            (left + right) / 2.0,
            HEIGHT - 8.0,
            esc(x_label),
            (top + bottom) / 2.0,
            (top + bottom) / 2.0,
            esc(y_label)
        );
    }
}

fn legend(svg: &mut String, entries: &[(&str, &str, bool)]) {
    for (i, (name, color, dashed)) in entries.iter().enumerate() {
        let x = WIDTH - MARGIN_RIGHT + 12.0;
        let y = MARGIN_TOP + 10.0 + i as f64 * 18.0;
        let dash = if *dashed {
            r#" stroke-dasharray="6 3""#
        } else {
            ""
        };
        let _ = write!(
            svg,
            r#"<line x1="{x}" y1="{y}" x2="{:.1}" y2="{y}" stroke="{color}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}" class="tick">{}</text>"#,
            x + 22.0,
            x + 28.0,
            y + 4.0,
            esc(name)
        );
    }
}

/// A line chart; `shade` marks an x range (the warm-up).
fn line_chart(
    title: &str,
    y_label: &str,
    lines: &[Line<'_>],
    y: Axis,
    y_fmt: fn(f64) -> String,
    shade: Option<f64>,
) -> String {
    let x_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(0.0, f64::max);
    let frame = Frame {
        x: Axis::linear(x_max.max(1.0)),
        y,
    };
    let mut svg = String::new();
    frame.open(&mut svg, title, "seconds since start", y_label, y_fmt);
    if let Some(warmup) = shade.filter(|w| *w > 0.0) {
        let (x0, x1) = (frame.px(0.0), frame.px(warmup));
        let _ = write!(
            svg,
            r#"<rect x="{x0:.1}" y="{MARGIN_TOP}" width="{:.1}" height="{:.1}" class="warmup"><title>warm-up (not measured)</title></rect>"#,
            x1 - x0,
            HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
        );
    }
    for line in lines.iter().filter(|l| !l.points.is_empty()) {
        let points: Vec<String> = line
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", frame.px(*x), frame.py(*y)))
            .collect();
        let dash = if line.dashed {
            r#" stroke-dasharray="6 3""#
        } else {
            ""
        };
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="2"{dash} points="{}"/>"#,
            line.color,
            points.join(" ")
        );
    }
    let entries: Vec<(&str, &str, bool)> =
        lines.iter().map(|l| (l.name, l.color, l.dashed)).collect();
    legend(&mut svg, &entries);
    svg.push_str("</svg>");
    svg
}

/// A latency for an axis label: `250 us`, `1.5 ms`, `2 s`.
fn latency_label(us: f64) -> String {
    match us {
        v if v >= 1e6 => format!("{} s", trim(v / 1e6)),
        v if v >= 1e3 => format!("{} ms", trim(v / 1e3)),
        v => format!("{} us", trim(v)),
    }
}

/// The series points worth plotting: a last interval covering under half its width (the few
/// milliseconds of draining after sending stops) would plot a misleading drop or spike. A run
/// shorter than that keeps its only point.
fn plotted(report: &Report) -> impl Iterator<Item = &SeriesPoint> {
    let half = report.series_interval_s as f64 / 2.0;
    let only = report.series.len() == 1;
    report
        .series
        .iter()
        .filter(move |p| only || p.seconds >= half)
}

/// Throughput over time of the run, and of its echo baseline in a plot of its own. One axis for
/// both would not do: the echo server answers many times faster than a router that authorizes
/// upstream, so the router's line would lie flat along zero under the baseline's.
fn throughput_charts(report: &Report) -> String {
    let name = match report.setup.peer {
        Peer::Paymesh => "PayMesh",
        Peer::Echo => "echo server",
    };
    let mut html = throughput_chart(
        "Throughput over time (answers per second)",
        Line {
            name,
            color: "#1f77b4",
            dashed: false,
            points: throughput_points(report),
        },
        report.setup.warmup_s,
    );
    if let Some(baseline) = &report.baseline {
        html.push_str(&throughput_chart(
            "Echo baseline: the same load against a framed echo server (its own scale)",
            Line {
                name: "echo baseline",
                color: "#7f7f7f",
                dashed: true,
                points: throughput_points(baseline),
            },
            baseline.setup.warmup_s,
        ));
    }
    html
}

fn throughput_points(report: &Report) -> Vec<(f64, f64)> {
    let half = report.series_interval_s as f64 / 2.0;
    plotted(report).map(|p| (p.start_s + half, p.tps)).collect()
}

fn throughput_chart(title: &str, line: Line<'_>, warmup_s: f64) -> String {
    let y_max = line.points.iter().map(|p| p.1).fold(0.0, f64::max);
    line_chart(
        title,
        "answers/s",
        &[line],
        Axis::linear(y_max),
        short,
        Some(warmup_s),
    )
}

/// Milliseconds since the Unix epoch as a UTC date and time, `2026-12-04 14:25:44.886 UTC`.
fn utc_date_time(unix_ms: u64) -> String {
    const MS_PER_DAY: u64 = 86_400_000;
    let (days, ms_of_day) = (unix_ms / MS_PER_DAY, unix_ms % MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let seconds = ms_of_day / 1_000;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03} UTC",
        seconds / 3_600,
        seconds / 60 % 60,
        seconds % 60,
        ms_of_day % 1_000
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`, for
/// days on or after the epoch): a 400-year era holds 146,097 days, and counting years from March
/// puts the leap day last.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn percentile_chart(report: &Report) -> String {
    let half = report.series_interval_s as f64 / 2.0;
    type Pick = fn(&crate::stats::Percentiles) -> u64;
    let pick: [(&str, &str, Pick); 5] = [
        ("p50", "#2ca02c", |p| p.p50_us),
        ("p90", "#1f77b4", |p| p.p90_us),
        ("p99", "#ff7f0e", |p| p.p99_us),
        ("p99.9", "#d62728", |p| p.p999_us),
        ("max", "#9467bd", |p| p.max_us),
    ];
    let lines: Vec<Line<'_>> = pick
        .iter()
        .map(|(name, color, get)| Line {
            name,
            color,
            dashed: *name == "max",
            points: plotted(report)
                .filter(|p| p.latency.count > 0)
                .map(|p| (p.start_s + half, get(&p.latency).max(1) as f64))
                .collect(),
        })
        .collect();
    let values = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
    let (low, high) = values.fold((f64::MAX, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let title = format!(
        "Latency percentiles over time (from {}, log scale)",
        report.latency_from
    );
    line_chart(
        &title,
        "latency",
        &lines,
        Axis::log(low, high),
        latency_label,
        Some(report.setup.warmup_s),
    )
}

fn distribution_chart(report: &Report) -> String {
    let buckets = &report.distribution;
    let first = buckets.first().map_or(1, |b| b.upper_us).max(1) as f64;
    let last = buckets.last().map_or(10, |b| b.upper_us).max(10) as f64;
    let count_max = buckets.iter().map(|b| b.count).max().unwrap_or(0) as f64;
    let frame = Frame {
        x: Axis::log(first / 1.2, last),
        y: Axis::linear(count_max),
    };
    let mut svg = String::new();
    frame.open(
        &mut svg,
        "Latency distribution (measured answers, log-scale buckets)",
        "latency (us)",
        "answers",
        short,
    );
    let mut lower = first / 1.189_207_115;
    for bucket in buckets {
        let upper = bucket.upper_us as f64;
        let (x0, x1) = (frame.px(lower), frame.px(upper));
        let y = frame.py(bucket.count as f64);
        let _ = write!(
            svg,
            r#"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" class="bar"><title>up to {}: {}</title></rect>"#,
            (x1 - x0 - 1.0).max(1.0),
            HEIGHT - MARGIN_BOTTOM - y,
            esc(&micros(bucket.upper_us)),
            bucket.count
        );
        lower = upper;
    }
    svg.push_str("</svg>");
    svg
}

fn row(html: &mut String, cells: &[String]) {
    html.push_str("<tr>");
    for cell in cells {
        let _ = write!(html, "<td>{}</td>", esc(cell));
    }
    html.push_str("</tr>");
}

fn summary_tables(html: &mut String, report: &Report) {
    let s = &report.setup;
    let t = &report.totals;
    html.push_str("<h2>Set-up</h2><table>");
    let rate = s
        .rate_per_second
        .map_or("-".to_owned(), |r| format!("{r}/s"));
    let length = match (s.duration_s, s.count) {
        (Some(d), _) => format!("{d} s"),
        (None, Some(c)) => format!("{c} requests"),
        _ => "-".to_owned(),
    };
    for (k, v) in [
        (
            "target",
            format!(
                "{} ({:?}{})",
                s.target,
                s.peer,
                if s.tls { ", TLS" } else { "" }
            ),
        ),
        ("mode", format!("{} loop, rate {rate}", s.mode)),
        (
            "connections x depth",
            format!(
                "{} x {} (effective {})",
                s.connections, s.depth, s.effective_depth
            ),
        ),
        (
            "server window",
            s.server_window.map_or("-".to_owned(), |w| w.to_string()),
        ),
        ("warm-up / length", format!("{} s / {length}", s.warmup_s)),
        ("mix", s.mix.clone()),
        (
            "methods",
            format!("{} over {} merchants", s.methods, s.merchants),
        ),
        (
            "request frame",
            format!("{:.1} bytes mean", s.request_frame_bytes_mean),
        ),
    ] {
        row(html, &[k.to_owned(), v]);
    }
    html.push_str("</table><h2>Results</h2><table>");
    let l = &report.latency;
    for (k, v) in [
        (
            "throughput",
            format!(
                "{:.0} answers/s ({} in {:.2} s)",
                report.tps, report.measured_answers, report.measured_seconds
            ),
        ),
        (
            "requests",
            format!(
                "sent {}, answered {}, unanswered {}",
                t.sent, t.answered, t.unanswered
            ),
        ),
        (
            "mismatches / protocol errors",
            format!("{} / {}", t.mismatches, t.protocol_errors),
        ),
        (
            "latency",
            format!(
                "p50 {} · p90 {} · p99 {} · p99.9 {} · max {} (from {})",
                micros(l.p50_us),
                micros(l.p90_us),
                micros(l.p99_us),
                micros(l.p999_us),
                micros(l.max_us),
                report.latency_from
            ),
        ),
    ] {
        row(html, &[k.to_owned(), v]);
    }
    if let (Some(baseline), Some(ratio)) = (&report.baseline, report.baseline_ratio) {
        let text = format!(
            "{:.0} answers/s, p99 {}: PayMesh reaches {:.1}% of this machine's loopback with the same framing",
            baseline.tps,
            micros(baseline.latency.p99_us),
            ratio * 100.0
        );
        row(html, &["echo baseline".to_owned(), text]);
    }
    html.push_str("</table><h2>By transaction type (measured)</h2><table><tr><th>type</th><th>sent</th><th>answered</th><th>approved</th><th>result codes</th></tr>");
    for r in report
        .by_type
        .iter()
        .filter(|r| r.sent > 0 || r.answers > 0)
    {
        let codes: Vec<String> = r.codes.iter().map(|(c, n)| format!("{c}: {n}")).collect();
        row(
            html,
            &[
                r.txn_type.name().to_owned(),
                r.sent.to_string(),
                r.answers.to_string(),
                r.approved.to_string(),
                codes.join(", "),
            ],
        );
    }
    html.push_str("</table>");
    for (title, map) in [
        ("Mismatches", &report.mismatches),
        ("Protocol errors", &report.protocol_errors),
    ] {
        if !map.is_empty() {
            let _ = write!(html, "<h2>{title}</h2><table>");
            for (k, n) in map {
                row(html, &[k.clone(), n.to_string()]);
            }
            html.push_str("</table>");
        }
    }
}

/// The whole page.
pub fn render(report: &Report) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>PayMesh load report {id}</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:960px}}
table{{border-collapse:collapse;margin:0.5em 0 1.5em}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:14px}}
svg.plot{{display:block;margin:1em 0;background:#fff;border:1px solid #ddd}}
</style></head><body><h1>PayMesh load report</h1><p>Run <code>{id}</code>, started {started}.</p>"#,
        id = esc(&report.run_id),
        started = utc_date_time(report.started_unix_ms)
    );
    summary_tables(&mut html, report);
    html.push_str("<h2>Plots</h2>");
    html.push_str(&throughput_charts(report));
    html.push_str(&percentile_chart(report));
    html.push_str(&distribution_chart(report));
    html.push_str("<p>Shaded: warm-up, left out of every figure except the plots over time.</p></body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_numbers_and_labels() {
        assert_eq!(nice(7.0), 10.0);
        assert_eq!(nice(1.5), 2.0);
        assert_eq!(nice(0.3), 0.5);
        assert_eq!(nice(4000.0), 5000.0);
        assert_eq!(short(125_000.0), "125k");
        assert_eq!(short(2_500_000.0), "2.5M");
        assert_eq!(esc("<a&\"b'>"), "&lt;a&amp;&quot;b&#39;&gt;");
        let axis = Axis::log(3.0, 40_000.0);
        assert_eq!(
            axis.ticks(),
            vec![1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0]
        );
        assert_eq!(axis.fraction(1.0), 0.0);
        assert_eq!(axis.fraction(100_000.0), 1.0);
        let narrow = Axis::log(150.0, 900.0);
        assert_eq!(narrow.ticks(), vec![100.0, 200.0, 500.0, 1_000.0]);
        assert_eq!(latency_label(1_500.0), "1.5 ms");
        assert_eq!(latency_label(2_000_000.0), "2 s");
    }

    #[test]
    fn start_times_are_utc_dates() {
        // Expected values from Python's datetime.fromtimestamp(ms / 1000, timezone.utc).
        assert_eq!(utc_date_time(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(
            utc_date_time(1_796_394_344_886),
            "2026-12-04 14:25:44.886 UTC"
        );
        assert_eq!(
            utc_date_time(951_782_400_000),
            "2000-02-29 00:00:00.000 UTC"
        );
        assert_eq!(
            utc_date_time(4_102_444_799_999),
            "2099-12-31 23:59:59.999 UTC"
        );
    }
}
