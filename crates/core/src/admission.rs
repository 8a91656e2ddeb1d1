//! The order in which waiting start requests get a browser.
//!
//! Within a team, requests go in creation order. Across teams, the team
//! served least recently goes next, so one team's batch of a thousand items
//! cannot hold back another team's single session: they interleave. A team
//! at its quota is passed over until one of its browsers ends.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// A queue per team, served round-robin by least recent service.
#[derive(Debug)]
pub struct FairQueue<Team, Item> {
    queues: HashMap<Team, VecDeque<Item>>,
    last_served: HashMap<Team, u64>,
    served: u64,
}

impl<Team: Eq + Hash + Clone, Item> Default for FairQueue<Team, Item> {
    fn default() -> Self {
        Self {
            queues: HashMap::new(),
            last_served: HashMap::new(),
            served: 0,
        }
    }
}

impl<Team: Eq + Hash + Clone, Item> FairQueue<Team, Item> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an item at the end of its team's queue.
    pub fn push(&mut self, team: Team, item: Item) {
        self.queues.entry(team).or_default().push_back(item);
    }

    /// Puts an item back at the head of its team's queue (it was taken but
    /// could not be served).
    pub fn push_front(&mut self, team: Team, item: Item) {
        self.queues.entry(team).or_default().push_front(item);
    }

    /// How many items wait, in all.
    pub fn len(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queues.values().all(VecDeque::is_empty)
    }

    /// How many items of one team wait.
    pub fn team_len(&self, team: &Team) -> usize {
        self.queues.get(team).map_or(0, VecDeque::len)
    }

    /// Takes the next item: from the eligible team served least recently
    /// (teams never served first), the oldest of its items.
    pub fn pop(&mut self, mut eligible: impl FnMut(&Team) -> bool) -> Option<(Team, Item)> {
        let team = self
            .queues
            .iter()
            .filter(|(team, queue)| !queue.is_empty() && eligible(team))
            .min_by_key(|(team, _)| self.last_served.get(*team).copied().unwrap_or(0))
            .map(|(team, _)| team.clone())?;
        let queue = self.queues.get_mut(&team)?;
        let item = queue.pop_front()?;
        if queue.is_empty() {
            self.queues.remove(&team);
        }
        self.served += 1;
        self.last_served.insert(team.clone(), self.served);
        Some((team, item))
    }

    /// Drops every item for which `keep` is false.
    pub fn retain(&mut self, mut keep: impl FnMut(&Item) -> bool) {
        for queue in self.queues.values_mut() {
            queue.retain(&mut keep);
        }
        self.queues.retain(|_, queue| !queue.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_team_keeps_creation_order() {
        let mut queue = FairQueue::new();
        for index in 0..5 {
            queue.push("a", index);
        }
        let order: Vec<i32> = std::iter::from_fn(|| queue.pop(|_| true).map(|(_, item)| item)).collect();
        assert_eq!(order, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_late_single_start_does_not_wait_behind_a_big_batch() {
        let mut queue = FairQueue::new();
        for index in 0..1000 {
            queue.push("big", index);
        }
        assert_eq!(queue.pop(|_| true), Some(("big", 0)));
        assert_eq!(queue.pop(|_| true), Some(("big", 1)));
        queue.push("small", 7);
        assert_eq!(queue.pop(|_| true), Some(("small", 7)));
        assert_eq!(queue.pop(|_| true), Some(("big", 2)));
    }

    #[test]
    fn teams_interleave_and_nothing_is_lost() {
        // For many interleavings of pushes and pops across three teams: every
        // item comes out exactly once, each team's in order, and no team
        // waits more than one round while another is served.
        for seed in 0..200_u64 {
            let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let mut next = || {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33) as usize
            };
            let mut queue = FairQueue::new();
            let teams = ["a", "b", "c"];
            let mut pushed: HashMap<&str, Vec<usize>> = HashMap::new();
            let mut popped: HashMap<&str, Vec<usize>> = HashMap::new();
            let mut counter = 0;
            for _ in 0..60 {
                if next() % 3 != 0 {
                    let team = teams[next() % 3];
                    counter += 1;
                    queue.push(team, counter);
                    pushed.entry(team).or_default().push(counter);
                } else if let Some((team, item)) = queue.pop(|_| true) {
                    popped.entry(team).or_default().push(item);
                }
            }
            let mut streak: Vec<&str> = Vec::new();
            while let Some((team, item)) = queue.pop(|_| true) {
                // While two teams wait, neither is served twice in a row.
                if let Some(previous) = streak.last() {
                    if *previous == team {
                        assert!(teams
                            .iter()
                            .filter(|other| **other != team)
                            .all(|other| queue.team_len(other) == 0));
                    }
                }
                streak.push(team);
                popped.entry(team).or_default().push(item);
            }
            assert_eq!(pushed, popped, "seed {seed}");
        }
    }

    #[test]
    fn teams_at_quota_are_passed_over_and_retain_drops_items() {
        let mut queue = FairQueue::new();
        queue.push("full", 1);
        queue.push("open", 2);
        queue.push("open", 3);
        assert_eq!(queue.pop(|team| *team != "full"), Some(("open", 2)));
        queue.retain(|item| *item != 3);
        assert_eq!(queue.pop(|team| *team != "full"), None);
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.pop(|_| true), Some(("full", 1)));
        assert!(queue.is_empty());
    }
}
