//! The system's wall clock behind the `Clock` port.

use crate::ports::clock::Clock;

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        crate::domain::unix_ms(std::time::SystemTime::now())
    }
}
