//! SVG charts from `--json` result lines: deliveries/s and p99 against the target rate,
//! and server memory per connection against connections. No plotting library: a few lines
//! and axes are all a results page needs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

const WIDTH: f64 = 420.0;
const HEIGHT: f64 = 300.0;
const MARGIN: f64 = 55.0;
const COLORS: [&str; 5] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];

type Series = BTreeMap<String, Vec<(f64, f64)>>;

/// How a chart's y axis is scaled.
#[derive(Clone, Copy, PartialEq)]
enum Scale {
    Linear,
    /// Logarithmic from 1, with a dashed reference line at this value.
    Log {
        reference: f64,
    },
}

/// One chart: series of (x, y) points by label.
fn chart(
    out: &mut String,
    offset_x: f64,
    title: &str,
    (x_label, y_label): (&str, &str),
    scale: Scale,
    series: &Series,
) {
    let points = series.values().flatten();
    let max_x = points.clone().map(|p| p.0).fold(0.0, f64::max).max(1.0) * 1.05;
    let max_y = points.map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.1;
    let sx = |x: f64| offset_x + MARGIN + x / max_x * (WIDTH - 2.0 * MARGIN);
    let fraction = |y: f64| match scale {
        Scale::Linear => y / max_y,
        Scale::Log { .. } => y.max(1.0).log10() / max_y.log10().max(1.0),
    };
    let sy = |y: f64| HEIGHT - MARGIN - fraction(y) * (HEIGHT - 2.0 * MARGIN);
    let _ = write!(
        out,
        r##"<text x="{:.0}" y="20" font-size="14" text-anchor="middle">{title}</text>
<line x1="{:.0}" y1="{:.0}" x2="{:.0}" y2="{:.0}" stroke="black"/>
<line x1="{:.0}" y1="{:.0}" x2="{:.0}" y2="{:.0}" stroke="black"/>
<text x="{:.0}" y="{:.0}" font-size="11" text-anchor="middle">{x_label}</text>
<text x="{:.0}" y="{:.0}" font-size="11" text-anchor="middle" transform="rotate(-90 {:.0} {:.0})">{y_label}</text>
"##,
        offset_x + WIDTH / 2.0,
        sx(0.0),
        sy(0.0),
        sx(max_x),
        sy(0.0),
        sx(0.0),
        sy(0.0),
        sx(0.0),
        sy(max_y),
        offset_x + WIDTH / 2.0,
        HEIGHT - 15.0,
        offset_x + 14.0,
        HEIGHT / 2.0,
        offset_x + 14.0,
        HEIGHT / 2.0,
    );
    if let Scale::Log { reference } = scale {
        let _ = writeln!(
            out,
            r##"<line x1="{:.0}" y1="{:.1}" x2="{:.0}" y2="{:.1}" stroke="#888" stroke-dasharray="4 3"/><text x="{:.0}" y="{:.1}" font-size="9" fill="#555">{reference:.0}</text>"##,
            sx(0.0),
            sy(reference),
            sx(max_x),
            sy(reference),
            sx(max_x) - 20.0,
            sy(reference) - 3.0,
        );
    }
    for tick in 0..=4 {
        let x = max_x * f64::from(tick) / 4.0;
        let y = match scale {
            Scale::Linear => max_y * f64::from(tick) / 4.0,
            Scale::Log { .. } => max_y.max(1.0).powf(f64::from(tick) / 4.0),
        };
        let _ = write!(
            out,
            r##"<text x="{:.0}" y="{:.0}" font-size="9" text-anchor="middle">{x:.0}</text>
<text x="{:.0}" y="{:.0}" font-size="9" text-anchor="end">{y:.0}</text>
"##,
            sx(x),
            sy(0.0) + 14.0,
            sx(0.0) - 4.0,
            sy(y) + 3.0,
        );
    }
    for (i, (label, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut sorted = points.clone();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = sorted
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let _ = writeln!(
            out,
            r##"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"##,
            path.join(" ")
        );
        for (x, y) in &sorted {
            let _ = writeln!(
                out,
                r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"##,
                sx(*x),
                sy(*y)
            );
        }
        let _ = writeln!(
            out,
            r##"<text x="{:.0}" y="{:.0}" font-size="10" fill="{color}">{label}</text>"##,
            offset_x + MARGIN + 8.0,
            MARGIN + 12.0 * i as f64,
        );
    }
}

/// Renders the charts of every JSON result line in `input`.
pub fn svg(input: &str) -> String {
    let mut rate_deliveries = Series::new();
    let mut rate_p99 = Series::new();
    let mut conn_memory = Series::new();
    for line in input.lines() {
        let Ok(r) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let get = |k: &str| r[k].as_f64().unwrap_or(0.0);
        let label = format!(
            "{} {}",
            r["target"].as_str().unwrap_or("?"),
            r["scenario"].as_str().unwrap_or("?")
        );
        if r["scenario"] == "connections" {
            conn_memory
                .entry(label)
                .or_default()
                .push((get("connections"), get("server_rss_per_conn_kib")));
        } else {
            rate_deliveries
                .entry(label.clone())
                .or_default()
                .push((get("target_rate"), get("deliveries_per_sec")));
            rate_p99
                .entry(label)
                .or_default()
                .push((get("target_rate"), get("p99_ms")));
        }
    }
    let mut out = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{:.0}" height="{HEIGHT:.0}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
"##,
        WIDTH * 3.0
    );
    let rate = "target posts/s";
    chart(
        &mut out,
        0.0,
        "Deliveries per second",
        (rate, "deliveries/s"),
        Scale::Linear,
        &rate_deliveries,
    );
    let p99 = Scale::Log { reference: 100.0 };
    chart(
        &mut out,
        WIDTH,
        "Delivery p99 (log scale)",
        (rate, "ms"),
        p99,
        &rate_p99,
    );
    let memory = ("connections", "KiB");
    chart(
        &mut out,
        WIDTH * 2.0,
        "Server memory per connection",
        memory,
        Scale::Linear,
        &conn_memory,
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn draws_each_kind_of_result() {
        let input = concat!(
            r#"{"scenario":"fanout","target":"bare","target_rate":1000,"deliveries_per_sec":9000,"p99_ms":3}"#,
            "\n",
            r#"{"scenario":"fanout","target":"renkei-sqlite","target_rate":1000,"deliveries_per_sec":8900,"p99_ms":9}"#,
            "\n",
            r#"{"scenario":"connections","target":"renkei-sqlite","connections":10000,"server_rss_per_conn_kib":11}"#,
            "\n",
            "not json\n",
        );
        let svg = super::svg(input);
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 5);
        assert!(svg.contains("renkei-sqlite connections"));
    }
}
