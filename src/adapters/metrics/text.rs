//! Prometheus text exposition format 0.0.4: `# HELP` and `# TYPE` once per family, then one
//! `name{label="value"} number` line per sample; histograms as `_bucket{le=…}`, `_sum`, `_count`.

use crate::app::metrics::HistogramSnapshot;
use std::fmt::Write;

/// The `Content-Type` of this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The type of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets when the process restarts); its name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations counted into cumulative buckets.
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A page of metrics being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// A number as the format spells it (`+Inf`, `-Inf`, `NaN`; integers without a fraction).
pub fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Whether `name` is a valid metric or label name (`[a-zA-Z_:][a-zA-Z0-9_:]*`; no `:` in labels).
pub fn valid_name(name: &str, label: bool) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic() || c == '_' || (!label && c == ':') || (!first && c.is_ascii_digit())
    };
    let mut chars = name.chars();
    chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            debug_assert!(valid_name(k, true), "bad label name {k}");
            format!("{k}=\"{}\"", escape_label(v))
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

impl Exposition {
    /// An empty page.
    pub fn new() -> Self {
        Exposition::default()
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        debug_assert!(valid_name(name, false), "bad metric name {name}");
        debug_assert!(kind != Kind::Counter || name.ends_with("_total"), "counter {name} must end in _total");
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.name());
        self
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, pairs: &[(&str, &str)], value: f64) -> &mut Self {
        let _ = writeln!(self.out, "{name}{} {}", labels(pairs), number(value));
        self
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) -> &mut Self {
        self.family(name, kind, help).sample(name, &[], value)
    }

    /// The samples of one histogram (the family must have been started with `Kind::Histogram`).
    pub fn histogram(&mut self, name: &str, pairs: &[(&str, &str)], h: &HistogramSnapshot) -> &mut Self {
        for (le, count) in &h.buckets {
            let le = number(*le);
            let mut with_le = pairs.to_vec();
            with_le.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &with_le, *count as f64);
        }
        let mut inf = pairs.to_vec();
        inf.push(("le", "+Inf"));
        self.sample(&format!("{name}_bucket"), &inf, h.count as f64);
        self.sample(&format!("{name}_sum"), pairs, h.sum);
        self.sample(&format!("{name}_count"), pairs, h.count as f64)
    }

    /// The page.
    pub fn finish(self) -> String {
        self.out
    }
}

/// The families every Quloud process exports: build information, start time and uptime.
pub fn process_families(page: &mut Exposition, role: &str, started_ms: u64, now_ms: u64) {
    page.family("quloud_build_info", Kind::Gauge, "Always 1; labels name the version and the role.").sample(
        "quloud_build_info",
        &[("version", env!("CARGO_PKG_VERSION")), ("role", role)],
        1.0,
    );
    page.single(
        "quloud_start_time_seconds",
        Kind::Gauge,
        "When this process started serving, Unix time in seconds.",
        started_ms as f64 / 1000.0,
    );
    page.single(
        "quloud_uptime_seconds",
        Kind::Gauge,
        "Seconds since this process started serving.",
        now_ms.saturating_sub(started_ms) as f64 / 1000.0,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::metrics::Histogram;
    use std::time::Duration;

    #[test]
    fn counters_and_gauges_render_with_help_and_type() {
        let mut p = Exposition::new();
        p.single("x_total", Kind::Counter, "Things.", 3.0);
        p.family("y_bytes", Kind::Gauge, "Bytes\nand \\ more.").sample("y_bytes", &[("a", "1")], 0.5).sample(
            "y_bytes",
            &[("a", "2"), ("b", "q\"\\\n")],
            12.0,
        );
        assert_eq!(
            p.finish(),
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n\
             # HELP y_bytes Bytes\\nand \\\\ more.\n# TYPE y_bytes gauge\n\
             y_bytes{a=\"1\"} 0.5\ny_bytes{a=\"2\",b=\"q\\\"\\\\\\n\"} 12\n"
        );
    }

    #[test]
    fn histograms_have_cumulative_buckets_sum_and_count() {
        let h = Histogram::new(&[0.01, 0.1]);
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_millis(500));
        let mut p = Exposition::new();
        p.family("lat_seconds", Kind::Histogram, "Latency.").histogram(
            "lat_seconds",
            &[("op", "get")],
            &h.snapshot(),
        );
        assert_eq!(
            p.finish(),
            "# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\n\
             lat_seconds_bucket{op=\"get\",le=\"0.01\"} 1\n\
             lat_seconds_bucket{op=\"get\",le=\"0.1\"} 2\n\
             lat_seconds_bucket{op=\"get\",le=\"+Inf\"} 3\n\
             lat_seconds_sum{op=\"get\"} 0.555\n\
             lat_seconds_count{op=\"get\"} 3\n"
        );
    }

    #[test]
    fn numbers_and_names() {
        assert_eq!(number(1.0), "1");
        assert_eq!(number(0.0005), "0.0005");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(1e21), "1000000000000000000000");
        assert!(valid_name("quloud_node_chunks", false));
        assert!(valid_name("a:b", false));
        assert!(!valid_name("a:b", true));
        assert!(!valid_name("9a", false));
        assert!(!valid_name("", false));
        assert!(!valid_name("a-b", false));
    }

    #[test]
    fn process_families_name_the_version() {
        let mut p = Exposition::new();
        process_families(&mut p, "node", 1_000, 4_500);
        let text = p.finish();
        assert!(text.contains(&format!(
            "quloud_build_info{{version=\"{}\",role=\"node\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(text.contains("quloud_start_time_seconds 1\n"));
        assert!(text.contains("quloud_uptime_seconds 3.5\n"));
    }
}
