//! The VM slots of this process: TCG keeps a core busy per VM, so at most
//! [`MAX_RUNNING`] run at once and [`super::Vm::start`] waits for a free one.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// VMs run at once in this process at most: TCG keeps a core busy per VM.
pub const MAX_RUNNING: usize = 2;
/// How long [`super::Vm::start`] waits for a free slot.
pub(super) const SLOT_LIMIT: Duration = Duration::from_secs(30 * 60);

/// One of the [`MAX_RUNNING`] VM slots of this process.
#[derive(Debug)]
pub(super) struct Slot;

static RUNNING: Mutex<usize> = Mutex::new(0);
static FREED: Condvar = Condvar::new();

impl Slot {
    pub(super) fn acquire(limit: Duration) -> anyhow::Result<Self> {
        let deadline = Instant::now() + limit;
        let mut n = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= MAX_RUNNING {
            let left = deadline.saturating_duration_since(Instant::now());
            anyhow::ensure!(
                !left.is_zero(),
                "{MAX_RUNNING} VMs still running after {limit:?}: no slot for another"
            );
            n = FREED
                .wait_timeout(n, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *n += 1;
        Ok(Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut n = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        FREED.notify_one();
    }
}
