//! Which collector collects which producer (L4): rendezvous (highest random weight) hashing, with operator pins.
//!
//! Each (producer, collector) pair gets a score from a stable hash (XXH3-64, identical on every build and
//! platform, unlike `std`'s hasher); a producer goes to the eligible collector with the highest score. When a
//! collector joins, only the producers for which it now scores highest move to it; when one leaves, only its own
//! producers move. A producer pinned to an eligible collector goes there; a pin to a collector that is not
//! eligible is ignored until it is, so that the producer is still collected meanwhile.
//!
//! Everything here is pure: no I/O, no clock.

use roster::domain::{CollectorId, ProducerId};
use xxhash_rust::xxh3::xxh3_64;

/// The score of `collector` for `producer`; ties (astronomically rare) are broken by collector id.
pub(crate) fn score(producer: ProducerId, collector: CollectorId) -> u64 {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(producer.0.as_bytes());
    key[16..].copy_from_slice(collector.0.as_bytes());
    xxh3_64(&key)
}

/// The collector `producer` goes to, given the eligible collectors (in any order) and its pin; `None` when no
/// collector is eligible.
pub(crate) fn assign(
    producer: ProducerId,
    pinned: Option<CollectorId>,
    eligible: &[CollectorId],
) -> Option<CollectorId> {
    if let Some(pin) = pinned.filter(|pin| eligible.contains(pin)) {
        return Some(pin);
    }
    eligible.iter().copied().max_by_key(|&collector| (score(producer, collector), collector))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;

    fn ids<T>(seeds: &[u128], make: fn(Uuid) -> T) -> Vec<T> {
        seeds.iter().map(|&s| make(Uuid::from_u128(s))).collect()
    }

    fn collectors(seeds: &BTreeSet<u128>) -> Vec<CollectorId> {
        seeds.iter().map(|&s| CollectorId(Uuid::from_u128(s))).collect()
    }

    proptest! {
        #[test]
        fn assignment_is_deterministic_and_order_independent(
            producers in prop::collection::vec(any::<u128>(), 1..50),
            seeds in prop::collection::btree_set(any::<u128>(), 1..10),
        ) {
            let eligible = collectors(&seeds);
            let mut reversed = eligible.clone();
            reversed.reverse();
            for p in ids(&producers, ProducerId) {
                let a = assign(p, None, &eligible);
                prop_assert!(a.is_some());
                prop_assert_eq!(a, assign(p, None, &eligible));
                prop_assert_eq!(a, assign(p, None, &reversed));
            }
        }

        #[test]
        fn a_joining_collector_takes_only_what_it_wins(
            producers in prop::collection::vec(any::<u128>(), 1..200),
            seeds in prop::collection::btree_set(any::<u128>(), 1..10),
            joiner in any::<u128>(),
        ) {
            prop_assume!(!seeds.contains(&joiner));
            let before = collectors(&seeds);
            let joiner = CollectorId(Uuid::from_u128(joiner));
            let mut after = before.clone();
            after.push(joiner);
            for p in ids(&producers, ProducerId) {
                let (old, new) = (assign(p, None, &before), assign(p, None, &after));
                // Either nothing moved, or the producer moved to the joiner.
                prop_assert!(old == new || new == Some(joiner), "{p:?} moved from {old:?} to {new:?}");
            }
        }

        #[test]
        fn a_leaving_collector_releases_only_its_own(
            producers in prop::collection::vec(any::<u128>(), 1..200),
            seeds in prop::collection::btree_set(any::<u128>(), 2..10),
            leaver_index in any::<prop::sample::Index>(),
        ) {
            let before = collectors(&seeds);
            let leaver = before[leaver_index.index(before.len())];
            let after: Vec<_> = before.iter().copied().filter(|c| *c != leaver).collect();
            for p in ids(&producers, ProducerId) {
                let (old, new) = (assign(p, None, &before), assign(p, None, &after));
                prop_assert!(new != Some(leaver));
                prop_assert!(old == new || old == Some(leaver), "{p:?} moved from {old:?} to {new:?}");
            }
        }

        #[test]
        fn a_pin_wins_only_while_its_collector_is_eligible(
            producer in any::<u128>(),
            seeds in prop::collection::btree_set(any::<u128>(), 1..10),
            pin in any::<u128>(),
        ) {
            let eligible = collectors(&seeds);
            let producer = ProducerId(Uuid::from_u128(producer));
            let pin = CollectorId(Uuid::from_u128(pin));
            let got = assign(producer, Some(pin), &eligible);
            if eligible.contains(&pin) {
                prop_assert_eq!(got, Some(pin));
            } else {
                prop_assert_eq!(got, assign(producer, None, &eligible));
            }
        }
    }

    #[test]
    fn no_eligible_collector_means_unassigned() {
        assert_eq!(assign(ProducerId::new_random(), None, &[]), None);
        assert_eq!(assign(ProducerId::new_random(), Some(CollectorId::new_random()), &[]), None);
    }

    #[test]
    fn load_is_spread_evenly() {
        let eligible: Vec<_> = (0..10).map(|_| CollectorId::new_random()).collect();
        let mut counts = std::collections::HashMap::new();
        for _ in 0..10_000 {
            *counts.entry(assign(ProducerId::new_random(), None, &eligible)).or_insert(0u32) += 1;
        }
        // 1 000 expected each; a fair hash stays well within ±25 %.
        assert!(counts.values().all(|&n| (750..=1250).contains(&n)), "{counts:?}");
    }
}
