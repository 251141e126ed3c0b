//! Message ids for one device's outgoing frames: monotonic, wrapping, shareable.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::frame::MessageId;

/// Hands out message ids 1, 2, 3, ... for one device, wrapping from `u32::MAX` (or the
/// source's own upper bound) back to 1 (0 is never issued, so it can mean "no id" in logs and
/// stores).
///
/// It takes `&self`, so one source can be shared between tasks behind an `Arc`.
///
/// ```
/// use x_protocol::MessageIdSource;
///
/// let ids = MessageIdSource::new();
/// let (a, b) = (ids.next_u32(), ids.next_u32());
/// assert_eq!((a, b), (1, 2));
/// assert_ne!(a, b);
/// ```
#[derive(Debug)]
pub struct MessageIdSource {
    next: AtomicU32,
    last: u32,
}

impl MessageIdSource {
    /// A source whose first id is 1.
    pub fn new() -> Self {
        Self::starting_at(1)
    }

    /// A source whose first id is `first` (0 is taken as 1). Useful to resume after a
    /// restart, or to start at a random point so ids of two boots rarely collide.
    pub fn starting_at(first: u32) -> Self {
        Self::within(first, u32::MAX)
    }

    /// A source whose first id is `first` and whose ids never exceed `last` (after `last`
    /// comes 1 again), leaving the ids above `last` to another allocator: the device
    /// runtime derives the ids of stored reports from their outbox sequence numbers there.
    /// `first` is brought into `1..=last`; a `last` of 0 is taken as 1.
    pub fn within(first: u32, last: u32) -> Self {
        let last = last.max(1);
        let first = if first == 0 || first > last { 1 } else { first };
        Self {
            next: AtomicU32::new(first),
            last,
        }
    }

    /// The next id.
    pub fn next_id(&self) -> MessageId {
        MessageId::from(self.next_u32())
    }

    /// The next id as a number.
    pub fn next_u32(&self) -> u32 {
        let mut current = self.next.load(Ordering::Relaxed);
        loop {
            let following = if current >= self.last { 1 } else { current + 1 };
            match self.next.compare_exchange_weak(
                current,
                following,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return current,
                Err(actual) => current = actual,
            }
        }
    }
}

impl Default for MessageIdSource {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_up_and_wraps_past_zero() {
        let ids = MessageIdSource::starting_at(u32::MAX - 1);
        let got: Vec<u32> = (0..4).map(|_| ids.next_u32()).collect();
        assert_eq!(got, [u32::MAX - 1, u32::MAX, 1, 2]);
        assert_eq!(MessageIdSource::new().next_id(), MessageId::Number(1));
    }

    #[test]
    fn a_bounded_source_wraps_below_its_bound() {
        let ids = MessageIdSource::within(9, 10);
        let got: Vec<u32> = (0..4).map(|_| ids.next_u32()).collect();
        assert_eq!(got, [9, 10, 1, 2]);
        assert_eq!(MessageIdSource::within(50, 10).next_u32(), 1);
        assert_eq!(MessageIdSource::within(0, 0).next_u32(), 1);
    }

    #[test]
    fn concurrent_ids_are_unique() {
        let ids = std::sync::Arc::new(MessageIdSource::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let ids = ids.clone();
                std::thread::spawn(move || (0..1000).map(|_| ids.next_u32()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u32> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 4000);
    }
}
