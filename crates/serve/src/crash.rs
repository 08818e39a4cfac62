//! Test-only crash points: `SILICA_TEST_ONLY_CRASH_AT=STEP` makes the server abort (as
//! `kill -9` would stop it: no destructors, no flushes) when it reaches step `STEP` of a
//! write or a compaction, so tests/serve_crash.rs can kill it *inside* each step and check
//! that every acknowledged write survives. Unset (always, outside tests) it costs one
//! cached lookup per step. The steps, in the order a compaction passes them:
//!
//! | step | where |
//! | --- | --- |
//! | `commit-logged` | a group of update batches is in the log (not yet fsynced) |
//! | `commit-synced` | the group is durable, not yet applied or acknowledged |
//! | `compact-written` | the compacted artifact is written and fsynced beside the old one |
//! | `compact-wal-next` | the new log (`.wal.next`, with the tail) is durable |
//! | `compact-renamed` | the new artifact is in place, the old log not yet replaced |
//! | `compact-rotated` | the new log is in place, the tail not yet re-applied |
//! | `compact-done` | the compacted state is published |

use std::sync::OnceLock;

/// Every step name (tests iterate over them).
pub const STEPS: &[&str] =
    &["commit-logged", "commit-synced", "compact-written", "compact-wal-next", "compact-renamed", "compact-rotated", "compact-done"];

/// Abort the process when `SILICA_TEST_ONLY_CRASH_AT` names `step` (see the module docs).
pub fn point(step: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    if AT.get_or_init(|| std::env::var("SILICA_TEST_ONLY_CRASH_AT").ok()).as_deref() == Some(step) {
        eprintln!("SILICA_TEST_ONLY_CRASH_AT={step}: aborting");
        std::process::abort();
    }
}
