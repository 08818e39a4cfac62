//! The default nprobe an index was calibrated for at build time (`__metadata__
//! ["calibration"]`, JSON): the smallest nprobe whose measured recall@k on held-out rows
//! (with and without sampled filters) reaches the target. Search uses it when a request
//! names no nprobe; `silica inspect` shows it with the measured curve. The measurement is
//! [`crate::graph::calibrate`].

use serde::{Deserialize, Serialize};

/// One measured point of the recall-vs-nprobe curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationPoint {
    pub nprobe: usize,
    /// Mean recall@k of the unfiltered held-out queries (tie-aware, against the same
    /// index searched exhaustively).
    pub recall: f64,
    /// Mean recall@k of the queries with a sampled filter (`None`: none were sampled).
    pub recall_filtered: Option<f64>,
}

/// The stored calibration of an index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Target recall@k (`silica build --target-recall`, default 0.99).
    pub target_recall: f64,
    /// Depth of the recall (k).
    pub k: usize,
    /// Held-out rows used as queries without a filter / with one sampled filter.
    pub queries: usize,
    pub filtered_queries: usize,
    /// The chosen default: the smallest nprobe whose recall (filtered and unfiltered)
    /// reached the target, or nlist when none below it did.
    pub nprobe: usize,
    /// Whether some nprobe below nlist reached the target.
    pub reached: bool,
    /// Every nprobe measured, ascending.
    pub curve: Vec<CalibrationPoint>,
}
