//! Reading the fields of a unified request body under the dialect's conventions (§3, §6.1):
//! `null` is absent, the listed optional strings are absent when empty, lengths count Unicode
//! scalar values, `seconds` takes a string or a whole number, and every key a route reads is
//! marked so the rest can be kept as unknown parameters (§7.10).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::error::UnifiedError;

/// Keys kinora sets in upstream requests itself; an unknown parameter by one of these names is
/// dropped rather than forwarded (§7.10).
const RESERVED_UPSTREAM_KEYS: [&str; 10] = [
    "model_name",
    "prompt",
    "duration",
    "image",
    "image_tail",
    "image_list",
    "element_list",
    "video_list",
    "callback_url",
    "external_task_id",
];

/// The request object with the keys read so far.
pub struct Body<'a> {
    object: &'a Map<String, Value>,
    read: BTreeSet<&'static str>,
}

type Result<T> = std::result::Result<T, UnifiedError>;

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> Body<'a> {
    /// The body must be a JSON object (§3).
    pub fn new(value: &'a Value) -> Result<Self> {
        match value {
            Value::Object(object) => Ok(Self {
                object,
                read: BTreeSet::new(),
            }),
            other => Err(UnifiedError::invalid_json(format!(
                "the request body must be a JSON object, not {}",
                type_name(other)
            ))),
        }
    }

    /// The value of `key`, marking it read; `null` counts as absent.
    pub fn value(&mut self, key: &'static str) -> Option<&'a Value> {
        self.read.insert(key);
        self.object.get(key).filter(|v| !v.is_null())
    }

    /// The value of `key` without marking it read; `null` counts as absent.
    pub fn peek(&self, key: &str) -> Option<&'a Value> {
        self.object.get(key).filter(|v| !v.is_null())
    }

    /// Whether `key` holds something other than `null` (without marking it read).
    pub fn has(&self, key: &str) -> bool {
        self.object.get(key).is_some_and(|v| !v.is_null())
    }

    /// An optional string. With `empty_is_absent`, `""` counts as absent (§3 lists the fields).
    pub fn string(&mut self, key: &'static str, empty_is_absent: bool) -> Result<Option<&'a str>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() && empty_is_absent => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(UnifiedError::invalid(
                key,
                format!("{key} must be a string, not {}", type_name(other)),
            )),
        }
    }

    /// An optional string of at most `max` characters.
    pub fn text(
        &mut self,
        key: &'static str,
        max: usize,
        empty_is_absent: bool,
    ) -> Result<Option<String>> {
        let Some(s) = self.string(key, empty_is_absent)? else {
            return Ok(None);
        };
        check_length(key, s, 0, max)?;
        Ok(Some(s.to_owned()))
    }

    /// A required string of `min`–`max` characters; `missing_hint` is added to the message
    /// when it is absent.
    pub fn required_text(
        &mut self,
        key: &'static str,
        (min, max): (usize, usize),
        missing_hint: &str,
    ) -> Result<String> {
        match self.string(key, false)? {
            Some(s) => {
                check_length(key, s, min, max)?;
                Ok(s.to_owned())
            }
            None => Err(UnifiedError::missing(
                key,
                format!("{key} is required{missing_hint}"),
            )),
        }
    }

    /// An optional string from a fixed set.
    pub fn choice(
        &mut self,
        key: &'static str,
        allowed: &[&'static str],
    ) -> Result<Option<&'static str>> {
        let Some(value) = self.value(key) else {
            return Ok(None);
        };
        let found = value
            .as_str()
            .and_then(|s| allowed.iter().find(|a| **a == s).copied());
        found.map(Some).ok_or_else(|| {
            UnifiedError::invalid(
                key,
                format!(
                    "{key} must be one of {}, not {}",
                    allowed.join(", "),
                    describe(value)
                ),
            )
        })
    }

    /// `on`/`off`, or a JSON boolean (§6.2).
    pub fn on_off(&mut self, key: &'static str) -> Result<Option<bool>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "on" => Ok(Some(true)),
            Some(Value::String(s)) if s == "off" => Ok(Some(false)),
            Some(other) => Err(UnifiedError::invalid(
                key,
                format!("{key} must be `on` or `off`, not {}", describe(other)),
            )),
        }
    }

    /// A JSON boolean or the strings `true`/`false` in any case (§5.1).
    pub fn flag(&mut self, key: &'static str) -> Result<Option<bool>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(other) => Err(UnifiedError::invalid(
                key,
                format!("{key} must be true or false, not {}", describe(other)),
            )),
        }
    }

    /// `seconds`, or its alias `duration` when `seconds` is absent (§6.1): a string holding an
    /// integer, an integer, or a number without a fractional part.
    pub fn seconds(&mut self) -> Result<Option<u32>> {
        let (key, value) = match (self.value("seconds"), self.value("duration")) {
            (Some(v), _) => ("seconds", v),
            (None, Some(v)) => ("duration", v),
            (None, None) => return Ok(None),
        };
        let whole = match value {
            Value::String(s) => s.parse::<u32>().ok(),
            Value::Number(n) => n
                .as_u64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                        .map(|f| f as u64)
                })
                .and_then(|v| u32::try_from(v).ok()),
            _ => None,
        };
        whole.map(Some).ok_or_else(|| {
            UnifiedError::invalid(
                key,
                format!(
                    "{key} must be a whole number of seconds, not {}",
                    describe(value)
                ),
            )
        })
    }

    /// The first key the route did not read, for routes that take no unknown parameters.
    pub fn first_unread(&self) -> Option<&'a str> {
        self.object
            .keys()
            .find(|k| !self.read.contains(k.as_str()))
            .map(String::as_str)
    }

    /// The keys the route did not read: kept with the task, minus the reserved names.
    pub fn unknown(&self) -> Map<String, Value> {
        self.object
            .iter()
            .filter(|(k, _)| !self.read.contains(k.as_str()))
            .filter(|(k, _)| !RESERVED_UPSTREAM_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// A value as a message quotes it: strings in backticks, others as JSON.
pub fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("`{s}`"),
        other => other.to_string(),
    }
}

/// Characters are Unicode scalar values (§3).
pub fn check_length(param: &str, s: &str, min: usize, max: usize) -> Result<()> {
    let n = s.chars().count();
    if n < min || n > max {
        let rule = if min == 0 {
            format!("at most {max} characters")
        } else {
            format!("{min}-{max} characters")
        };
        return Err(UnifiedError::invalid(
            param,
            format!("{param} must be {rule}, got {n}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn null_and_empty_strings_follow_the_conventions() {
        let v = json!({"negative_prompt": "", "callback_url": null, "prompt": "é".repeat(3)});
        let mut b = Body::new(&v).unwrap();
        assert_eq!(b.text("negative_prompt", 10, true).unwrap(), None);
        assert_eq!(b.string("callback_url", true).unwrap(), None);
        // Three characters, six bytes.
        assert!(b.required_text("prompt", (1, 3), "").is_ok());
        assert_eq!(
            b.required_text("missing", (1, 3), "").unwrap_err().code,
            "missing_parameter"
        );
        assert_eq!(
            Body::new(&json!([1])).err().map(|e| e.code),
            Some("invalid_json")
        );
    }

    #[test]
    fn seconds_accepts_whole_numbers_in_three_spellings() {
        for (body, want) in [
            (json!({"seconds": "5"}), Some(5)),
            (json!({"seconds": 10}), Some(10)),
            (json!({"seconds": 5.0}), Some(5)),
            (json!({"duration": "10"}), Some(10)),
            (json!({"seconds": 5, "duration": "x"}), Some(5)),
            (json!({}), None),
        ] {
            assert_eq!(Body::new(&body).unwrap().seconds().unwrap(), want, "{body}");
        }
        for body in [
            json!({"seconds": "5s"}),
            json!({"seconds": 5.5}),
            json!({"seconds": true}),
            json!({"seconds": -5}),
        ] {
            let e = Body::new(&body).unwrap().seconds().unwrap_err();
            assert_eq!(
                (e.code, e.param.as_deref()),
                ("invalid_parameter", Some("seconds"))
            );
        }
    }

    #[test]
    fn unread_keys_are_kept_except_reserved_names() {
        let v = json!({"model": "m", "foo": [1], "model_name": "x", "prompt": "p"});
        let mut b = Body::new(&v).unwrap();
        b.value("model");
        let unknown = b.unknown();
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown["foo"], json!([1]));
    }
}
