//! A swarm's budgets per period (`[budget]`): CPU-seconds, network bytes
//! and tasks, spent by all its tasks together and renewed when the next
//! period starts. Periods are aligned to Unix time (multiples of
//! `period_seconds` since the epoch), so the renewal a refusal names is the
//! same on every worker and after a restart.
//!
//! Data flow: admission asks [`PeriodBudget::check`] before a task waits
//! for a slot and takes one task with [`PeriodBudget::take_task`] once it
//! has one; the epoch callback charges the CPU time each run used
//! ([`PeriodBudget::charge_cpu`]) and stops the task when it is spent; the
//! HTTP proxy charges the bytes of each exchange before they pass
//! ([`PeriodBudget::charge_network`]). A budget spent refuses new tasks
//! until it renews.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Which of a swarm's budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetKind {
    /// `budget.cpu_seconds`.
    CpuSeconds,
    /// `budget.network_bytes`.
    NetworkBytes,
    /// `budget.tasks`.
    Tasks,
}

impl BudgetKind {
    /// Its name in errors, events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetKind::CpuSeconds => "cpu_seconds",
            BudgetKind::NetworkBytes => "network_bytes",
            BudgetKind::Tasks => "tasks",
        }
    }
}

/// A budget that is spent: which, its limit in its own unit, and when it
/// renews.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spent {
    pub(crate) kind: BudgetKind,
    pub(crate) limit: f64,
    pub(crate) renews_at: SystemTime,
}

impl Spent {
    /// How long until it renews, from `now` (at least a second: what a
    /// `Retry-After` says).
    pub(crate) fn renews_in(&self, now: SystemTime) -> Duration {
        self.renews_at
            .duration_since(now)
            .unwrap_or_default()
            .max(Duration::from_secs(1))
    }
}

/// One budget's state now, as `/v1/swarms/{id}` and the metrics show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetView {
    /// Which.
    pub budget: BudgetKind,
    /// Spent in this period, in its unit (seconds, bytes, tasks).
    pub spent: f64,
    /// The limit per period.
    pub limit: f64,
    /// When the period ends, in milliseconds since the Unix epoch.
    pub renews_at_ms: u64,
}

/// What a period has spent.
#[derive(Debug, Default)]
struct Period {
    /// Which period: seconds since the epoch over the period's length.
    index: u64,
    cpu_nanos: u64,
    network_bytes: u64,
    tasks: u64,
}

/// A swarm's budgets and what its current period has spent.
#[derive(Debug)]
pub(crate) struct PeriodBudget {
    period_seconds: u64,
    cpu_nanos: Option<u64>,
    network_bytes: Option<u64>,
    tasks: Option<u64>,
    /// Kept across a replacement with the same period: a new version does
    /// not get a fresh budget.
    spent: Arc<Mutex<Period>>,
}

impl PeriodBudget {
    /// The budgets of `budget`, or `None` when it sets none; what
    /// `previous` spent carries on when its period is the same length.
    pub(crate) fn new(
        budget: &crate::contract::Budget,
        previous: Option<&PeriodBudget>,
    ) -> Option<Self> {
        if budget.is_unset() {
            return None;
        }
        let period_seconds = budget.period_seconds.max(1);
        let spent = match previous {
            Some(p) if p.period_seconds == period_seconds => p.spent.clone(),
            _ => Arc::default(),
        };
        Some(Self {
            period_seconds,
            cpu_nanos: budget
                .cpu_seconds
                .map(|s| (s * 1e9).min(u64::MAX as f64) as u64),
            network_bytes: budget.network_bytes,
            tasks: budget.tasks,
            spent,
        })
    }

    /// The period of `now`: its index and when it ends.
    fn period(&self, now: SystemTime) -> (u64, SystemTime) {
        let seconds = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let index = seconds / self.period_seconds;
        let ends = UNIX_EPOCH
            + Duration::from_secs(index.saturating_add(1).saturating_mul(self.period_seconds));
        (index, ends)
    }

    /// What the current period spent, started afresh when a new one began.
    fn current(&self, now: SystemTime) -> (std::sync::MutexGuard<'_, Period>, SystemTime) {
        let (index, ends) = self.period(now);
        let mut spent = self.spent.lock().expect("budget lock");
        if spent.index != index {
            *spent = Period {
                index,
                ..Period::default()
            };
        }
        (spent, ends)
    }

    /// The first budget spent in `spent`, if any.
    fn exhausted(&self, spent: &Period, renews_at: SystemTime) -> Option<Spent> {
        let over = |used: u64, limit: Option<u64>| limit.filter(|l| used >= *l);
        let (kind, limit) = if let Some(l) = over(spent.cpu_nanos, self.cpu_nanos) {
            (BudgetKind::CpuSeconds, l as f64 / 1e9)
        } else if let Some(l) = over(spent.network_bytes, self.network_bytes) {
            (BudgetKind::NetworkBytes, l as f64)
        } else if let Some(l) = over(spent.tasks, self.tasks) {
            (BudgetKind::Tasks, l as f64)
        } else {
            return None;
        };
        Some(Spent {
            kind,
            limit,
            renews_at,
        })
    }

    /// Whether a new task may start: no budget is spent.
    pub(crate) fn check(&self, now: SystemTime) -> Result<(), Spent> {
        let (spent, renews_at) = self.current(now);
        self.exhausted(&spent, renews_at).map_or(Ok(()), Err)
    }

    /// Count a task that got its slot, unless a budget is spent (the task
    /// budget included).
    pub(crate) fn take_task(&self, now: SystemTime) -> Result<(), Spent> {
        let (mut spent, renews_at) = self.current(now);
        if let Some(exhausted) = self.exhausted(&spent, renews_at) {
            return Err(exhausted);
        }
        spent.tasks += 1;
        Ok(())
    }

    /// Charge `ran` of CPU time; `Err` once the CPU budget is spent (the
    /// task that spends it is stopped).
    pub(crate) fn charge_cpu(&self, ran: Duration, now: SystemTime) -> Result<(), Spent> {
        let (mut spent, renews_at) = self.current(now);
        spent.cpu_nanos = spent
            .cpu_nanos
            .saturating_add(u64::try_from(ran.as_nanos()).unwrap_or(u64::MAX));
        match (self.cpu_nanos, self.exhausted(&spent, renews_at)) {
            (Some(limit), Some(exhausted)) if spent.cpu_nanos >= limit => Err(exhausted),
            _ => Ok(()),
        }
    }

    /// Charge `bytes` about to pass through the HTTP proxy; refused (and
    /// not charged) when they would pass the network budget.
    pub(crate) fn charge_network(&self, bytes: u64, now: SystemTime) -> Result<(), Spent> {
        let (mut spent, renews_at) = self.current(now);
        if let Some(limit) = self.network_bytes
            && spent.network_bytes.saturating_add(bytes) > limit
        {
            return Err(Spent {
                kind: BudgetKind::NetworkBytes,
                limit: limit as f64,
                renews_at,
            });
        }
        spent.network_bytes = spent.network_bytes.saturating_add(bytes);
        Ok(())
    }

    /// Each budget set, with what this period spent of it.
    pub(crate) fn view(&self, now: SystemTime) -> Vec<BudgetView> {
        let (spent, renews_at) = self.current(now);
        let renews_at_ms = renews_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        [
            (BudgetKind::CpuSeconds, spent.cpu_nanos, self.cpu_nanos, 1e9),
            (
                BudgetKind::NetworkBytes,
                spent.network_bytes,
                self.network_bytes,
                1.0,
            ),
            (BudgetKind::Tasks, spent.tasks, self.tasks, 1.0),
        ]
        .into_iter()
        .filter_map(|(budget, used, limit, unit)| {
            limit.map(|limit| BudgetView {
                budget,
                spent: used as f64 / unit,
                limit: limit as f64 / unit,
                renews_at_ms,
            })
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Budget;

    fn budget(cpu: Option<f64>, bytes: Option<u64>, tasks: Option<u64>) -> PeriodBudget {
        PeriodBudget::new(
            &Budget {
                period_seconds: 60,
                cpu_seconds: cpu,
                network_bytes: bytes,
                tasks,
            },
            None,
        )
        .unwrap()
    }

    /// Each budget refuses once spent, names when it renews (the period's
    /// end, aligned to the epoch), and is whole again in the next period.
    #[test]
    fn budgets_refuse_once_spent_and_renew_with_the_period() {
        let t0 = UNIX_EPOCH + Duration::from_secs(6_000 + 10);
        let b = budget(Some(1.0), Some(1000), Some(2));
        assert!(b.take_task(t0).is_ok() && b.take_task(t0).is_ok());
        let spent = b.take_task(t0).unwrap_err();
        assert_eq!(spent.kind, BudgetKind::Tasks);
        assert_eq!(spent.renews_at, UNIX_EPOCH + Duration::from_secs(6_060));
        assert_eq!(spent.renews_in(t0), Duration::from_secs(50));
        // The next period: whole again.
        let t1 = t0 + Duration::from_secs(50);
        assert!(b.check(t1).is_ok());
        assert!(b.charge_cpu(Duration::from_millis(600), t1).is_ok());
        let spent = b.charge_cpu(Duration::from_millis(600), t1).unwrap_err();
        assert_eq!((spent.kind, spent.limit), (BudgetKind::CpuSeconds, 1.0));
        assert_eq!(b.check(t1).unwrap_err().kind, BudgetKind::CpuSeconds);
        let t2 = t1 + Duration::from_secs(60);
        assert!(b.charge_network(900, t2).is_ok());
        // Bytes that would pass the budget are refused and not charged.
        assert_eq!(
            b.charge_network(200, t2).unwrap_err().kind,
            BudgetKind::NetworkBytes
        );
        assert!(b.charge_network(100, t2).is_ok());
        let view = b.view(t2);
        assert_eq!(view.len(), 3);
        assert_eq!(view[1].spent, 1000.0);
        assert_eq!(view[0].renews_at_ms, 6_180_000);
        assert!(PeriodBudget::new(&Budget::default(), None).is_none());
    }
}
