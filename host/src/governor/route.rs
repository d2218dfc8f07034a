//! Choosing a swarm for a capability: who is eligible, and the weighted
//! draw among them. Pure: the facade gathers the standings, this decides.

use serde::Serialize;

/// One loaded swarm that declares the capability and serves the task
/// type, as it stands now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// The swarm.
    pub swarm_id: String,
    /// Its reputation score (0–1).
    pub score: f64,
    /// The score it needs to be chosen.
    pub selection_threshold: f64,
    /// Whether it is quarantined.
    pub quarantined: bool,
    /// Whether one of its budgets is spent for the period.
    pub budget_spent: bool,
    /// Whether its circuit refuses tasks now (open, or its probe running).
    pub circuit_open: bool,
    /// Its slots not in use now.
    pub free_slots: u32,
}

impl Candidate {
    /// Why it cannot be chosen now, if it cannot.
    pub fn excluded(&self) -> Option<String> {
        if self.quarantined {
            Some("quarantined".to_string())
        } else if self.budget_spent {
            Some("its budget for the period is spent".to_string())
        } else if self.circuit_open {
            Some("its circuit is open".to_string())
        } else if self.score < self.selection_threshold {
            Some(format!(
                "reputation {:.3} is under its selection threshold {:.3}",
                self.score, self.selection_threshold
            ))
        } else {
            None
        }
    }
}

/// The chosen swarm: `candidates[index]`.
///
/// Eligible are the candidates [`Candidate::excluded`] lets through; among
/// them, those with a free slot (all of them if none has one: the task
/// then waits in the chosen swarm's queue); sorted by swarm id, each
/// weighted by its score (equally if all scores are 0); `draw` (in
/// `[0, 1)`) picks the first whose cumulative weight passes `draw` × the
/// total. `Err` lists why each candidate was left out when none is
/// eligible.
pub(crate) fn choose(candidates: &[Candidate], draw: f64) -> Result<usize, Vec<(String, String)>> {
    let eligible: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].excluded().is_none())
        .collect();
    if eligible.is_empty() {
        return Err(candidates
            .iter()
            .filter_map(|c| Some((c.swarm_id.clone(), c.excluded()?)))
            .collect());
    }
    let free: Vec<usize> = eligible
        .iter()
        .copied()
        .filter(|&i| candidates[i].free_slots > 0)
        .collect();
    let mut pool = if free.is_empty() { eligible } else { free };
    pool.sort_by(|&a, &b| candidates[a].swarm_id.cmp(&candidates[b].swarm_id));
    let weight = |i: usize| candidates[i].score.max(0.0);
    let total: f64 = pool.iter().map(|&i| weight(i)).sum();
    let (weight, total): (Box<dyn Fn(usize) -> f64>, f64) = if total > 0.0 {
        (Box::new(weight), total)
    } else {
        (Box::new(|_| 1.0), pool.len() as f64)
    };
    let target = draw.clamp(0.0, 1.0) * total;
    let mut sum = 0.0;
    for &i in &pool {
        sum += weight(i);
        if target < sum {
            return Ok(i);
        }
    }
    Ok(*pool.last().expect("the pool is not empty"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(id: &str, score: f64, free_slots: u32) -> Candidate {
        Candidate {
            swarm_id: id.to_string(),
            score,
            selection_threshold: 0.5,
            quarantined: false,
            budget_spent: false,
            circuit_open: false,
            free_slots,
        }
    }

    #[test]
    fn only_eligible_swarms_are_chosen_and_each_exclusion_says_why() {
        let mut all = vec![
            candidate("a", 0.9, 1),
            candidate("b", 0.4, 1),
            candidate("c", 0.9, 1),
            candidate("d", 0.9, 1),
        ];
        all[2].quarantined = true;
        all[3].budget_spent = true;
        all.push(candidate("e", 0.9, 1));
        all[4].circuit_open = true;
        for i in 0..100 {
            assert_eq!(choose(&all, f64::from(i) / 100.0), Ok(0));
        }
        all[0].quarantined = true;
        let why = choose(&all, 0.5).unwrap_err();
        assert_eq!(why.len(), 5);
        assert!(
            why[1].1.contains("under its selection threshold 0.500"),
            "{why:?}"
        );
        assert_eq!(why[2].1, "quarantined");
        assert!(why[3].1.contains("budget"));
        assert_eq!(why[4].1, "its circuit is open");
    }

    #[test]
    fn the_draw_follows_the_scores_among_those_with_a_free_slot() {
        let all = [
            candidate("b", 0.6, 1),
            candidate("a", 0.9, 1),
            candidate("c", 1.0, 0),
        ];
        // Sorted a (0.9), b (0.6); c has no free slot.
        assert_eq!(choose(&all, 0.0), Ok(1));
        assert_eq!(choose(&all, 0.59), Ok(1));
        assert_eq!(choose(&all, 0.61), Ok(0));
        assert_eq!(choose(&all, 0.999), Ok(0));
        // With no free slot anywhere, every eligible swarm is in the pool.
        let busy = [candidate("a", 0.5, 0), candidate("b", 0.5, 0)];
        assert_eq!(choose(&busy, 0.25), Ok(0));
        assert_eq!(choose(&busy, 0.75), Ok(1));
    }
}
