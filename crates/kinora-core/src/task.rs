use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(Error::invalid(format!(
                        concat!("`{}` is not a valid ", stringify!($name)),
                        other
                    ))),
                }
            }
        }
    };
}

string_enum! {
    /// The one internal task state machine (specs README §2):
    /// queued → submitted → running → succeeded | failed | canceled. States may be skipped.
    TaskState {
        /// Validated, charged, waiting for a provider slot.
        Queued => "queued",
        /// Handed to the provider; the provider has not reported progress yet.
        Submitted => "submitted",
        Running => "running",
        /// Outputs are in kinora's own storage.
        Succeeded => "succeeded",
        Failed => "failed",
        /// Operator action; no dialect can cancel.
        Canceled => "canceled",
    }
}

impl TaskState {
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Canceled)
    }

    /// The states a task may move to `self` from. Forward moves only; a terminal state is final.
    pub fn allowed_sources(&self) -> &'static [TaskState] {
        use TaskState::*;
        match self {
            Queued => &[],
            Submitted => &[Queued],
            Running => &[Queued, Submitted],
            Succeeded => &[Submitted, Running],
            Failed | Canceled => &[Queued, Submitted, Running],
        }
    }

    pub fn can_move_to(&self, target: TaskState) -> bool {
        target.allowed_sources().contains(self)
    }
}

string_enum! {
    /// What a task generates; one canonical kind per official endpoint.
    TaskKind {
        Text2Video => "text2video",
        Image2Video => "image2video",
        MultiImage2Video => "multi_image2video",
        OmniVideo => "omni_video",
        MotionControl => "motion_control",
        VideoExtend => "video_extend",
    }
}

string_enum! {
    /// The wire dialect a task was created in; it decides the shape of answers and callbacks.
    Dialect {
        Unified => "unified",
        Official => "official",
        AceData => "acedata",
    }
}

string_enum! {
    /// Why a task failed (specs README §2, our decision).
    FailureClass {
        ContentPolicy => "content_policy",
        InvalidInput => "invalid_input",
        UpstreamError => "upstream_error",
        Internal => "internal",
        Deadline => "deadline",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_are_final() {
        for from in TaskState::ALL.iter().filter(|s| s.is_terminal()) {
            for to in TaskState::ALL {
                assert!(!from.can_move_to(*to), "{from} -> {to} must be refused");
            }
        }
    }

    #[test]
    fn forward_moves_are_allowed() {
        use TaskState::*;
        assert!(Queued.can_move_to(Submitted));
        assert!(Queued.can_move_to(Running));
        assert!(Submitted.can_move_to(Running));
        assert!(Running.can_move_to(Succeeded));
        assert!(Queued.can_move_to(Canceled));
        assert!(!Running.can_move_to(Submitted));
        assert!(!Running.can_move_to(Queued));
        assert!(!Queued.can_move_to(Succeeded));
    }

    #[test]
    fn names_round_trip() {
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>().ok(), Some(*s));
        }
        for k in TaskKind::ALL {
            assert_eq!(k.as_str().parse::<TaskKind>().ok(), Some(*k));
        }
        assert!("nope".parse::<Dialect>().is_err());
        assert_eq!(
            serde_json::to_string(&FailureClass::ContentPolicy)
                .ok()
                .as_deref(),
            Some("\"content_policy\"")
        );
    }
}

/// What a request handler hands the store to create a task.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTask {
    pub id: crate::TaskId,
    pub account_id: crate::AccountId,
    pub dialect: Dialect,
    pub kind: TaskKind,
    pub model: String,
    /// The canonical generation request, as JSON.
    pub request: serde_json::Value,
    pub external_task_id: Option<String>,
    pub callback_url: Option<String>,
    pub submission: Option<Submission>,
}

/// The HTTP request a task was created by: its id and the body as received.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Submission {
    pub trace_id: String,
    pub body: serde_json::Value,
}

/// A task as stored. Times are Unix milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Task {
    pub id: crate::TaskId,
    pub account_id: crate::AccountId,
    pub dialect: Dialect,
    pub kind: TaskKind,
    pub model: String,
    pub state: TaskState,
    pub request: serde_json::Value,
    pub external_task_id: Option<String>,
    pub callback_url: Option<String>,
    /// The provider channel that accepted the task.
    pub channel: Option<String>,
    pub upstream_task_id: Option<String>,
    /// Provider outputs once succeeded (object keys and media facts), as JSON.
    pub result: Option<serde_json::Value>,
    pub failure_class: Option<FailureClass>,
    pub failure_message: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub submitted_at: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub submission: Option<Submission>,
    /// What the task cost, in minor units, once it ended on a metered account: the captured
    /// price when it succeeded, 0 when it did not. `None` while it runs or when not metered.
    pub charged: Option<i64>,
}
