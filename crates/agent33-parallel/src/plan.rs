//! Plans: validation of declared dependencies and dependency levels.
//!
//! Pure functions over a task list, used before anything runs (the CLI turns
//! a [`PlanError`] into a usage error; dry runs group tasks by [`levels`]).
//! The dispatcher does not need them: it settles unknown dependencies and
//! cycles on its own if a caller runs an invalid plan anyway.

use std::collections::HashMap;

use crate::task::{AgentTask, TaskId};

/// Why a set of tasks cannot run as declared.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Two tasks share an id.
    #[error("duplicate task id `{id}` (tasks {first} and {second} in input order)")]
    DuplicateId {
        /// The id.
        id: TaskId,
        /// 1-based position of its first use.
        first: usize,
        /// 1-based position of its second use.
        second: usize,
    },
    /// A task depends on an id no task has.
    #[error("task `{task}` depends on unknown task `{dependency}`")]
    UnknownDependency {
        /// The task declaring the dependency.
        task: TaskId,
        /// The unknown id.
        dependency: TaskId,
    },
    /// A task depends on itself.
    #[error("task `{task}` depends on itself")]
    SelfDependency {
        /// The task.
        task: TaskId,
    },
    /// Tasks depend on each other in a circle.
    #[error("dependency cycle: {}", format_cycle(.0))]
    Cycle(Vec<TaskId>),
}

impl PlanError {
    /// The task the error is about: the depending task, or a cycle's first.
    #[must_use]
    pub fn task(&self) -> &TaskId {
        match self {
            Self::DuplicateId { id, .. } => id,
            Self::UnknownDependency { task, .. } | Self::SelfDependency { task } => task,
            Self::Cycle(ids) => &ids[0],
        }
    }
}

fn format_cycle(ids: &[TaskId]) -> String {
    let mut parts: Vec<&str> = ids.iter().map(TaskId::as_str).collect();
    if let Some(first) = ids.first() {
        parts.push(first.as_str());
    }
    parts.join(" → ")
}

/// Index of every task's dependencies, by position.
fn edges(tasks: &[AgentTask]) -> Result<Vec<Vec<usize>>, PlanError> {
    let mut index: HashMap<&TaskId, usize> = HashMap::with_capacity(tasks.len());
    for (i, t) in tasks.iter().enumerate() {
        if let Some(&first) = index.get(&t.id) {
            return Err(PlanError::DuplicateId {
                id: t.id.clone(),
                first: first + 1,
                second: i + 1,
            });
        }
        index.insert(&t.id, i);
    }
    tasks
        .iter()
        .map(|t| {
            let mut deps = Vec::with_capacity(t.depends_on.len());
            for d in &t.depends_on {
                if *d == t.id {
                    return Err(PlanError::SelfDependency { task: t.id.clone() });
                }
                let &j = index.get(d).ok_or_else(|| PlanError::UnknownDependency {
                    task: t.id.clone(),
                    dependency: d.clone(),
                })?;
                if !deps.contains(&j) {
                    deps.push(j);
                }
            }
            Ok(deps)
        })
        .collect()
}

/// Checks ids and dependencies: unique ids, no unknown ids, no
/// self-dependency, no cycle. A cycle is shown from its task earliest in
/// input order, following `depends_on` (`a → b → a`: a depends on b).
///
/// # Errors
///
/// The first problem found, in that order.
///
/// # Examples
///
/// ```
/// use agent33_parallel::{AgentTask, plan};
/// let tasks = vec![
///     AgentTask::new("x", "1").with_id("a").depends_on(["b"]),
///     AgentTask::new("x", "2").with_id("b").depends_on(["a"]),
/// ];
/// let err = plan::validate(&tasks).unwrap_err();
/// assert_eq!(err.to_string(), "dependency cycle: a → b → a");
/// ```
pub fn validate(tasks: &[AgentTask]) -> Result<(), PlanError> {
    levels(tasks).map(|_| ())
}

/// Groups task positions by dependency level: level 0 has no dependencies,
/// level k depends on something at level k−1 and nothing deeper. Positions
/// keep input order within a level.
///
/// # Errors
///
/// As [`validate`].
pub fn levels(tasks: &[AgentTask]) -> Result<Vec<Vec<usize>>, PlanError> {
    let deps = edges(tasks)?;
    let n = tasks.len();
    let mut remaining: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut level_of = vec![usize::MAX; n];
    let mut frontier: Vec<usize> = (0..n).filter(|&i| remaining[i] == 0).collect();
    let mut out = Vec::new();
    let mut placed = 0;
    while !frontier.is_empty() {
        frontier.sort_unstable();
        let mut next = Vec::new();
        for &i in &frontier {
            level_of[i] = out.len();
            for &j in &dependents[i] {
                remaining[j] -= 1;
                if remaining[j] == 0 {
                    next.push(j);
                }
            }
        }
        placed += frontier.len();
        out.push(std::mem::replace(&mut frontier, next));
    }
    if placed < n {
        return Err(PlanError::Cycle(find_cycle(tasks, &deps, &level_of)));
    }
    Ok(out)
}

/// Finds the cycle through the earliest task that lies on one. Tasks left
/// unplaced by the level pass are on a cycle or depend on one.
fn find_cycle(tasks: &[AgentTask], deps: &[Vec<usize>], level_of: &[usize]) -> Vec<TaskId> {
    let mut stuck: Vec<bool> = level_of.iter().map(|&l| l == usize::MAX).collect();
    // A task is on a cycle if it can reach itself through stuck tasks. One
    // that cannot is on no cycle, so later searches may skip it.
    for start in 0..tasks.len() {
        if !stuck[start] {
            continue;
        }
        // Iterative depth-first search in declared dependency order,
        // remembering the path so the cycle can be read back.
        let mut visited = vec![false; tasks.len()];
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        visited[start] = true;
        while let Some(top) = stack.last_mut() {
            let (node, next) = *top;
            if let Some(&dep) = deps[node].get(next) {
                top.1 += 1;
                if dep == start {
                    return stack.iter().map(|&(i, _)| tasks[i].id.clone()).collect();
                }
                if stuck[dep] && !visited[dep] {
                    visited[dep] = true;
                    stack.push((dep, 0));
                }
            } else {
                stack.pop();
            }
        }
        stuck[start] = false;
    }
    unreachable!("unplaced tasks always include a cycle")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: &str, deps: &[&str]) -> AgentTask {
        AgentTask::new("x", id)
            .with_id(id)
            .depends_on(deps.iter().copied())
    }

    #[test]
    fn levels_group_by_longest_dependency_chain() {
        let tasks = [
            t("a", &[]),
            t("b", &["a"]),
            t("c", &[]),
            t("d", &["b", "c"]),
        ];
        assert_eq!(levels(&tasks).unwrap(), vec![vec![0, 2], vec![1], vec![3]]);
    }

    #[test]
    fn errors_name_the_ids() {
        let cases: Vec<(Vec<AgentTask>, &str)> = vec![
            (
                vec![t("a", &[]), t("a", &[])],
                "duplicate task id `a` (tasks 1 and 2 in input order)",
            ),
            (
                vec![t("a", &["zz"])],
                "task `a` depends on unknown task `zz`",
            ),
            (vec![t("a", &["a"])], "task `a` depends on itself"),
            (
                vec![t("c", &["a"]), t("a", &["b"]), t("b", &["c"])],
                "dependency cycle: c → a → b → c",
            ),
            (
                vec![t("x", &["b"]), t("a", &["b"]), t("b", &["a"])],
                "dependency cycle: a → b → a",
            ),
        ];
        for (tasks, want) in cases {
            assert_eq!(validate(&tasks).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn a_long_chain_does_not_overflow_the_stack() {
        let n = 50_000;
        let mut tasks: Vec<AgentTask> = (0..n)
            .map(|i| t(&format!("t{i}"), &[&format!("t{}", i + 1)]))
            .collect();
        tasks.push(t(&format!("t{n}"), &["t0"]));
        let err = validate(&tasks).unwrap_err();
        assert!(matches!(err, PlanError::Cycle(ids) if ids.len() == n + 1));
    }
}
