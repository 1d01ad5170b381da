//! Prometheus metrics: request counts and latency histograms per route.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::catalog::health::{HealthBoard, HealthStatus};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

/// The metrics of one server. Each `Application` has its own registry, so several
/// can run in one process (tests) without sharing counters.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    endpoint_up: Family<EndpointLabels, Gauge>,
    endpoint_failures: Family<EndpointLabels, Gauge>,
    usage_pending: Gauge,
    usage_dropped: Counter,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("gatehouse");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            // 100 µs to ~26 s, doubling.
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.0001, 2.0, 19,
            ))
        });
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route",
            latency.clone(),
        );
        let endpoint_up = Family::<EndpointLabels, Gauge>::default();
        registry.register(
            "endpoint_up",
            "1 if the endpoint's last answer was a success, 0 if it failed (as this instance saw it; absent until called or probed)",
            endpoint_up.clone(),
        );
        let endpoint_failures = Family::<EndpointLabels, Gauge>::default();
        registry.register(
            "endpoint_consecutive_failures",
            "The endpoint's failures in a row, as this instance saw them",
            endpoint_failures.clone(),
        );
        let usage_pending = Gauge::default();
        registry.register(
            "usage_logs_pending",
            "Request logs waiting for the next usage flush (about a second's worth when the writer keeps up)",
            usage_pending.clone(),
        );
        let usage_dropped = Counter::default();
        registry.register(
            "usage_logs_dropped",
            "Request logs dropped because the usage buffer was full (storage down or slower than the calls)",
            usage_dropped.clone(),
        );
        Arc::new(Metrics {
            usage_pending,
            usage_dropped,
            registry,
            requests,
            latency,
            endpoint_up,
            endpoint_failures,
        })
    }

    /// Reads the endpoints' health into the gauges (called before rendering;
    /// deleted endpoints disappear).
    pub fn set_endpoint_health(&self, board: &HealthBoard) {
        self.endpoint_up.clear();
        self.endpoint_failures.clear();
        for (id, health) in board.all() {
            if health.status == HealthStatus::Unknown {
                continue;
            }
            let labels = EndpointLabels {
                endpoint: id.to_string(),
            };
            let up = i64::from(health.status == HealthStatus::Healthy);
            self.endpoint_up.get_or_create(&labels).set(up);
            self.endpoint_failures
                .get_or_create(&labels)
                .set(i64::from(health.consecutive_failures));
        }
    }

    /// Reads the usage writer's backlog into the metrics (called before
    /// rendering): logs waiting, and the total dropped since the start.
    pub fn set_usage(&self, pending: usize, dropped: u64) {
        self.usage_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        let counted = self.usage_dropped.get();
        self.usage_dropped.inc_by(dropped.saturating_sub(counted));
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Metrics {
    /// Counts and times one request by its route template (never the raw
    /// path, which would make one series per ID).
    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.latency
            .get_or_create(&RouteLabels {
                method: method.to_string(),
                route: route.to_string(),
            })
            .observe(elapsed.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route: route.to_string(),
                status,
            })
            .inc();
    }
}
