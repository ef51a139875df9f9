//! Object key layout. Every key kinora writes is built here, so the layout can be read (and
//! changed) in one place:
//!
//! ```text
//! tasks/{task_id}/inputs/{name}    files a client sent with a task (reference images, audio)
//! tasks/{task_id}/outputs/{name}   files a provider produced for a task (videos, covers)
//! elements/{element_id}/{name}    images of an element (presets and custom ones)
//! _health/{unique}                 short-lived readiness probes
//! ```
//!
//! `{task_id}` is the hyphenated UUID. Everything a task owns sits under `tasks/{task_id}/`, so
//! deleting a task's files is one prefix delete and can never touch another task. The probe
//! prefix starts with `_` so it can never collide with a task prefix.
//!
//! Keys are validated when they are built rather than when they reach a backend, because the
//! three backends disagree on what they accept: a `..` segment would escape the filesystem root,
//! an empty segment is silently collapsed by some S3-compatible servers, and the filesystem
//! backend percent-encodes a handful of punctuation characters when it lists, so a key holding
//! one of them would not come back from `list` as itself. Rejecting all of those up front keeps
//! a key meaning the same object on every backend.

use kinora_core::{Error, TaskId};
use std::fmt;
use std::str::FromStr;

/// Longest key accepted, in bytes; S3's own limit.
pub const MAX_KEY_BYTES: usize = 1024;

/// Characters the filesystem backend would rewrite on listing (see the module docs), plus the
/// backslash, which Windows-minded tools treat as a separator.
const FORBIDDEN_CHARS: &[char] = &[
    '\\', '{', '}', '^', '%', '`', '[', ']', '"', '<', '>', '~', '#', '|', '*', '?',
];

const TASKS: &str = "tasks";
const INPUTS: &str = "inputs";
const OUTPUTS: &str = "outputs";
const ELEMENTS: &str = "elements";
const HEALTH: &str = "_health";

/// A validated object key: `/`-separated segments, see the module docs for the rules.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Validates `key`: non-empty, at most [`MAX_KEY_BYTES`] bytes, no leading or trailing `/`,
    /// no empty, `.` or `..` segment, no control characters, no backslash and none of the
    /// characters listed in the module docs.
    pub fn parse(key: impl AsRef<str>) -> Result<Self, Error> {
        let key = key.as_ref();
        if key.is_empty() {
            return Err(Error::invalid("invalid object key: it is empty"));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(Error::invalid(format!(
                "invalid object key {:?}: it is {} bytes long, the limit is {MAX_KEY_BYTES}",
                truncated(key),
                key.len()
            )));
        }
        if key.starts_with('/') || key.ends_with('/') {
            return Err(Error::invalid(format!(
                "invalid object key {key:?}: it must not start or end with '/'"
            )));
        }
        for segment in key.split('/') {
            check_segment(segment)
                .map_err(|why| Error::invalid(format!("invalid object key {key:?}: {why}")))?;
        }
        Ok(Self(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// Appends one already-validated segment, re-checking the length limit.
    fn child(&self, segment: &str) -> Result<Self, Error> {
        let key = format!("{}/{segment}", self.0);
        if key.len() > MAX_KEY_BYTES {
            return Err(Error::invalid(format!(
                "object name {:?} is too long: the key would be {} bytes, the limit is {MAX_KEY_BYTES}",
                truncated(segment),
                key.len()
            )));
        }
        Ok(Self(key))
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for ObjectKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for ObjectKey {
    type Error = Error;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)?;
        Ok(Self(value))
    }
}

impl From<ObjectKey> for String {
    fn from(key: ObjectKey) -> Self {
        key.0
    }
}

/// Everything one task owns; delete or list this prefix to act on the whole task.
pub fn task_prefix(task_id: &TaskId) -> ObjectKey {
    // A hyphenated UUID is always a valid segment, so this cannot fail.
    ObjectKey(format!("{TASKS}/{task_id}"))
}

/// A file a client supplied for the task. `name` must be a single valid segment.
pub fn task_input(task_id: &TaskId, name: &str) -> Result<ObjectKey, Error> {
    task_file(task_id, INPUTS, name)
}

/// A file produced for the task. `name` must be a single valid segment.
pub fn task_output(task_id: &TaskId, name: &str) -> Result<ObjectKey, Error> {
    task_file(task_id, OUTPUTS, name)
}

/// Everything one element owns (its images); deleting the element deletes this prefix.
pub fn element_prefix(element_id: i64) -> ObjectKey {
    // A decimal integer is always a valid segment.
    ObjectKey(format!("{ELEMENTS}/{element_id}"))
}

/// An image of an element. `name` must be a single valid segment.
pub fn element_file(element_id: i64, name: &str) -> Result<ObjectKey, Error> {
    check_name(name)?;
    element_prefix(element_id).child(name)
}

/// Key of a readiness probe object.
///
/// Infallible because a readiness probe must not fail on key building: characters outside
/// `[A-Za-z0-9._-]` in `unique` become `-`, and an unusable result falls back to `probe`.
pub fn health_probe(unique: &str) -> ObjectKey {
    let mut segment: String = unique
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(200)
        .collect();
    if check_segment(&segment).is_err() {
        segment = "probe".to_owned();
    }
    ObjectKey(format!("{HEALTH}/{segment}"))
}

fn task_file(task_id: &TaskId, kind: &str, name: &str) -> Result<ObjectKey, Error> {
    check_name(name)?;
    task_prefix(task_id).child(kind)?.child(name)
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.contains('/') {
        return Err(Error::invalid(format!(
            "invalid object name {name:?}: it must be a single path segment without '/'"
        )));
    }
    check_segment(name)
        .map_err(|why| Error::invalid(format!("invalid object name {name:?}: {why}")))
}

fn check_segment(segment: &str) -> Result<(), String> {
    if segment.is_empty() {
        return Err("empty path segment".to_owned());
    }
    if segment == "." || segment == ".." {
        return Err(format!("path segment {segment:?} is not allowed"));
    }
    if let Some(c) = segment.chars().find(|c| c.is_control()) {
        return Err(format!("control character {c:?} is not allowed"));
    }
    if let Some(c) = segment.chars().find(|c| FORBIDDEN_CHARS.contains(c)) {
        return Err(format!("character {c:?} is not allowed"));
    }
    Ok(())
}

/// Keeps error messages short when someone sends a huge name.
fn truncated(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinora_core::ErrorCode;

    fn id() -> TaskId {
        TaskId::parse_any("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").unwrap()
    }

    fn rejected(key: &str) -> Error {
        let err = ObjectKey::parse(key).expect_err(key);
        assert_eq!(err.code(), ErrorCode::InvalidInput, "{key:?}: {err}");
        err
    }

    #[test]
    fn layout() {
        assert_eq!(
            task_prefix(&id()).as_str(),
            "tasks/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
        );
        assert_eq!(
            task_input(&id(), "image.png").unwrap().to_string(),
            "tasks/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b/inputs/image.png"
        );
        assert_eq!(
            task_output(&id(), "video.mp4").unwrap().as_str(),
            "tasks/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b/outputs/video.mp4"
        );
        assert_eq!(health_probe("abc-123").as_str(), "_health/abc-123");
        assert_eq!(element_prefix(146).as_str(), "elements/146");
        assert_eq!(
            element_file(146, "front.jpg").unwrap().as_str(),
            "elements/146/front.jpg"
        );
        assert!(element_file(146, "../x").is_err());
    }

    #[test]
    fn built_keys_pass_validation() {
        let keys = [
            task_prefix(&id()),
            task_input(&id(), "a").unwrap(),
            task_output(&id(), "clip 1 (final).mp4").unwrap(),
            health_probe("x"),
        ];
        for key in keys {
            assert_eq!(ObjectKey::parse(key.as_str()).unwrap(), key);
        }
    }

    #[test]
    fn accepts_ordinary_keys() {
        for key in [
            "a",
            "a/b/c",
            "tasks/x/outputs/video.mp4",
            "...",
            "a.b/.c/d.",
            "vidéo/é",
        ] {
            assert_eq!(ObjectKey::parse(key).unwrap().as_str(), key);
        }
    }

    #[test]
    fn rejects_bad_keys() {
        for key in [
            "", "/a", "a/", "/", "a//b", "..", "a/../b", "a/./b", ".", "a\\b", "a\nb", "a\u{0}b",
            "a\u{7f}b", "a#1", "100%", "what?",
        ] {
            rejected(key);
        }
        assert!(rejected("a/../b").message().contains(".."));
    }

    #[test]
    fn length_limit_is_in_bytes() {
        let longest = "a".repeat(MAX_KEY_BYTES);
        assert!(ObjectKey::parse(&longest).is_ok());
        rejected(&format!("{longest}a"));
        // 'é' is two bytes, so 513 of them exceed the limit although only 513 chars.
        rejected(&"é".repeat(513));
        let err = task_output(&id(), &"n".repeat(1000)).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidInput);
    }

    #[test]
    fn names_must_be_one_valid_segment() {
        for name in ["", ".", "..", "a/b", "/a", "a/", "x\\y", "tab\there"] {
            for build in [task_input, task_output] {
                let err = build(&id(), name).expect_err(name);
                assert_eq!(err.code(), ErrorCode::InvalidInput);
                assert!(err.message().contains(&format!("{name:?}")), "{err}");
            }
        }
    }

    #[test]
    fn health_probe_never_fails() {
        assert_eq!(health_probe("").as_str(), "_health/probe");
        assert_eq!(health_probe("..").as_str(), "_health/probe");
        assert_eq!(health_probe("a/b c").as_str(), "_health/a-b-c");
        let long = health_probe(&"z".repeat(5000));
        assert!(ObjectKey::parse(long.as_str()).is_ok());
    }

    #[test]
    fn ordering_follows_the_string() {
        let mut keys = [
            ObjectKey::parse("b").unwrap(),
            ObjectKey::parse("a/c").unwrap(),
            ObjectKey::parse("a/b").unwrap(),
        ];
        keys.sort();
        let sorted: Vec<_> = keys.iter().map(ObjectKey::as_str).collect();
        assert_eq!(sorted, ["a/b", "a/c", "b"]);
    }

    #[test]
    fn serde_validates() {
        let key = task_input(&id(), "a.png").unwrap();
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, format!("\"{key}\""));
        assert_eq!(serde_json::from_str::<ObjectKey>(&json).unwrap(), key);
        assert!(serde_json::from_str::<ObjectKey>("\"a/../b\"").is_err());
    }
}
