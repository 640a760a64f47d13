//! Dispatch, event, reload and configuration-cache metrics, kept without a lock on the dispatch
//! path and written in the Prometheus text exposition format (`CoProcessMetrics`,
//! [`Runtime::metrics`](crate::Runtime::metrics)).
//!
//! Every counter lives in one of [`SHARDS`] shards; a thread always writes to its own shard
//! (assigned round-robin at its first dispatch) with relaxed atomic adds, so threads do not
//! contend and nothing is lost when a thread ends. A scrape sums the shards. The label set is
//! bounded: the registered middleware and event handlers, the hook types, a fixed set of
//! outcomes, and one fixed value (`unregistered`) for every name the registry does not have.

use crate::proto::HookType;
use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// The number of shards.
pub const SHARDS: usize = 16;

/// The label value counting names that are not registered.
pub const UNREGISTERED: &str = "unregistered";

/// The dispatch duration histogram: 1 µs to 1 s.
const DISPATCH_DURATION: Histogram = Histogram(&[
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
]);

/// A duration histogram by its upper bounds in nanoseconds, the one definition that both
/// bucketing (integer compares) and the `le` labels (the same bounds in seconds) come from.
/// It keeps [`Histogram::cells`] consecutive counters of a [`Sharded`]: one per bound, one
/// for `+Inf`, then the sum in nanoseconds.
pub struct Histogram(pub &'static [u64]);

impl Histogram {
    /// The counters it keeps.
    pub const fn cells(&self) -> usize {
        self.0.len() + 2
    }

    /// Count one duration in the counters from `base` on of a shard ([`Sharded::shard`]).
    pub fn observe(&self, shard: &[AtomicU64], base: usize, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let bucket = self.0.iter().position(|&b| ns <= b).unwrap_or(self.0.len());
        shard[base + bucket].fetch_add(1, Ordering::Relaxed);
        shard[base + self.0.len() + 1].fetch_add(ns, Ordering::Relaxed);
    }

    /// The `_bucket`, `_sum` and `_count` lines of `family` for one label set (`labels`:
    /// `name="value"` pairs, comma-separated) from the counters at `base`.
    pub fn render(&self, out: &mut String, family: &str, labels: &str, cells: &Sharded, base: usize) {
        let mut cumulative = 0;
        for (b, ns) in self.0.iter().enumerate() {
            cumulative += cells.get(base + b);
            let le = *ns as f64 / 1e9;
            let _ = writeln!(out, "{family}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        cumulative += cells.get(base + self.0.len());
        let seconds = cells.get(base + self.0.len() + 1) as f64 / 1e9;
        let _ = writeln!(out, "{family}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{family}_sum{{{labels}}} {seconds}");
        let _ = writeln!(out, "{family}_count{{{labels}}} {cumulative}");
    }
}

/// How a dispatch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered without a rejection.
    Passed,
    /// Answered with `return_overrides.response_code >= 400`.
    Rejected,
    /// A negative code.
    Error,
}

impl Outcome {
    const ALL: [Outcome; 3] = [Outcome::Passed, Outcome::Rejected, Outcome::Error];

    fn name(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Rejected => "rejected",
            Outcome::Error => "error",
        }
    }
}

/// The hook types as label values, by their enum value; anything else is `Unknown`.
const HOOKS: [HookType; 6] = [
    HookType::Unknown,
    HookType::Pre,
    HookType::Post,
    HookType::PostKeyAuth,
    HookType::CustomKeyCheck,
    HookType::Response,
];

/// The hook label index of a raw hook type.
pub(crate) fn hook_index(raw: i32) -> usize {
    usize::try_from(raw).ok().filter(|&i| i < HOOKS.len()).unwrap_or(0)
}

// Per middleware: dispatch counts by hook and outcome, then the histogram's buckets (the last
// one +Inf) and the sum of durations in nanoseconds (their count is the sum of the buckets).
const COUNTS: usize = HOOKS.len() * 3;
const HIST: usize = COUNTS;
const PER_MIDDLEWARE: usize = HIST + DISPATCH_DURATION.cells();

/// The metrics of one runtime.
pub(crate) struct Metrics {
    clock: quanta::Clock,
    middleware: Vec<(&'static str, &'static [HookType])>,
    handlers: Vec<&'static str>,
    /// Index of the first event cell, the cache cells, the reload cells in a shard.
    events_at: usize,
    cache_at: usize,
    reload_at: usize,
    cells: Sharded,
}

/// `cells` counters in [`SHARDS`] shards: a thread adds to its own shard (assigned round-robin
/// at its first add) with relaxed atomic adds, so adding threads do not contend and nothing is
/// lost when a thread ends; a read sums the shards. For hosts' own metrics too (the gRPC
/// server's).
pub struct Sharded {
    shards: Box<[Box<[AtomicU64]>]>,
}

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

fn shard_index() -> usize {
    SHARD
        .try_with(|s| {
            if s.get() == usize::MAX {
                s.set(NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS);
            }
            s.get()
        })
        .unwrap_or(0)
}

impl Sharded {
    /// `cells` counters at zero.
    pub fn new(cells: usize) -> Self {
        Sharded { shards: (0..SHARDS).map(|_| (0..cells).map(|_| AtomicU64::new(0)).collect()).collect() }
    }

    /// Add `n` to counter `cell`.
    pub fn add(&self, cell: usize, n: u64) {
        self.shards[shard_index()][cell].fetch_add(n, Ordering::Relaxed);
    }

    /// The calling thread's shard, for several adds at once.
    pub fn shard(&self) -> &[AtomicU64] {
        &self.shards[shard_index()]
    }

    /// The sum of counter `cell` over the shards.
    pub fn get(&self, cell: usize) -> u64 {
        self.shards.iter().map(|s| s[cell].load(Ordering::Relaxed)).sum()
    }
}

impl Metrics {
    /// Metrics for these middleware (name and served hooks, in registry order) and event
    /// handlers; index `middleware.len()` / `handlers.len()` is the `unregistered` slot.
    pub(crate) fn new(middleware: Vec<(&'static str, &'static [HookType])>, handlers: Vec<&'static str>) -> Self {
        let events_at = (middleware.len() + 1) * PER_MIDDLEWARE;
        let cache_at = events_at + (handlers.len() + 1) * 2;
        let reload_at = cache_at + 2;
        let cells = Sharded::new(reload_at + 2);
        Metrics { clock: quanta::Clock::new(), middleware, handlers, events_at, cache_at, reload_at, cells }
    }

    /// The slot of an unregistered middleware name.
    pub(crate) fn unregistered_middleware(&self) -> usize {
        self.middleware.len()
    }

    fn add(&self, cell: usize, n: u64) {
        self.cells.add(cell, n);
    }

    fn sum(&self, cell: usize) -> u64 {
        self.cells.get(cell)
    }

    /// A reading of the clock dispatch durations are measured with.
    pub(crate) fn now(&self) -> u64 {
        self.clock.raw()
    }

    /// Count one dispatch of middleware slot `mw` at hook `hook` that started at `start` (a
    /// reading of [`Metrics::now`]).
    pub(crate) fn dispatch_since(&self, mw: usize, hook: usize, outcome: Outcome, start: u64) {
        let ns = self.clock.delta_as_nanos(start, self.clock.raw());
        self.dispatch(mw, hook, outcome, Duration::from_nanos(ns));
    }

    /// Count one dispatch of middleware slot `mw` at hook `hook` and its duration.
    pub(crate) fn dispatch(&self, mw: usize, hook: usize, outcome: Outcome, took: Duration) {
        let base = mw * PER_MIDDLEWARE;
        let outcome = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(2);
        let shard = self.cells.shard();
        shard[base + hook * 3 + outcome].fetch_add(1, Ordering::Relaxed);
        DISPATCH_DURATION.observe(shard, base + HIST, took);
    }

    /// Count one event for handler slot `handler` (`handlers.len()`: unregistered).
    pub(crate) fn event(&self, handler: Option<usize>, ok: bool) {
        let h = handler.unwrap_or(self.handlers.len());
        self.add(self.events_at + h * 2 + usize::from(!ok), 1);
    }

    /// Count a look-up of the per-API configuration cache.
    pub(crate) fn config_cache(&self, hit: bool) {
        self.add(self.cache_at + usize::from(!hit), 1);
    }

    /// Count a reload.
    pub(crate) fn reload(&self, ok: bool) {
        self.add(self.reload_at + usize::from(!ok), 1);
    }

    /// The handler slot of an event handler name.
    pub(crate) fn handler_index(&self, name: &str) -> Option<usize> {
        self.handlers.iter().position(|h| *h == name)
    }

    /// Everything in the Prometheus text exposition format (version 0.0.4).
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        let names = self.middleware.iter().map(|(n, _)| *n).chain([UNREGISTERED]);
        out.push_str(
            "# HELP coprocess_dispatch_total Dispatches by middleware, hook type and outcome (passed, rejected: \
             return_overrides >= 400, error: a negative code).\n# TYPE coprocess_dispatch_total counter\n",
        );
        for (m, name) in names.clone().enumerate() {
            let served = self.middleware.get(m).map_or(&[][..], |(_, hooks)| *hooks);
            for (h, hook) in HOOKS.iter().enumerate() {
                for (o, outcome) in Outcome::ALL.iter().enumerate() {
                    let n = self.sum(m * PER_MIDDLEWARE + h * 3 + o);
                    if n > 0 || served.contains(hook) {
                        let _ = writeln!(
                            out,
                            "coprocess_dispatch_total{{middleware=\"{name}\",hook=\"{}\",outcome=\"{}\"}} {n}",
                            hook.name(),
                            outcome.name()
                        );
                    }
                }
            }
        }
        out.push_str(
            "# HELP coprocess_dispatch_duration_seconds Time a dispatch took, from the bytes received to the \
             answer built.\n# TYPE coprocess_dispatch_duration_seconds histogram\n",
        );
        for (m, name) in names.enumerate() {
            let labels = format!("middleware=\"{name}\"");
            DISPATCH_DURATION.render(
                &mut out,
                "coprocess_dispatch_duration_seconds",
                &labels,
                &self.cells,
                m * PER_MIDDLEWARE + HIST,
            );
        }
        out.push_str(
            "# HELP coprocess_event_total Events by handler and outcome.\n# TYPE coprocess_event_total counter\n",
        );
        for (h, name) in self.handlers.iter().copied().chain([UNREGISTERED]).enumerate() {
            for (o, outcome) in ["ok", "error"].iter().enumerate() {
                let n = self.sum(self.events_at + h * 2 + o);
                let _ = writeln!(out, "coprocess_event_total{{handler=\"{name}\",outcome=\"{outcome}\"}} {n}");
            }
        }
        out.push_str("# HELP coprocess_reload_total Reloads by result.\n# TYPE coprocess_reload_total counter\n");
        for (i, result) in ["ok", "error"].iter().enumerate() {
            let _ = writeln!(out, "coprocess_reload_total{{result=\"{result}\"}} {}", self.sum(self.reload_at + i));
        }
        out.push_str(
            "# HELP coprocess_config_cache_hits_total Dispatches whose per-API configuration was already built on \
             their thread.\n# TYPE coprocess_config_cache_hits_total counter\n",
        );
        let _ = writeln!(out, "coprocess_config_cache_hits_total {}", self.sum(self.cache_at));
        out.push_str(
            "# HELP coprocess_config_cache_misses_total Dispatches that parsed per-API configuration or built an \
             instance from it.\n# TYPE coprocess_config_cache_misses_total counter\n",
        );
        let _ = writeln!(out, "coprocess_config_cache_misses_total {}", self.sum(self.cache_at + 1));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_inclusive_upper_bounds_in_seconds() {
        const H: Histogram = Histogram(&[50_000, 1_000_000_000]);
        let cells = Sharded::new(1 + H.cells());
        for ns in [0, 50_000, 50_001, 1_000_000_000, 1_000_000_001] {
            H.observe(cells.shard(), 1, Duration::from_nanos(ns));
        }
        H.observe(cells.shard(), 1, Duration::from_secs(5));
        assert_eq!(cells.get(0), 0, "nothing before base");
        let mut out = String::new();
        H.render(&mut out, "t_seconds", r#"a="b""#, &cells, 1);
        assert_eq!(
            out,
            "t_seconds_bucket{a=\"b\",le=\"0.00005\"} 2\nt_seconds_bucket{a=\"b\",le=\"1\"} 4\n\
             t_seconds_bucket{a=\"b\",le=\"+Inf\"} 6\nt_seconds_sum{a=\"b\"} 7.000100002\nt_seconds_count{a=\"b\"} 6\n"
        );
    }

    #[test]
    fn counts_sum_across_threads_and_render() {
        let m = Metrics::new(vec![("A", &[HookType::Pre])], vec!["E"]);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..1000u64 {
                        let outcome = if i % 10 == 0 { Outcome::Rejected } else { Outcome::Passed };
                        m.dispatch(0, 1, outcome, Duration::from_nanos(i * 3000));
                    }
                });
            }
        });
        m.dispatch(m.unregistered_middleware(), hook_index(99), Outcome::Error, Duration::from_secs(5));
        m.event(m.handler_index("E"), true);
        m.event(m.handler_index("nope"), false);
        m.config_cache(true);
        m.config_cache(false);
        m.reload(true);
        let text = m.render();
        for line in [
            r#"coprocess_dispatch_total{middleware="A",hook="Pre",outcome="passed"} 3600"#,
            r#"coprocess_dispatch_total{middleware="A",hook="Pre",outcome="rejected"} 400"#,
            r#"coprocess_dispatch_total{middleware="A",hook="Pre",outcome="error"} 0"#,
            r#"coprocess_dispatch_total{middleware="unregistered",hook="Unknown",outcome="error"} 1"#,
            r#"coprocess_dispatch_duration_seconds_bucket{middleware="A",le="0.000001"} 4"#,
            r#"coprocess_dispatch_duration_seconds_bucket{middleware="A",le="+Inf"} 4000"#,
            r#"coprocess_dispatch_duration_seconds_count{middleware="A"} 4000"#,
            r#"coprocess_dispatch_duration_seconds_bucket{middleware="unregistered",le="1"} 0"#,
            r#"coprocess_dispatch_duration_seconds_bucket{middleware="unregistered",le="+Inf"} 1"#,
            r#"coprocess_event_total{handler="E",outcome="ok"} 1"#,
            r#"coprocess_event_total{handler="unregistered",outcome="error"} 1"#,
            "coprocess_reload_total{result=\"ok\"} 1",
            "coprocess_config_cache_hits_total 1",
            "coprocess_config_cache_misses_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains(r#"hook="Post""#), "no series for hooks a middleware does not serve and never saw");
    }
}
