//! The system's wall clock behind the `Clock` port, which a test can shift for the whole process
//! (a storage node with a wrong clock: `quloud node --test-clock-offset`).

use crate::ports::clock::Clock;
use std::sync::atomic::{AtomicI64, Ordering};

/// The shift of this process's clock, ms (0 unless set for testing).
static PROCESS_SHIFT_MS: AtomicI64 = AtomicI64::new(0);

/// The system's wall clock (shifted by [`SystemClock::shift_process`], if set).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl SystemClock {
    /// Makes this process's clock run `shift_ms` ahead of the system's (negative: behind). For
    /// testing only: a storage node with a wrong clock.
    pub fn shift_process(shift_ms: i64) {
        PROCESS_SHIFT_MS.store(shift_ms, Ordering::Relaxed);
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        let shift = PROCESS_SHIFT_MS.load(Ordering::Relaxed);
        crate::domain::unix_ms(std::time::SystemTime::now()).saturating_add_signed(shift)
    }
}
