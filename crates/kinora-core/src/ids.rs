use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A task id: one UUIDv7 per task. Dialects render it differently (`task_<hex>` in the unified
/// dialect, hyphenated elsewhere); [`TaskId::parse_any`] accepts every rendering.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(Uuid);

impl TaskId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// The unified dialect's rendering: `task_` followed by 32 lowercase hex digits.
    pub fn to_unified(&self) -> String {
        format!("task_{}", self.0.simple())
    }

    /// Accepts the hyphenated UUID or the unified `task_<hex>` form.
    pub fn parse_any(text: &str) -> Option<Self> {
        let raw = text.strip_prefix("task_").unwrap_or(text);
        Uuid::parse_str(raw).ok().map(Self)
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskId({})", self.0.hyphenated())
    }
}

impl FromStr for TaskId {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_any(s).ok_or_else(|| crate::Error::invalid(format!("`{s}` is not a task id")))
    }
}

/// The tenant every row belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(Uuid);

impl AccountId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for AccountId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountId({})", self.0.hyphenated())
    }
}

impl FromStr for AccountId {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| crate::Error::invalid(format!("`{s}` is not an account id")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_id_renders_and_parses_both_forms() {
        let id = TaskId::new();
        let unified = id.to_unified();
        assert!(unified.starts_with("task_"));
        assert_eq!(unified.len(), 5 + 32);
        assert_eq!(TaskId::parse_any(&unified), Some(id));
        assert_eq!(TaskId::parse_any(&id.to_string()), Some(id));
        assert_eq!(id.as_uuid().get_version_num(), 7);
        assert!(TaskId::parse_any("task_nothex").is_none());
        assert!("garbage".parse::<TaskId>().is_err());
    }

    #[test]
    fn task_ids_sort_by_creation() {
        let a = TaskId::new();
        let b = TaskId::new();
        assert!(a < b);
    }
}
