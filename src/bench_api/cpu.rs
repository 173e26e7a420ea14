//! CPU time of this process (user + system), in total and by kind of thread, from Linux's
//! `/proc/self/stat` and `/proc/self/task/*/stat`. Elsewhere the figures read as zero.

use std::collections::BTreeMap;
use std::time::Duration;

/// Clock ticks per second in `/proc` figures: Linux's `USER_HZ`, fixed at 100 in its ABI.
const TICKS_PER_SECOND: u64 = 100;

/// CPU time used, in total and by thread kind (the thread name without its number).
#[derive(Debug, Default, Clone)]
pub struct CpuUse {
    /// The whole process, including threads that have exited.
    pub total: Duration,
    /// Live threads by kind, e.g. `tokio-runtime-w`, `coledger-verify`, `sqlx-sqlite-wor`
    /// (Linux truncates thread names to 15 bytes).
    pub by_kind: BTreeMap<String, Duration>,
}

impl CpuUse {
    /// The CPU used so far.
    pub fn now() -> Self {
        let total = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| ticks(&stat))
            .map_or(Duration::ZERO, to_duration);
        let mut by_kind = BTreeMap::new();
        for (name, used) in threads() {
            *by_kind.entry(kind(&name)).or_default() += used;
        }
        Self { total, by_kind }
    }

    /// What was used between `earlier` and this.
    pub fn since(&self, earlier: &CpuUse) -> CpuUse {
        let by_kind = self
            .by_kind
            .iter()
            .map(|(kind, used)| {
                let before = earlier.by_kind.get(kind).copied().unwrap_or_default();
                (kind.clone(), used.saturating_sub(before))
            })
            .collect();
        CpuUse {
            total: self.total.saturating_sub(earlier.total),
            by_kind,
        }
    }
}

/// Each live thread's name and CPU time.
fn threads() -> Vec<(String, Duration)> {
    let Ok(entries) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let stat = std::fs::read_to_string(entry.ok()?.path().join("stat")).ok()?;
            let name = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?.to_owned();
            Some((name, to_duration(ticks(&stat)?)))
        })
        .collect()
}

/// utime + stime from a `stat` line. The name in parentheses may hold spaces, so fields are
/// counted from the last `)`: state is field 3, utime 14 and stime 15.
fn ticks(stat: &str) -> Option<u64> {
    let mut fields = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    user.checked_add(system)
}

fn to_duration(ticks: u64) -> Duration {
    Duration::from_millis(ticks.saturating_mul(1000 / TICKS_PER_SECOND))
}

/// `coledger-verify-1` → `coledger-verify`: threads of one pool add up.
fn kind(name: &str) -> String {
    name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
        .to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        let stat = "42 (tokio runtime) S 1 42 42 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 3";
        assert_eq!(ticks(stat), Some(281));
        assert_eq!(kind("coledger-verify-12"), "coledger-verify");
    }
}
