//! Prometheus metrics (text exposition format 0.0.4), kept with atomics: request counts by
//! route and status, latency histograms by route, executor batch sizes, and index sizes
//! read from the current snapshot when scraped.

use super::state::Stats;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// A histogram with fixed upper bounds (cumulative buckets are computed when rendered).
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum in micro-units (µs for seconds, 1e-6 for counts) to stay integral and atomic.
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
    pub fn observe(&self, v: f64) {
        let i = self.bounds.iter().position(|&b| v <= b).unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((v * 1e6).round().max(0.0) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }
    /// Per-bucket (non-cumulative) counts; the last is `+Inf`.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        self.bounds.iter().copied().chain([f64::INFINITY]).zip(self.counts.iter().map(|c| c.load(Relaxed))).collect()
    }
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cum = 0;
        for (b, c) in self.buckets() {
            cum += c;
            let le = if b.is_infinite() { "+Inf".to_string() } else { format!("{b}") };
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cum}");
        }
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum_micros.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count.load(Relaxed));
    }
}

const LATENCY: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0];

/// Steps of the write path, each with its own histogram (`silica_write_phase_seconds`):
/// where an acknowledgement's latency and the writer's time go.
///
/// * `prepare`: a batch's log record encoded and its vectors assigned to lists, on the
///   request's blocking thread ([`super::state::Incoming::prepare`]);
/// * `queue`: a prepared batch waiting for the writer (until its group's commit starts);
/// * `validate`, `wal_append`, `wal_sync` (one fsync per group), `apply`: the commit;
/// * `publish_main`: the main index's changed copy made resident (deletes, replacements);
/// * `publish_lists` / `publish_tail`: a fresh part laid out and made resident on the
///   writer (the tail at every publish that changed it; the lists only without
///   background folds, or when a fold was voided);
/// * `publish`: the whole publish (the above + the snapshot swap);
/// * `fold_build` / `fold_upload`: a background fold of the tail into the fresh lists
///   (off the writer); `fold_install`: installing it on the writer (writes wait);
/// * `compaction_pause`: the part of a compaction during which writes waited.
pub const WRITE_PHASES: &[&str] = &[
    "prepare",
    "queue",
    "validate",
    "wal_append",
    "wal_sync",
    "apply",
    "publish_main",
    "publish_lists",
    "publish_tail",
    "publish",
    "fold_build",
    "fold_upload",
    "fold_install",
    "compaction_pause",
];

/// Per-phase histograms of the write path (see [`WRITE_PHASES`]).
pub struct WritePhases(Vec<Histogram>);

impl Default for WritePhases {
    fn default() -> Self {
        WritePhases(WRITE_PHASES.iter().map(|_| Histogram::new(LATENCY)).collect())
    }
}

impl WritePhases {
    /// Record `seconds` for `phase` (one of [`WRITE_PHASES`]; others are ignored).
    pub fn observe(&self, phase: &str, seconds: f64) {
        if let Some(i) = WRITE_PHASES.iter().position(|p| *p == phase) {
            self.0[i].observe(seconds);
        }
    }
    /// `(count, sum seconds)` of `phase`.
    pub fn total(&self, phase: &str) -> (u64, f64) {
        WRITE_PHASES
            .iter()
            .position(|p| *p == phase)
            .map_or((0, 0.0), |i| (self.0[i].count.load(Relaxed), self.0[i].sum_micros.load(Relaxed) as f64 / 1e6))
    }
    fn render(&self, o: &mut String) {
        let name = "silica_write_phase_seconds";
        let _ = writeln!(
            o,
            "# HELP {name} Seconds per step of the write path (see silica::serve::metrics::WRITE_PHASES).\n# TYPE {name} histogram"
        );
        for (p, h) in WRITE_PHASES.iter().zip(&self.0) {
            h.render(o, name, &format!("phase=\"{p}\""));
        }
    }
}

/// Routes with their own latency histogram.
pub const ROUTES: &[&str] = &["search", "upsert", "delete", "patch", "get_item", "compact", "stats", "healthz", "metrics", "other"];

/// All server metrics.
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency: Vec<Histogram>,
    /// Queries per executor call.
    pub batch_queries: Histogram,
    /// Requests per executor call.
    pub batch_requests: Histogram,
    /// Seconds a worker spends on one batch (filters, executor call, answers handed back).
    pub batch_seconds: Histogram,
    /// Seconds from a search's arrival in the queue to its batch starting.
    pub queue_seconds: Histogram,
    /// Update batches per log fsync (group commit).
    pub commit_batches: Histogram,
    /// Log append + fsync + publish time per group.
    pub commit_seconds: Histogram,
    pub compaction_seconds: Histogram,
    /// Part of each compaction during which writes waited.
    pub compaction_pause_seconds: Histogram,
    /// Steps of the write path (shared with the store: [`super::state::Store::set_phases`]).
    pub write_phases: std::sync::Arc<WritePhases>,
    /// Queries accepted and not yet taken by a batch (the bounded queue's fill, `--max-queue`).
    pub queued: AtomicUsize,
    /// Searches refused with 503 because the queue was full.
    pub rejected_full: AtomicU64,
    /// Searches answered 504 because their deadline passed before they were searched.
    pub rejected_deadline: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            latency: ROUTES.iter().map(|_| Histogram::new(LATENCY)).collect(),
            batch_queries: Histogram::new(SIZES),
            batch_requests: Histogram::new(SIZES),
            batch_seconds: Histogram::new(LATENCY),
            queue_seconds: Histogram::new(LATENCY),
            commit_batches: Histogram::new(SIZES),
            commit_seconds: Histogram::new(LATENCY),
            compaction_seconds: Histogram::new(LATENCY),
            compaction_pause_seconds: Histogram::new(LATENCY),
            write_phases: Default::default(),
            queued: AtomicUsize::new(0),
            rejected_full: AtomicU64::new(0),
            rejected_deadline: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Record one finished request.
    pub fn request(&self, route: &'static str, status: u16, seconds: f64) {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry((route, status)).or_default() += 1;
        let i = ROUTES.iter().position(|r| *r == route).unwrap_or(ROUTES.len() - 1);
        self.latency[i].observe(seconds);
    }

    /// The exposition text, with index sizes from `stats`.
    pub fn render(&self, stats: &Stats) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "# HELP silica_requests_total HTTP requests by route and status.\n# TYPE silica_requests_total counter");
        for ((route, status), n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(o, "silica_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        let _ = writeln!(
            o,
            "# HELP silica_request_duration_seconds Request latency by route.\n# TYPE silica_request_duration_seconds histogram"
        );
        for (route, h) in ROUTES.iter().zip(&self.latency) {
            h.render(&mut o, "silica_request_duration_seconds", &format!("route=\"{route}\""));
        }
        let _ = writeln!(
            o,
            "# HELP silica_search_rejected_total Searches not run: queue full (503) or deadline passed (504).\n# TYPE silica_search_rejected_total counter"
        );
        let _ = writeln!(o, "silica_search_rejected_total{{reason=\"queue_full\"}} {}", self.rejected_full.load(Relaxed));
        let _ = writeln!(o, "silica_search_rejected_total{{reason=\"deadline\"}} {}", self.rejected_deadline.load(Relaxed));
        let _ = writeln!(
            o,
            "# HELP silica_search_queue_queries Queries waiting for a batch.\n# TYPE silica_search_queue_queries gauge\nsilica_search_queue_queries {}",
            self.queued.load(Relaxed)
        );
        let hists = [
            ("silica_batch_queries", "Queries per executor call (dynamic batching).", &self.batch_queries),
            ("silica_batch_requests", "Search requests per executor call.", &self.batch_requests),
            ("silica_batch_seconds", "Worker seconds per search batch (filters, executor, answers).", &self.batch_seconds),
            ("silica_queue_seconds", "Seconds from a search's arrival in the queue to its batch starting.", &self.queue_seconds),
            ("silica_commit_batches", "Update batches per write-ahead log fsync.", &self.commit_batches),
            ("silica_commit_seconds", "Log append + fsync + publish time per commit.", &self.commit_seconds),
            ("silica_compaction_seconds", "Compaction time (fold, write, switch).", &self.compaction_seconds),
            ("silica_compaction_pause_seconds", "Part of each compaction during which writes waited.", &self.compaction_pause_seconds),
        ];
        for (name, help, h) in hists {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} histogram");
            h.render(&mut o, name, "");
        }
        self.write_phases.render(&mut o);
        let gauges = [
            ("silica_index_version", "Update batches applied since load.", stats.version as f64),
            ("silica_main_rows", "Rows of the main index.", stats.main_rows as f64),
            ("silica_main_live_rows", "Live rows of the main index.", stats.main_live as f64),
            ("silica_fresh_rows", "Rows of the fresh segment.", stats.fresh_rows as f64),
            ("silica_fresh_live_rows", "Live rows of the fresh segment.", stats.fresh_live as f64),
            ("silica_items", "Live items.", stats.items as f64),
            ("silica_appended_values", "Attribute values added since the artifact was written.", stats.appended_values as f64),
            ("silica_wal_bytes", "Write-ahead log size.", stats.wal_bytes as f64),
            ("silica_compactions", "Compactions since start.", stats.compactions as f64),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        o
    }
}

/// `silica_replica_batches_total` / `silica_replica_queries_total` counters and the
/// `silica_replica_in_flight` gauge per replica (`--replicas`; nothing without replicas).
pub fn render_replicas(o: &mut String, replicas: &[silica_core::graph::replicas::ReplicaStats]) {
    if replicas.is_empty() {
        return;
    }
    let series = [
        ("silica_replica_batches_total", "Search batches run by each replica.", "counter"),
        ("silica_replica_queries_total", "Queries in those batches.", "counter"),
        ("silica_replica_in_flight", "Batches running on each replica now.", "gauge"),
    ];
    for (i, (name, help, ty)) in series.iter().enumerate() {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {ty}");
        for (r, st) in replicas.iter().enumerate() {
            let v = [st.batches, st.queries, st.in_flight][i];
            let _ = writeln!(o, "{name}{{replica=\"{r}\",devices=\"{}\"}} {v}", st.devices);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_in_text() {
        let h = Histogram::new(&[1.0, 4.0]);
        for v in [0.5, 1.0, 3.0, 9.0] {
            h.observe(v);
        }
        assert_eq!(h.buckets(), vec![(1.0, 2), (4.0, 1), (f64::INFINITY, 1)]);
        let mut s = String::new();
        h.render(&mut s, "x", "");
        assert!(s.contains("x_bucket{le=\"1\"} 2\nx_bucket{le=\"4\"} 3\nx_bucket{le=\"+Inf\"} 4\nx_sum 13.5\nx_count 4\n"), "{s}");
        let m = Metrics::default();
        m.request("search", 200, 0.002);
        m.request("search", 400, 0.001);
        let t = m.render(&Stats::default());
        assert!(t.contains("silica_requests_total{route=\"search\",status=\"400\"} 1"));
        assert!(t.contains("silica_request_duration_seconds_count{route=\"search\"} 2"));
        assert!(t.contains("silica_fresh_rows 0"));
        m.rejected_full.fetch_add(2, Relaxed);
        let t = m.render(&Stats::default());
        assert!(t.contains("silica_search_rejected_total{reason=\"queue_full\"} 2"), "{t}");
        assert!(t.contains("silica_search_rejected_total{reason=\"deadline\"} 0"), "{t}");
        m.write_phases.observe("wal_sync", 0.003);
        m.write_phases.observe("no such phase", 1.0);
        assert_eq!(m.write_phases.total("wal_sync"), (1, 0.003));
        let t = m.render(&Stats::default());
        assert!(t.contains("silica_write_phase_seconds_count{phase=\"wal_sync\"} 1"), "{t}");
        assert!(t.contains("silica_write_phase_seconds_count{phase=\"queue\"} 0"), "{t}");
    }
}
