//! The demo's chart: each phase's latency distribution as a cumulative curve on a logarithmic
//! time axis, written as plain SVG (no plotting crate: a few lines of markup do).

use std::fmt::Write as _;

use crate::demo::Phase;

const WIDTH: f64 = 820.0;
const HEIGHT: f64 = 460.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 4] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"];

/// An SVG of the share of requests (y) answered within a latency (x, log scale).
pub(crate) fn latency_cdf(phases: &[Phase]) -> String {
    let max_us = phases
        .iter()
        .filter_map(|p| p.latencies_us.last())
        .max()
        .copied()
        .unwrap_or(1000)
        .max(10);
    // Whole decades from 10 µs up to the slowest request.
    let lo = 1.0_f64;
    let hi = (f64::from(max_us)).log10().ceil().max(lo + 1.0);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |us: f64| LEFT + (us.max(10.0).log10() - lo) / (hi - lo) * plot_w;
    let y = |share: f64| TOP + (1.0 - share) * plot_h;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="28" text-anchor="middle" font-size="16">catalog demo: request latency, cumulative (log scale)</text>"#,
        WIDTH / 2.0
    );
    // Grid and axis labels.
    let mut decade = lo;
    while decade <= hi {
        let px = x(10f64.powf(decade));
        let us = 10f64.powf(decade);
        let label = if us >= 1e6 {
            format!("{} s", us / 1e6)
        } else if us >= 1000.0 {
            format!("{} ms", us / 1000.0)
        } else {
            format!("{us} µs")
        };
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 20.0
        );
        decade += 1.0;
    }
    for pct in [0, 25, 50, 75, 90, 100] {
        let py = y(f64::from(pct) / 100.0);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{pct}%</text>"##,
            LEFT + plot_w,
            LEFT - 8.0,
            py + 4.0
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/><text x="{:.1}" y="{:.1}" text-anchor="middle">latency per request</text>"##,
        LEFT + plot_w / 2.0,
        HEIGHT - 12.0
    );
    // One curve per phase, sampled at 0.1% steps of the sorted latencies.
    for (i, phase) in phases.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let n = phase.latencies_us.len();
        if n == 0 {
            continue;
        }
        let mut points = String::new();
        for step in 0..=1000 {
            let share = f64::from(step) / 1000.0;
            let idx = ((n - 1) as f64 * share).round() as usize;
            let _ = write!(
                points,
                "{:.1},{:.1} ",
                x(f64::from(phase.latencies_us[idx])),
                y(share)
            );
        }
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.trim_end()
        );
        // Bottom right: where the curves are not (slow requests are the last few percent).
        let ly = TOP + plot_h - 20.0 * (phases.len() - i) as f64;
        let lx = LEFT + plot_w - 340.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}: p50 {:.3} ms, p99 {:.3} ms</text>"#,
            lx,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            phase.label,
            phase.quantile_ms(0.5),
            phase.quantile_ms(0.99)
        );
    }
    svg.push_str("</svg>\n");
    svg
}
