//! Payment requests kept in memory only while they can still be paid.
//!
//! The writer remembers which requests are paid and which were cancelled, and the read model
//! which entry paid each, to answer without asking storage. Past a request's deadline every
//! payment of it is refused as expired anyway, so nothing needs to be remembered after it:
//! [`RequestsByDeadline`] forgets a request once its deadline has passed, and memory follows
//! the requests still payable (each payable for at most 30 days), not every request ever
//! made. Whoever needs to know about an older request asks storage.
//!
//! A request kept without a deadline (a payment naming a request the service has no row for,
//! so no deadline is known) is kept for ever: nothing refuses a late payment of it, so only
//! memory can. The service's own payments always name a stored request, with its deadline.

use std::collections::BTreeSet;

use foldhash::HashMap;
use ledger::PaymentRequestId;

/// Payment requests, each with a value, kept until their deadline (ms) has passed.
#[derive(Debug, Clone)]
pub(crate) struct RequestsByDeadline<V> {
    kept: HashMap<PaymentRequestId, (Option<i64>, V)>,
    /// The dated requests of `kept`, soonest deadline first, so forgetting is cheap.
    by_deadline: BTreeSet<(i64, PaymentRequestId)>,
    /// Every request whose deadline is before this has been forgotten (or was never kept):
    /// the latest time given to [`RequestsByDeadline::forget_past`].
    forgotten_before: i64,
}

impl<V> Default for RequestsByDeadline<V> {
    fn default() -> Self {
        Self {
            kept: HashMap::default(),
            by_deadline: BTreeSet::new(),
            forgotten_before: i64::MIN,
        }
    }
}

impl<V> RequestsByDeadline<V> {
    /// Keeps `id` with `value` until `deadline` (ms; `None`: for ever). If `id` is kept
    /// already, the value is replaced and the later deadline wins. A deadline that has been
    /// forgotten past already is not kept: false.
    pub(crate) fn keep(&mut self, id: PaymentRequestId, deadline: Option<i64>, value: V) -> bool {
        let deadline = match (self.kept.get(&id), deadline) {
            (Some(&(None, _)), _) | (_, None) => None,
            (Some(&(Some(kept), _)), Some(new)) => Some(kept.max(new)),
            (None, Some(new)) => Some(new),
        };
        if deadline.is_some_and(|d| self.may_have_forgotten(d)) {
            return false;
        }
        if let Some((Some(before), _)) = self.kept.insert(id, (deadline, value)) {
            self.by_deadline.remove(&(before, id));
        }
        if let Some(deadline) = deadline {
            self.by_deadline.insert((deadline, id));
        }
        assert!(self.by_deadline.len() <= self.kept.len());
        true
    }

    /// The value kept for `id`, if it is kept.
    pub(crate) fn get(&self, id: PaymentRequestId) -> Option<&V> {
        self.kept.get(&id).map(|(_, value)| value)
    }

    /// Whether `id` is kept.
    pub(crate) fn contains(&self, id: PaymentRequestId) -> bool {
        self.kept.contains_key(&id)
    }

    /// Forgets the requests whose deadline is before `now_ms` (at its deadline a request may
    /// still be paid, so it is kept). Returns how many were forgotten.
    pub(crate) fn forget_past(&mut self, now_ms: i64) -> usize {
        // A clock that stepped back does not bring forgotten requests back into scope.
        self.forgotten_before = self.forgotten_before.max(now_ms);
        let mut forgotten = 0usize;
        while let Some(&(deadline, id)) = self.by_deadline.first()
            && deadline < self.forgotten_before
        {
            self.by_deadline.pop_first();
            self.kept.remove(&id);
            forgotten = forgotten.saturating_add(1);
        }
        assert!(self.by_deadline.len() <= self.kept.len());
        forgotten
    }

    /// Whether a request with this deadline may have been forgotten: then its absence says
    /// nothing, and storage must be asked. A request whose deadline is at or after the
    /// latest forgetting is kept if it was ever kept.
    pub(crate) fn may_have_forgotten(&self, deadline: i64) -> bool {
        deadline < self.forgotten_before
    }

    /// How many requests are kept.
    pub(crate) fn len(&self) -> usize {
        self.kept.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_forgotten_once_past_their_deadline() {
        let mut kept = RequestsByDeadline::default();
        let (early, late) = (PaymentRequestId::new(), PaymentRequestId::new());
        assert!(kept.keep(early, Some(1_000), 1));
        assert!(kept.keep(late, Some(5_000), 2));
        assert_eq!((kept.get(early), kept.get(late)), (Some(&1), Some(&2)));
        // At its deadline a request may still be paid, so it is still kept.
        assert_eq!(kept.forget_past(1_000), 0);
        assert!(kept.contains(early));
        assert_eq!(kept.forget_past(1_001), 1);
        assert!(!kept.contains(early) && kept.contains(late));
        assert_eq!(kept.forget_past(5_001), 1);
        assert_eq!(kept.len(), 0);
    }

    #[test]
    fn keeping_again_keeps_the_later_deadline_and_the_forgotten_past_is_not_kept() {
        let mut kept = RequestsByDeadline::default();
        let id = PaymentRequestId::new();
        kept.keep(id, Some(5_000), ());
        kept.keep(id, Some(2_000), ());
        kept.forget_past(3_000);
        assert!(
            kept.contains(id),
            "the earlier deadline did not replace the later"
        );
        kept.keep(id, Some(9_000), ());
        kept.forget_past(6_000);
        assert!(kept.contains(id));
        assert_eq!(kept.len(), 1);
        let stale = PaymentRequestId::new();
        assert!(!kept.keep(stale, Some(1_000), ()));
        assert!(!kept.contains(stale));
        assert!(kept.may_have_forgotten(5_999) && !kept.may_have_forgotten(6_000));
    }

    #[test]
    fn a_request_without_a_deadline_is_kept_for_ever() {
        let mut kept = RequestsByDeadline::default();
        let (undated, dated) = (PaymentRequestId::new(), PaymentRequestId::new());
        kept.keep(undated, None, ());
        kept.keep(dated, Some(1_000), ());
        // A deadline learnt later does not shorten "for ever".
        kept.keep(undated, Some(500), ());
        kept.forget_past(i64::MAX);
        assert!(kept.contains(undated) && !kept.contains(dated));
        assert_eq!(kept.len(), 1);
    }

    #[test]
    fn a_clock_stepping_back_does_not_bring_the_forgotten_back_into_scope() {
        let mut kept = RequestsByDeadline::default();
        let id = PaymentRequestId::new();
        kept.keep(id, Some(2_000), ());
        kept.forget_past(3_000);
        kept.forget_past(1_000);
        assert!(!kept.contains(id));
        assert!(
            kept.may_have_forgotten(2_000),
            "its absence still says nothing"
        );
        assert!(!kept.keep(id, Some(2_000), ()));
    }

    #[test]
    fn memory_follows_the_requests_still_payable() {
        let mut kept = RequestsByDeadline::default();
        // A year of requests, one a minute, each payable for 15 minutes, forgetting before
        // each: what is kept is the last quarter of an hour's, however long it runs.
        let minute = 60_000i64;
        for at in 0..(365 * 24 * 60) {
            let now = at * minute;
            kept.forget_past(now);
            kept.keep(PaymentRequestId::new(), Some(now + 15 * minute), ());
            assert!(kept.len() <= 16, "{} kept at minute {at}", kept.len());
        }
    }
}
