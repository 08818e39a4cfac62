//! Search lanes: the backend handles an [`Executor`](super::Executor) runs concurrent
//! searches on ([`Backend::lane`]). A search takes an idle lane (or opens one when every
//! lane is busy) and gives it back when it is done, so there are as many lanes as searches
//! were ever in flight at once (`silica serve --workers N`: N), each with its own device
//! queue and scratch on CUDA. The pool is shared by every version of an executor made with
//! `with_index`, so updates do not open new streams.

use crate::backend::Backend;
use crate::error::Result;
use std::sync::Mutex;

/// A pool of idle lanes of one device.
pub struct Lanes<B: Backend> {
    idle: Mutex<Vec<B>>,
}

impl<B: Backend> Lanes<B> {
    /// A pool holding `first` (serial searches keep using it).
    pub fn new(first: B) -> Self {
        Lanes { idle: Mutex::new(vec![first]) }
    }

    /// Run `f` on an idle lane, opened from `base` when none is idle. A lane whose search
    /// panicked is not returned (its scratch may be half-written; a new one replaces it).
    pub fn with<T>(&self, base: &B, f: impl FnOnce(&B) -> Result<T>) -> Result<T> {
        let popped = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let lane = match popped {
            Some(l) => l,
            None => base.lane()?,
        };
        let r = f(&lane);
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(lane);
        r
    }

    /// Idle lanes now (all lanes opened so far when no search is running).
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}
