//! Progress of long steps: an indicatif bar (items/s, ETA) when stderr is a terminal,
//! else an `info` log line every [`LOG_EVERY`] (`RUST_LOG=info` shows them). The bar is
//! the `progress` feature (on by default); without it, only the log lines.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Seconds between log lines when stderr is not a terminal.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// One step's progress; `inc` may be called from many threads.
pub struct Progress {
    name: String,
    unit: &'static str,
    len: u64,
    pb: Option<Bar>,
    log: bool,
    done: AtomicU64,
    start: Instant,
    last: Mutex<Instant>,
}

/// A visible progress report for `len` items of `unit` (bar on a terminal, logs otherwise).
pub fn bar(name: &str, len: u64, unit: &'static str) -> Progress {
    Progress::new(true, name, len, unit)
}

impl Progress {
    /// `show = false`: nothing is drawn or logged.
    pub fn new(show: bool, name: &str, len: u64, unit: &'static str) -> Progress {
        let tty = show && std::io::stderr().is_terminal() && cfg!(feature = "progress");
        let tmpl = format!("{{msg:<18}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} {{per_sec}} ETA {{eta}}");
        let pb = if tty { terminal_bar(len, &tmpl, name) } else { None };
        let now = Instant::now();
        Progress { name: name.into(), unit, len, pb, log: show && !tty, done: AtomicU64::new(0), start: now, last: Mutex::new(now) }
    }

    /// `k` more items done.
    pub fn inc(&self, k: u64) {
        let done = self.done.fetch_add(k, Ordering::Relaxed) + k;
        if let Some(pb) = &self.pb {
            pb.inc(k);
        } else if self.log {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= LOG_EVERY {
                *last = Instant::now();
                let secs = self.start.elapsed().as_secs_f64();
                let rate = done as f64 / secs.max(1e-9);
                let eta = (self.len.saturating_sub(done)) as f64 / rate.max(1e-9);
                log::info!("{}: {done}/{} {} ({rate:.1}/s, ETA {eta:.0}s)", self.name, self.len, self.unit);
            }
        }
    }

    /// Remove the bar; log the step's total time.
    pub fn finish(&self) {
        if let Some(pb) = &self.pb {
            pb.finish_and_clear();
        }
        if self.pb.is_some() || self.log {
            log::info!("{}: {} {} in {:.2}s", self.name, self.done.load(Ordering::Relaxed), self.unit, self.start.elapsed().as_secs_f64());
        }
    }
}

/// Peak resident set size of this process in bytes (Linux `VmHWM`; `None` elsewhere).
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// Hand memory freed by a finished phase back to the OS (glibc `malloc_trim`; a no-op
/// elsewhere). The build's attribute table is millions of small heap strings spread over
/// rayon threads' malloc arenas; freed, they stay resident (counted in RSS) until trimmed.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and shrinks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `"RSS 812 MB (anon 801, file 11), peak 1013 MB"` of this process (Linux; empty
/// elsewhere): appended to the build's phase lines so a log shows which phase holds the peak.
pub fn rss_note() -> String {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else { return String::new() };
    let mb = |key: &str| {
        s.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()).map(|kb| kb / 1024)
    };
    match (mb("VmRSS:"), mb("RssAnon:"), mb("RssFile:"), mb("VmHWM:")) {
        (Some(r), Some(a), Some(f), Some(h)) => format!("RSS {r} MB (anon {a}, file {f}), peak {h} MB"),
        _ => String::new(),
    }
}

/// A terminal progress bar (indicatif, `progress` feature).
#[cfg(feature = "progress")]
pub(crate) type Bar = indicatif::ProgressBar;

/// Without the `progress` feature no bar exists (the type has no values).
#[cfg(not(feature = "progress"))]
pub(crate) enum Bar {}

#[cfg(not(feature = "progress"))]
impl Bar {
    pub(crate) fn inc(&self, _: u64) {
        match *self {}
    }
    pub(crate) fn finish_and_clear(&self) {
        match *self {}
    }
}

/// A bar of `len` items drawn on stderr with indicatif `template` and label `msg`
/// (`None` without the `progress` feature).
pub(crate) fn terminal_bar(len: u64, template: &str, msg: &str) -> Option<Bar> {
    #[cfg(feature = "progress")]
    {
        use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
        let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        pb.set_style(ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "));
        pb.set_message(msg.to_string());
        Some(pb)
    }
    #[cfg(not(feature = "progress"))]
    {
        let _ = (len, template, msg);
        None
    }
}
