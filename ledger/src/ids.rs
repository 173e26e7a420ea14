//! Typed identifiers: a UUID per kind of thing, so an account id can never be passed where
//! an entry id is expected. Ids made here are UUIDv7 (time-ordered, so B-tree inserts append).

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

thread_local! {
    /// Per thread: the last millisecond used and the 74-bit counter after it.
    static V7_STATE: Cell<(u64, u128)> = const { Cell::new((0, 0)) };
}

/// The low 74 bits: the "random" part of a v7 UUID (80 bits minus version and variant).
const V7_RANDOM_MASK: u128 = (1 << 74) - 1;

/// A new UUIDv7. `Uuid::now_v7` asks the OS for randomness on every call (a system call per
/// id on the commit path); here each thread seeds a 74-bit counter from one OS-random UUID
/// and increments it (RFC 9562 §6.2, method 2), re-seeding whenever the millisecond changes.
/// Ids stay unique (the seeds are random and the counters never repeat within a
/// millisecond) and time-ordered; they are not secrets, so being sequential is fine.
pub fn new_v7() -> Uuid {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    V7_STATE.with(|state| {
        let (last_ms, counter) = state.get();
        let (ms, counter) = if now_ms > last_ms {
            (now_ms, Uuid::now_v7().as_u128() & V7_RANDOM_MASK)
        } else {
            // Same millisecond, or the clock stepped back: keep counting from the last one.
            (last_ms, counter.wrapping_add(1) & V7_RANDOM_MASK)
        };
        state.set((ms, counter));
        let bytes = counter.to_be_bytes();
        let mut random = [0u8; 10];
        random.copy_from_slice(&bytes[6..]);
        uuid::Builder::from_unix_timestamp_millis(ms, &random).into_uuid()
    })
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered (v7) id.
            pub fn new() -> Self {
                Self(new_v7())
            }

            /// The id's 16 bytes, as stored.
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }

            /// Rebuilds an id from its 16 stored bytes.
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(Uuid::from_bytes(bytes))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(text).map(Self)
            }
        }
    };
}

typed_id!(
    /// Identifies an [`crate::Account`].
    AccountId
);
typed_id!(
    /// Identifies a committed [`crate::JournalEntry`].
    EntryId
);
typed_id!(
    /// Identifies an [`crate::Intent`]; it is the idempotency key of the state change.
    IntentId
);
typed_id!(
    /// Identifies a participant: a person or an organisation that owns accounts.
    ParticipantId
);
typed_id!(
    /// Identifies a payment request: a merchant asking for a stated amount, which a payment
    /// intent names so that it settles that request and no other.
    PaymentRequestId
);
typed_id!(
    /// Identifies a municipal programme (minimum income, emergency aid).
    ProgrammeId
);
typed_id!(
    /// Identifies a household enrolled in a programme.
    HouseholdId
);
typed_id!(
    /// Identifies a disbursement run of a programme.
    RunId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v7_ids_are_unique_ordered_and_well_formed() {
        let ids: Vec<Uuid> = (0..10_000).map(|_| new_v7()).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "time-ordered and strictly increasing"
        );
        assert!(ids.iter().all(|id| id.get_version_num() == 7));
        assert!(
            ids.iter()
                .all(|id| id.get_variant() == uuid::Variant::RFC4122)
        );
        let other_thread: Vec<Uuid> =
            std::thread::spawn(|| (0..10_000).map(|_| new_v7()).collect())
                .join()
                .unwrap();
        let all: std::collections::HashSet<Uuid> =
            ids.iter().chain(&other_thread).copied().collect();
        assert_eq!(all.len(), 20_000);
    }
}
