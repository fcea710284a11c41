//! One scrape through `prometheus-client`: `render` encodes, in the Prometheus text format
//! 0.0.4, what a function writes on a `Page` (gauges, counters, one-label families, histograms
//! from the app layer's snapshots) when it is called at scrape time; and the process families
//! every Quloud process exports.
//!
//! Families are written under the names they are exposed with: `Page` strips the `_total` of a
//! counter and the `_info` of an info family, which the encoder appends again.

use crate::app::metrics::HistogramSnapshot;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    prometheus_text, DescriptorEncoder, EncodeGaugeValue, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::fmt;

/// The `Content-Type` of the page.
pub use prometheus_text::CONTENT_TYPE;

/// The page `write` writes at this scrape, in the Prometheus text format 0.0.4.
pub fn render(
    write: impl Fn(&mut Page<'_>) -> fmt::Result + Send + Sync + 'static,
) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(write)));
    let mut out = String::new();
    prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

/// A collector that writes with a function when the registry is encoded.
struct Scrape<F>(F);

impl<F> fmt::Debug for Scrape<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scrape")
    }
}

impl<F: Fn(&mut Page<'_>) -> fmt::Result + Send + Sync + 'static> Collector for Scrape<F> {
    fn encode(&self, enc: DescriptorEncoder) -> fmt::Result {
        (self.0)(&mut Page::new(enc))
    }
}

/// The families of one scrape, as a collector writes them.
pub struct Page<'a> {
    enc: DescriptorEncoder<'a>,
}

/// The name a family is registered under: the exposed `name` less the suffix the encoder adds.
fn registered(name: &str, kind: MetricType) -> &str {
    let suffix = match kind {
        MetricType::Counter => "_total",
        MetricType::Info => "_info",
        _ => "",
    };
    debug_assert!(name.ends_with(suffix), "{name} must end in {suffix}");
    name.strip_suffix(suffix).unwrap_or(name)
}

impl<'a> Page<'a> {
    fn new(enc: DescriptorEncoder<'a>) -> Self {
        Page { enc }
    }

    /// A family of one unlabelled sample.
    pub fn single<M: EncodeMetric + TypedMetric>(
        &mut self,
        name: &str,
        help: &str,
        metric: M,
    ) -> fmt::Result {
        metric.encode(self.enc.encode_descriptor(registered(name, M::TYPE), help, None, M::TYPE)?)
    }

    /// A gauge of one unlabelled sample.
    pub fn gauge(&mut self, name: &str, help: &str, value: impl EncodeGaugeValue) -> fmt::Result {
        self.single(name, help, ConstGauge::new(value))
    }

    /// A counter of one unlabelled sample; `name` ends in `_total`.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        self.single(name, help, ConstCounter::new(value))
    }

    /// A family with one label: a sample per `(label value, metric)`.
    pub fn by<M: EncodeMetric + TypedMetric>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        samples: impl IntoIterator<Item = (&'static str, M)>,
    ) -> fmt::Result {
        let mut family = self.enc.encode_descriptor(registered(name, M::TYPE), help, None, M::TYPE)?;
        for (value, metric) in samples {
            metric.encode(family.encode_family(&[(label, value)])?)?;
        }
        Ok(())
    }
}

/// An app-side histogram's snapshot as a metric.
#[derive(Debug)]
pub struct Buckets(pub HistogramSnapshot);

impl TypedMetric for Buckets {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Buckets {
    fn encode(&self, mut enc: MetricEncoder) -> fmt::Result {
        // The snapshot is cumulative; the encoder wants each bucket's own count and adds them up.
        let (h, mut below) = (&self.0, 0);
        let own: Vec<(f64, u64)> = h
            .buckets
            .iter()
            .map(|&(le, upto)| (le, upto.saturating_sub(std::mem::replace(&mut below, upto))))
            .collect();
        enc.encode_histogram::<NoLabelSet>(h.sum, h.count, &own, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// The families every Quloud process exports: build information, start time and uptime at
/// `now_ms`.
pub fn process_families(page: &mut Page, role: &str, started_ms: u64, now_ms: u64) -> fmt::Result {
    let build = Info::new([("version", env!("CARGO_PKG_VERSION")), ("role", role)]);
    page.single("quloud_build_info", "Always 1; labels name the version and the role.", build)?;
    page.gauge(
        "quloud_start_time_seconds",
        "When this process started serving, Unix time in seconds.",
        started_ms as f64 / 1000.0,
    )?;
    page.gauge(
        "quloud_uptime_seconds",
        "Seconds since this process started serving.",
        now_ms.saturating_sub(started_ms) as f64 / 1000.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::metrics::Histogram;
    use std::time::Duration;

    #[test]
    fn counters_and_gauges_render_with_help_and_type() {
        let text = render(|p| {
            p.counter("x_total", "Things.", 3)?;
            p.by(
                "y_bytes",
                "Bytes\nand \\ more.",
                "a",
                [("1", ConstGauge::new(5)), ("q\"\\\n", ConstGauge::new(12))],
            )
        })
        .unwrap();
        assert_eq!(
            text,
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n\
             # HELP y_bytes Bytes\\nand \\\\ more.\n# TYPE y_bytes gauge\n\
             y_bytes{a=\"1\"} 5\ny_bytes{a=\"q\\\"\\\\\\n\"} 12\n"
        );
    }

    #[test]
    fn histograms_have_cumulative_buckets_sum_and_count() {
        let h = Histogram::new(&[0.01, 0.1]);
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_millis(500));
        let snapshot = h.snapshot();
        let text =
            render(move |p| p.by("lat_seconds", "Latency.", "op", [("get", Buckets(snapshot.clone()))]))
                .unwrap();
        assert_eq!(
            text,
            "# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\n\
             lat_seconds_bucket{op=\"get\",le=\"0.01\"} 1\n\
             lat_seconds_bucket{op=\"get\",le=\"0.1\"} 2\n\
             lat_seconds_bucket{op=\"get\",le=\"+Inf\"} 3\n\
             lat_seconds_sum{op=\"get\"} 0.555\n\
             lat_seconds_count{op=\"get\"} 3\n"
        );
    }

    #[test]
    fn numbers_are_written_as_the_format_spells_them() {
        let text = render(|p| {
            p.gauge("a", "A.", 0.0005)?;
            p.gauge("b", "B.", f64::INFINITY)?;
            p.gauge("c", "C.", f64::NAN)?;
            p.gauge("d", "D.", u64::MAX)
        })
        .unwrap();
        for want in ["a 0.0005\n", "b +Inf\n", "c NaN\n", "d 18446744073709551615\n"] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn process_families_name_the_version() {
        let text = render(|p| process_families(p, "node", 1_000, 4_500)).unwrap();
        assert!(text.contains(&format!(
            "# TYPE quloud_build_info gauge\nquloud_build_info{{version=\"{}\",role=\"node\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(text.contains("quloud_start_time_seconds 1.0\n"), "{text}");
        assert!(text.contains("quloud_uptime_seconds 3.5\n"), "{text}");
    }
}
