//! The price table: what a task costs per output second, by model, feature, mode, sound,
//! voices and reference video (`config/prices.toml` documents the format). Prices are written
//! as decimals and kept as integer thousandths of a unit ([`MINOR_UNITS_PER_UNIT`]), so money
//! is never a float.

use serde::Deserialize;

/// Minor units in one price unit: prices have at most three decimal places.
pub const MINOR_UNITS_PER_UNIT: i64 = 1000;

/// The built-in table.
pub const DEFAULT_PRICES: &str = include_str!("../../../../config/prices.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    #[serde(default)]
    rule: Vec<RuleFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    models: Vec<String>,
    #[serde(default)]
    kinds: Vec<String>,
    sound: Option<bool>,
    voices: Option<bool>,
    reference_video: Option<bool>,
    std: Option<String>,
    pro: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    models: Vec<String>,
    kinds: Vec<String>,
    sound: Option<bool>,
    voices: Option<bool>,
    reference_video: Option<bool>,
    std: Option<i64>,
    pro: Option<i64>,
}

/// What the price of a request depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Priced<'a> {
    pub model: &'a str,
    /// The official feature path segment (`text2video`, `motion-control`, ...).
    pub kind: &'a str,
    /// `std`, `pro` or `4k`.
    pub mode: &'a str,
    pub sound: bool,
    pub voices: bool,
    pub reference_video: bool,
    /// Output (or, for an edit of a base video, input) length in milliseconds.
    pub duration_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PriceTable {
    rules: Vec<Rule>,
}

/// `"0.6"` as 600 thousandths; at most three decimal places, never negative.
pub fn parse_units(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let has_point = text.contains('.');
    if !digits(whole) || (has_point && !digits(fraction)) || fraction.len() > 3 {
        return Err(format!(
            "`{text}` is not a price (a decimal with at most three places)"
        ));
    }
    let whole: i64 = whole
        .parse()
        .map_err(|_| format!("`{text}` is too large"))?;
    let mut fraction = fraction.to_owned();
    while fraction.len() < 3 {
        fraction.push('0');
    }
    let fraction: i64 = fraction
        .parse()
        .map_err(|_| format!("`{text}` is not a price"))?;
    whole
        .checked_mul(MINOR_UNITS_PER_UNIT)
        .and_then(|w| w.checked_add(fraction))
        .ok_or_else(|| format!("`{text}` is too large"))
}

impl PriceTable {
    /// Reads a table in `config/prices.toml`'s format.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: TableFile = toml::from_str(text).map_err(|e| format!("price table: {e}"))?;
        let mut rules = Vec::with_capacity(file.rule.len());
        for (n, rule) in file.rule.into_iter().enumerate() {
            let price = |p: &Option<String>| {
                p.as_deref()
                    .map(parse_units)
                    .transpose()
                    .map_err(|e| format!("price table rule {}: {e}", n + 1))
            };
            if rule.models.is_empty() || (rule.std.is_none() && rule.pro.is_none()) {
                return Err(format!(
                    "price table rule {}: it needs models and a std or pro price",
                    n + 1
                ));
            }
            rules.push(Rule {
                std: price(&rule.std)?,
                pro: price(&rule.pro)?,
                models: rule.models.iter().map(|m| m.to_ascii_lowercase()).collect(),
                kinds: rule.kinds,
                sound: rule.sound,
                voices: rule.voices,
                reference_video: rule.reference_video,
            });
        }
        Ok(Self { rules })
    }

    /// The price per output second of a request, in minor units; `None` when no rule prices it.
    pub fn per_second(&self, request: &Priced<'_>) -> Option<i64> {
        let model = request.model.to_ascii_lowercase();
        let rule = self.rules.iter().find(|rule| {
            (rule.models.iter().any(|m| m == "*" || *m == model))
                && (rule.kinds.is_empty() || rule.kinds.iter().any(|k| k == request.kind))
                && rule.sound.is_none_or(|s| s == request.sound)
                && rule.voices.is_none_or(|v| v == request.voices)
                && rule
                    .reference_video
                    .is_none_or(|r| r == request.reference_video)
                && match request.mode {
                    "std" => rule.std.is_some(),
                    "pro" | "4k" => rule.pro.is_some(),
                    _ => false,
                }
        })?;
        match request.mode {
            "std" => rule.std,
            "pro" => rule.pro,
            "4k" => rule.pro.and_then(|p| p.checked_mul(2)),
            _ => None,
        }
    }

    /// The price of a request: per second times its length, rounded up to a whole minor unit.
    pub fn price(&self, request: &Priced<'_>) -> Option<i64> {
        kinora_core::billing::price_for_duration(self.per_second(request)?, request.duration_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(model: &'a str, kind: &'a str, mode: &'a str, seconds: u64) -> Priced<'a> {
        Priced {
            model,
            kind,
            mode,
            sound: false,
            voices: false,
            reference_video: false,
            duration_ms: seconds * 1000,
        }
    }

    #[test]
    fn decimals_become_thousandths_exactly() {
        assert_eq!(parse_units("0.6"), Ok(600));
        assert_eq!(parse_units("2"), Ok(2000));
        assert_eq!(parse_units("1.125"), Ok(1125));
        for bad in ["-1", "0.1234", "1e3", "", ".5", "1.", "x"] {
            assert!(parse_units(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_built_in_table_prices_section_14() {
        let table = PriceTable::parse(DEFAULT_PRICES).expect("built-in table");
        let per_second = |r: Priced<'_>| table.per_second(&r);
        assert_eq!(
            per_second(request("kling-v3", "text2video", "std", 5)),
            Some(600)
        );
        assert_eq!(
            per_second(request("kling-v3", "text2video", "pro", 5)),
            Some(800)
        );
        assert_eq!(
            per_second(request("kling-v3", "text2video", "4k", 5)),
            Some(1600)
        );
        let sound = Priced {
            sound: true,
            ..request("kling-v3", "image2video", "pro", 5)
        };
        assert_eq!(per_second(sound), Some(1200));
        let voices = Priced {
            sound: true,
            voices: true,
            ..request("kling-v3", "text2video", "std", 5)
        };
        assert_eq!(per_second(voices), Some(1100));
        assert_eq!(
            per_second(request("kling-v3", "motion-control", "pro", 5)),
            Some(1200)
        );
        // Seed 004: motion control on kling-v2-6, 0.5 std and 0.8 pro per output second.
        assert_eq!(
            table.price(&request("kling-v2-6", "motion-control", "std", 10)),
            Some(5000)
        );
        assert_eq!(
            table.price(&Priced {
                duration_ms: 7_400,
                ..request("Kling-V2-6", "motion-control", "pro", 0)
            }),
            Some(5920)
        );
        let silent_std = request("kling-v2-6", "text2video", "std", 5);
        assert_eq!(per_second(silent_std), Some(300));
        // Sound on kling-v2-6 is priced for pro only.
        let sound_std = Priced {
            sound: true,
            ..silent_std
        };
        assert_eq!(per_second(sound_std), Some(300), "falls to the silent rule");
        let sound_pro = Priced {
            sound: true,
            ..request("kling-v2-6", "text2video", "pro", 5)
        };
        assert_eq!(per_second(sound_pro), Some(1000));
        let omni_with_video = Priced {
            reference_video: true,
            ..request("kling-video-o1", "omni-video", "pro", 5)
        };
        assert_eq!(per_second(omni_with_video), Some(1200));
        assert_eq!(
            per_second(request("kling-v1-6", "multi-image2video", "pro", 5)),
            Some(700)
        );
        assert_eq!(
            per_second(request("kling-v2-master", "text2video", "std", 5)),
            Some(2000)
        );
        assert_eq!(
            per_second(request("unknown-model", "text2video", "std", 5)),
            None
        );
        assert_eq!(
            per_second(request("kling-v3", "text2video", "turbo", 5)),
            None
        );
    }

    /// A metered account can use every model, feature and mode the capability table offers:
    /// the built-in price table prices each, with and without sound where sound is offered.
    #[test]
    fn everything_the_capability_table_offers_has_a_price() {
        let table = PriceTable::parse(DEFAULT_PRICES).expect("built-in table");
        let capabilities =
            crate::official::capabilities::CapabilityTable::builtin().expect("capabilities");
        let mut checked = 0;
        for (endpoint, model, caps) in capabilities.entries() {
            for mode in &caps.modes {
                let sound_offered = caps
                    .features
                    .get("sound on")
                    .is_some_and(|rule| rule.modes.as_ref().is_none_or(|m| m.contains(mode)));
                for sound in [false, sound_offered] {
                    let priced = Priced {
                        sound,
                        ..request(model, endpoint, mode, 5)
                    };
                    assert!(
                        table.per_second(&priced).is_some(),
                        "no price for {endpoint} {model} {mode} sound={sound}"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 40, "{checked}");
    }

    #[test]
    fn a_price_rounds_up_to_a_whole_minor_unit() {
        let table =
            PriceTable::parse("[[rule]]\nmodels = [\"m\"]\nstd = \"0.333\"\n").expect("table");
        // 0.333 per second for 1.001 s = 0.333333 units: 334 thousandths.
        let r = Priced {
            duration_ms: 1001,
            ..request("m", "text2video", "std", 0)
        };
        assert_eq!(table.price(&r), Some(334));
        assert!(PriceTable::parse("[[rule]]\nmodels = [\"m\"]\n").is_err());
        assert!(
            PriceTable::parse("[[rule]]\nmodels = [\"m\"]\nstd = \"0.5\"\nunknown = 1\n").is_err()
        );
    }
}
