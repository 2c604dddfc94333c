//! Timers as an enum indexing a small table; the next timeout is the minimum.
//!
//! In the style of quinn-proto's `connection/timer.rs`: each owner (a session,
//! a peer) keeps one [`TimerTable`] over its own timer enum, arms and stops
//! entries as its state changes, and reports the earliest deadline. Nothing
//! here reads a clock: deadlines are computed from the `now` passed in.

use crate::engine::time::Instant;

/// A timer enum usable as an index into a [`TimerTable`].
pub trait TimerKind: Copy + 'static {
    /// Every variant, in index order.
    const ALL: &'static [Self];
    /// The variant's slot.
    fn index(self) -> usize;
}

/// Most timers one table holds (checked at compile time by `timer_enum!`).
pub const MAX_TIMERS: usize = 8;

/// One optional deadline per timer of kind `T`.
#[derive(Clone, Debug)]
pub struct TimerTable<T: TimerKind> {
    deadlines: [Option<Instant>; MAX_TIMERS],
    _kind: std::marker::PhantomData<T>,
}

impl<T: TimerKind> Default for TimerTable<T> {
    fn default() -> Self {
        TimerTable {
            deadlines: [None; MAX_TIMERS],
            _kind: std::marker::PhantomData,
        }
    }
}

impl<T: TimerKind> TimerTable<T> {
    /// Arms `timer` to fire at `at`, replacing any earlier deadline.
    pub fn set(&mut self, timer: T, at: Instant) {
        self.deadlines[timer.index()] = Some(at);
    }

    /// Arms `timer` at `at` unless it is already armed for an earlier time.
    pub fn set_earliest(&mut self, timer: T, at: Instant) {
        let slot = &mut self.deadlines[timer.index()];
        if slot.is_none_or(|d| at < d) {
            *slot = Some(at);
        }
    }

    /// The deadline of `timer`, if armed.
    pub fn get(&self, timer: T) -> Option<Instant> {
        self.deadlines[timer.index()]
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: T) {
        self.deadlines[timer.index()] = None;
    }

    /// Whether `timer` is armed and its deadline is at or before `now`.
    pub fn is_expired(&self, timer: T, now: Instant) -> bool {
        self.get(timer).is_some_and(|d| d <= now)
    }

    /// The earliest armed deadline.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Disarms and returns every timer that expired at or before `now`, in
    /// index order.
    pub fn take_expired(&mut self, now: Instant) -> impl Iterator<Item = T> {
        let mut fired = Vec::new();
        for &timer in T::ALL {
            if self.is_expired(timer, now) {
                self.stop(timer);
                fired.push(timer);
            }
        }
        fired.into_iter()
    }
}

/// Declares a timer enum and its [`TimerKind`] impl in one go.
macro_rules! timer_enum {
    ($(#[$doc:meta])* $vis:vis enum $name:ident { $($(#[$vdoc:meta])* $variant:ident,)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name { $($(#[$vdoc])* $variant,)+ }

        const _: () = assert!(
            [$($name::$variant,)+].len() <= $crate::engine::timer::MAX_TIMERS,
            "too many timers for one table"
        );

        impl $crate::engine::timer::TimerKind for $name {
            const ALL: &'static [Self] = &[$($name::$variant,)+];
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}
pub(crate) use timer_enum;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    timer_enum! {
        enum Probe {
            A,
            B,
            C,
        }
    }

    fn at(ms: u64) -> Instant {
        Instant::from_duration(Duration::from_millis(ms))
    }

    #[test]
    fn next_timeout_is_the_earliest_armed_deadline() {
        let mut t = TimerTable::<Probe>::default();
        assert_eq!(t.next_timeout(), None);
        t.set(Probe::A, at(300));
        t.set(Probe::C, at(100));
        assert_eq!(t.next_timeout(), Some(at(100)));
        t.stop(Probe::C);
        assert_eq!(t.next_timeout(), Some(at(300)));
    }

    #[test]
    fn set_earliest_never_postpones_a_deadline() {
        let mut t = TimerTable::<Probe>::default();
        t.set_earliest(Probe::B, at(50));
        t.set_earliest(Probe::B, at(80));
        assert_eq!(t.get(Probe::B), Some(at(50)));
        t.set_earliest(Probe::B, at(20));
        assert_eq!(t.get(Probe::B), Some(at(20)));
    }

    #[test]
    fn take_expired_fires_each_due_timer_once() {
        let mut t = TimerTable::<Probe>::default();
        t.set(Probe::A, at(10));
        t.set(Probe::B, at(20));
        t.set(Probe::C, at(30));
        let fired: Vec<_> = t.take_expired(at(20)).collect();
        assert_eq!(fired, vec![Probe::A, Probe::B]);
        assert_eq!(t.take_expired(at(20)).count(), 0);
        assert_eq!(t.next_timeout(), Some(at(30)));
    }
}
