//! Time as the engine sees it: a monotonic instant passed in by the caller.
//!
//! `std::time::Instant::now()` panics on wasm32-unknown-unknown, and the engine
//! never reads a clock anyway: the glue passes `performance.now()`, the tests
//! pass virtual time.

use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A point in time, measured from an origin the caller chose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(Duration);

impl Instant {
    /// The caller's origin.
    pub const ZERO: Instant = Instant(Duration::ZERO);

    /// An instant `d` after the origin.
    pub const fn from_duration(d: Duration) -> Self {
        Instant(d)
    }

    /// An instant `ms` milliseconds after the origin; fractions are kept to the
    /// microsecond (as `performance.now()` gives them). Negative or non-finite
    /// input maps to the origin.
    pub fn from_millis_f64(ms: f64) -> Self {
        if ms.is_finite() && ms > 0.0 {
            Instant(Duration::from_micros((ms * 1000.0) as u64))
        } else {
            Instant::ZERO
        }
    }

    /// Time since the origin.
    pub const fn since_origin(self) -> Duration {
        self.0
    }

    /// Milliseconds since the origin, as a float (for JavaScript timers).
    pub fn as_millis_f64(self) -> f64 {
        self.0.as_secs_f64() * 1000.0
    }

    /// `self - earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        self.0 = self.0.saturating_add(d);
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturating: an earlier minus a later instant is zero.
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_since(earlier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_panicking() {
        let a = Instant::from_millis_f64(1500.25);
        let b = a + Duration::from_millis(500);
        assert_eq!(b - a, Duration::from_millis(500));
        assert_eq!(a - b, Duration::ZERO);
        assert_eq!(Instant::from_millis_f64(f64::NAN), Instant::ZERO);
        assert_eq!(Instant::from_millis_f64(-3.0), Instant::ZERO);
    }
}
