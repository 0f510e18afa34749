//! A partition's offsets: the read position, the first offset of each open window, and the safe
//! commit point (DESIGN.md "Scaling and failure"). Pure bookkeeping, no Kafka.
//!
//! The committed offset is the smallest first offset among windows not yet finalized and
//! published, or the next offset to read when none is open: whoever owns the partition next
//! re-reads every trade of every window that was not published.

use candles_core::Micros;
use std::collections::BTreeMap;

/// What to do with a record at a given offset.
#[derive(Debug, PartialEq, Eq)]
pub enum Continuity {
    /// The next record, or one after a hole: process it.
    Next,
    /// Already read (delivered again after a seek or a rebalance): skip it.
    Seen,
}

/// One partition's offsets.
#[derive(Debug, Default)]
pub struct Offsets {
    /// Window start → first offset of a trade applied to it, for windows not yet published.
    open: BTreeMap<Micros, i64>,
    /// Next offset to read (last seen + 1).
    next: Option<i64>,
    /// Last offset committed by this owner.
    committed: Option<i64>,
}

impl Offsets {
    /// The next offset to read, once a record has been read.
    pub fn next(&self) -> Option<i64> {
        self.next
    }

    /// How a record at `offset` fits. Kafka serves a partition's records in offset order; a hole
    /// is legitimate (a compacted record, a transaction marker) and is passed at once (DESIGN.md
    /// "Holes in a partition's offsets").
    pub fn continuity(&self, offset: i64) -> Continuity {
        match self.next {
            Some(next) if offset < next => Continuity::Seen,
            _ => Continuity::Next,
        }
    }

    /// The record at `offset` was read (applied, late, skipped or dead-lettered).
    pub fn read(&mut self, offset: i64) {
        self.next = Some(offset + 1);
    }

    /// A trade at `offset` was applied to the window starting at `start`.
    pub fn applied(&mut self, start: Micros, offset: i64) {
        let first = self.open.entry(start).or_insert(offset);
        *first = (*first).min(offset);
    }

    /// Forgets windows starting before `before`: their candles are all published.
    pub fn published_before(&mut self, before: Micros) {
        self.open = self.open.split_off(&before);
    }

    /// The offset below which every trade is in a published candle (or was late, skipped or
    /// dead-lettered).
    pub fn safe(&self) -> Option<i64> {
        self.open.values().min().copied().or(self.next)
    }

    /// The safe offset when it moved past the last commit; it counts as committed from now on.
    pub fn to_commit(&mut self) -> Option<i64> {
        let safe = self.safe()?;
        if self.committed.is_some_and(|c| safe <= c) {
            return None;
        }
        self.committed = Some(safe);
        Some(safe)
    }

    /// The commit returned by [`Offsets::to_commit`] was not sent: the next one retries it.
    pub fn commit_failed(&mut self) {
        self.committed = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_already_read_are_skipped_and_holes_passed() {
        let mut o = Offsets::default();
        assert_eq!(o.continuity(7), Continuity::Next, "first record");
        o.read(6);
        assert_eq!(o.continuity(7), Continuity::Next);
        o.read(7);
        assert_eq!(o.continuity(5), Continuity::Seen);
        assert_eq!(o.continuity(12), Continuity::Next, "a hole");
    }

    #[test]
    fn a_commit_is_sent_once_per_move_and_again_after_a_failure() {
        let mut o = Offsets::default();
        assert_eq!(o.to_commit(), None, "nothing read");
        o.read(4);
        assert_eq!(o.to_commit(), Some(5));
        assert_eq!(o.to_commit(), None, "already committed");
        o.commit_failed();
        assert_eq!(o.to_commit(), Some(5), "retried");
        o.applied(Micros(1_000_000), 5);
        o.read(5);
        assert_eq!(o.to_commit(), None, "the open window holds it at 5");
    }
}
