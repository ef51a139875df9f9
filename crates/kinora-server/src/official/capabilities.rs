//! The capability table (§8 of the official dialect's spec): which model offers which mode,
//! duration and feature on each endpoint. It is data, `config/capabilities.toml`, built in and
//! replaceable by an operator's copy, so following the upstream's changes needs no code change.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The built-in table.
pub const DEFAULT_TABLE: &str = include_str!("../../../../config/capabilities.toml");

/// Where a feature is offered; every field left out leaves that dimension open.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FeatureRule {
    #[serde(default)]
    pub modes: Option<Vec<String>>,
    #[serde(default)]
    pub durations: Option<Vec<u32>>,
    #[serde(default)]
    pub camera_types: Option<Vec<String>>,
    /// Features it cannot be combined with.
    #[serde(default)]
    pub without: Vec<String>,
}

/// One model on one endpoint.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ModelCapabilities {
    pub modes: Vec<String>,
    /// Absent where the request has no duration (motion control, extension).
    #[serde(default)]
    pub durations: Option<Vec<u32>>,
    #[serde(default)]
    pub features: BTreeMap<String, FeatureRule>,
}

/// Endpoint (`text2video` …) → model → capabilities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapabilityTable {
    endpoints: BTreeMap<String, BTreeMap<String, ModelCapabilities>>,
}

/// A non-neutral feature a request uses; `camera_type` for `camera_control`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsedFeature {
    pub name: &'static str,
    pub camera_type: Option<String>,
}

impl UsedFeature {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            camera_type: None,
        }
    }
}

/// Why a combination is refused. `UnknownModel` is not a capability question (1203); the
/// others are 1201 with the message as shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CapabilityError {
    UnknownModel(String),
    Unsupported(String),
}

impl CapabilityError {
    pub fn message(&self) -> String {
        match self {
            Self::UnknownModel(model) => format!("model_name {model} not found"),
            Self::Unsupported(message) => message.clone(),
        }
    }
}

impl CapabilityTable {
    /// Parses a table; every endpoint needs at least one model, every model a mode.
    pub fn parse(text: &str) -> Result<Self, String> {
        let endpoints: BTreeMap<String, BTreeMap<String, ModelCapabilities>> =
            toml::from_str(text).map_err(|e| format!("capability table: {e}"))?;
        for (endpoint, models) in &endpoints {
            if models.is_empty() {
                return Err(format!("capability table: {endpoint} lists no model"));
            }
            if let Some((model, _)) = models.iter().find(|(_, m)| m.modes.is_empty()) {
                return Err(format!(
                    "capability table: {endpoint}.{model} lists no mode"
                ));
            }
        }
        Ok(Self { endpoints })
    }

    /// The built-in table.
    pub fn builtin() -> Result<Self, String> {
        Self::parse(DEFAULT_TABLE)
    }

    /// Whether any endpoint knows `model`.
    pub fn knows_model(&self, model: &str) -> bool {
        self.endpoints.values().any(|m| m.contains_key(model))
    }

    /// Every (endpoint, model, capabilities) the table offers.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str, &ModelCapabilities)> {
        self.endpoints.iter().flat_map(|(endpoint, models)| {
            models
                .iter()
                .map(move |(model, caps)| (endpoint.as_str(), model.as_str(), caps))
        })
    }

    /// The model's entry on `endpoint`, if it is offered there.
    pub fn model(&self, endpoint: &str, model: &str) -> Option<&ModelCapabilities> {
        self.endpoints.get(endpoint)?.get(model)
    }

    /// Checks a request's model, mode, duration and the non-neutral features it uses.
    pub fn check(
        &self,
        endpoint: &str,
        model: &str,
        mode: &str,
        duration: Option<u32>,
        features: &[UsedFeature],
    ) -> Result<(), CapabilityError> {
        let Some(caps) = self.model(endpoint, model) else {
            return Err(if self.knows_model(model) {
                CapabilityError::Unsupported(format!(
                    "model({model}) is not supported on {endpoint}"
                ))
            } else {
                CapabilityError::UnknownModel(model.to_owned())
            });
        };
        if !caps.modes.iter().any(|m| m == mode) {
            return Err(CapabilityError::Unsupported(format!(
                "model/mode({model}/{mode}) is not supported"
            )));
        }
        let combination = match duration {
            Some(seconds) => format!("model/mode/duration({model}/{mode}/{seconds})"),
            None => format!("model/mode({model}/{mode})"),
        };
        if let (Some(allowed), Some(seconds)) = (&caps.durations, duration) {
            if !allowed.contains(&seconds) {
                return Err(CapabilityError::Unsupported(format!(
                    "{combination} is not supported"
                )));
            }
        }
        let refuse = |token: &str| {
            CapabilityError::Unsupported(format!("{combination} is not supported with {token}"))
        };
        for used in features {
            let Some(rule) = caps.features.get(used.name) else {
                return Err(refuse(used.name));
            };
            let mode_ok = rule
                .modes
                .as_ref()
                .is_none_or(|m| m.iter().any(|x| x == mode));
            let duration_ok = match (&rule.durations, duration) {
                (Some(allowed), Some(seconds)) => allowed.contains(&seconds),
                _ => true,
            };
            if !(mode_ok && duration_ok) {
                return Err(refuse(used.name));
            }
            if let (Some(types), Some(kind)) = (&rule.camera_types, &used.camera_type) {
                if !types.contains(kind) {
                    return Err(refuse(&format!("camera_control type {kind}")));
                }
            }
            if let Some(clash) = rule
                .without
                .iter()
                .find(|other| features.iter().any(|f| f.name == other.as_str()))
            {
                return Err(refuse(&format!("{} and {clash}", used.name)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> CapabilityTable {
        CapabilityTable::builtin().expect("the built-in table parses")
    }

    fn unsupported(r: Result<(), CapabilityError>) -> String {
        match r {
            Err(CapabilityError::Unsupported(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn models_modes_and_durations() {
        let t = table();
        assert_eq!(
            t.check("text2video", "kling-v2-6", "pro", Some(5), &[]),
            Ok(())
        );
        assert_eq!(
            t.check("text2video", "kling-v9", "pro", Some(5), &[]),
            Err(CapabilityError::UnknownModel("kling-v9".into()))
        );
        assert_eq!(
            unsupported(t.check("text2video", "kling-v1-5", "std", Some(5), &[])),
            "model(kling-v1-5) is not supported on text2video"
        );
        assert_eq!(
            unsupported(t.check("text2video", "kling-v2-6", "4k", Some(5), &[])),
            "model/mode(kling-v2-6/4k) is not supported"
        );
        assert_eq!(
            unsupported(t.check("text2video", "kling-v2-6", "pro", Some(15), &[])),
            "model/mode/duration(kling-v2-6/pro/15) is not supported"
        );
        assert_eq!(
            t.check("text2video", "kling-v3", "4k", Some(15), &[]),
            Ok(())
        );
        assert_eq!(
            t.check("motion-control", "kling-v3", "pro", None, &[]),
            Ok(())
        );
        assert!(t
            .check("video-extend", "kling-v2-6", "pro", None, &[])
            .is_err());
    }

    #[test]
    fn features_follow_their_rules() {
        let t = table();
        let f = UsedFeature::new;
        assert_eq!(
            unsupported(t.check(
                "image2video",
                "kling-v2-5-turbo",
                "std",
                Some(10),
                &[f("image_tail")]
            )),
            "model/mode/duration(kling-v2-5-turbo/std/10) is not supported with image_tail"
        );
        assert_eq!(
            t.check(
                "image2video",
                "kling-v2-5-turbo",
                "pro",
                Some(10),
                &[f("image_tail")]
            ),
            Ok(())
        );
        assert!(t
            .check("text2video", "kling-v2-6", "std", Some(5), &[f("sound on")])
            .is_err());
        assert_eq!(
            t.check("text2video", "kling-v2-6", "pro", Some(5), &[f("sound on")]),
            Ok(())
        );
        assert_eq!(
            unsupported(t.check(
                "image2video",
                "kling-v2-6",
                "pro",
                Some(5),
                &[f("image_tail"), f("sound on")]
            )),
            "model/mode/duration(kling-v2-6/pro/5) is not supported with image_tail and sound on"
        );
        assert!(t
            .check(
                "text2video",
                "kling-v1",
                "pro",
                Some(5),
                &[f("camera_control")]
            )
            .is_err());
        assert_eq!(
            t.check(
                "text2video",
                "kling-v1",
                "std",
                Some(5),
                &[f("camera_control")]
            ),
            Ok(())
        );
        let orbit = UsedFeature {
            name: "camera_control",
            camera_type: Some("forward_up".into()),
        };
        assert_eq!(
            unsupported(t.check("image2video", "kling-v1-5", "pro", Some(5), &[orbit])),
            "model/mode/duration(kling-v1-5/pro/5) is not supported with camera_control type forward_up"
        );
        assert!(t
            .check(
                "image2video",
                "kling-v3",
                "pro",
                Some(5),
                &[f("voice_list"), f("element_list")]
            )
            .is_err());
        assert!(t
            .check(
                "text2video",
                "kling-v2-master",
                "pro",
                Some(5),
                &[f("cfg_scale")]
            )
            .is_err());
    }

    #[test]
    fn broken_tables_are_refused() {
        assert!(CapabilityTable::parse("[text2video]").is_err());
        assert!(CapabilityTable::parse("[text2video.m]\nmodes = []").is_err());
        assert!(CapabilityTable::parse(
            "[text2video.m]\nmodes = [\"std\"]\nfeatures.x = { typo = 1 }"
        )
        .is_err());
    }
}
