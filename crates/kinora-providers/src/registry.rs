use std::collections::BTreeMap;
use std::sync::Arc;

use crate::Provider;

/// How a channel takes part in routing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelSettings {
    /// Channels of a higher priority are tried before those of a lower one.
    pub priority: i32,
    /// Among channels of one priority, those with a weight are tried first, each with a chance
    /// in proportion to its weight; 0 (the default) takes no part in the draw and keeps the
    /// route's order, after the weighted ones.
    pub weight: u32,
    /// Tasks the channel holds at once (queued on it, submitted or running); `None` is no limit.
    pub max_in_flight: Option<u32>,
    /// Failed submit attempts (errors that may be passing) before the task fails over to the
    /// route's next channel.
    pub failover_after_attempts: u32,
}

impl Default for ChannelSettings {
    fn default() -> Self {
        Self {
            priority: 0,
            weight: 0,
            max_in_flight: None,
            failover_after_attempts: 3,
        }
    }
}

/// One channel: a provider and its routing settings.
#[derive(Clone)]
pub struct Channel {
    pub name: String,
    pub provider: Arc<dyn Provider>,
    pub settings: ChannelSettings,
}

/// The channels this process can use and which channels serve which model. Model names are
/// matched case-insensitively; a model without its own route uses the default route.
#[derive(Clone, Default)]
pub struct Providers {
    channels: BTreeMap<String, Channel>,
    routes: BTreeMap<String, Vec<String>>,
    default_route: Vec<String>,
}

impl Providers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_channel(&mut self, name: impl Into<String>, provider: Arc<dyn Provider>) {
        self.add_channel_with(name, provider, ChannelSettings::default());
    }

    pub fn add_channel_with(
        &mut self,
        name: impl Into<String>,
        provider: Arc<dyn Provider>,
        settings: ChannelSettings,
    ) {
        let name = name.into();
        self.channels.insert(
            name.clone(),
            Channel {
                name,
                provider,
                settings,
            },
        );
    }

    /// The channels that serve `model`, in order of preference.
    pub fn route(&mut self, model: &str, channels: Vec<String>) {
        self.routes.insert(model.to_ascii_lowercase(), channels);
    }

    /// Models without a route of their own are served by `channel`.
    pub fn set_default_channel(&mut self, channel: impl Into<String>) {
        self.default_route = vec![channel.into()];
    }

    /// The configured channels that may serve `model`, leaving out `skip`: by priority,
    /// highest first, then in the route's order.
    pub fn candidates(&self, model: &str, skip: &[String]) -> Vec<&Channel> {
        let route = self
            .routes
            .get(&model.to_ascii_lowercase())
            .unwrap_or(&self.default_route);
        let mut candidates: Vec<&Channel> = route
            .iter()
            .filter(|name| !skip.contains(name))
            .filter_map(|name| self.channels.get(name))
            .collect();
        candidates.sort_by_key(|c| std::cmp::Reverse(c.settings.priority));
        candidates
    }

    /// `candidates` in the order to try them for one task: priority groups stay in order;
    /// within a group the weighted channels are drawn by weight with the uniform numbers
    /// `draws` (one in [0, 1) per channel; fewer are treated as 0), then the unweighted ones
    /// follow in route order.
    pub fn weighted_order<'a>(candidates: &[&'a Channel], draws: &[f64]) -> Vec<&'a Channel> {
        let mut ordered = Vec::with_capacity(candidates.len());
        let mut draws = draws.iter().copied();
        let mut rest: &[&Channel] = candidates;
        while let Some(first) = rest.first() {
            let priority = first.settings.priority;
            let len = rest
                .iter()
                .take_while(|c| c.settings.priority == priority)
                .count();
            let (mut group, unweighted): (Vec<&Channel>, Vec<&Channel>) =
                rest[..len].iter().partition(|c| c.settings.weight > 0);
            rest = &rest[len..];
            while !group.is_empty() {
                let total: u64 = group.iter().map(|c| u64::from(c.settings.weight)).sum();
                let draw = draws.next().unwrap_or(0.0).clamp(0.0, 1.0);
                let mut point = (draw * total as f64) as u64;
                let mut index = group.len() - 1;
                for (i, channel) in group.iter().enumerate() {
                    let weight = u64::from(channel.settings.weight);
                    if point < weight {
                        index = i;
                        break;
                    }
                    point -= weight;
                }
                ordered.push(group.remove(index));
            }
            ordered.extend(unweighted);
        }
        ordered
    }

    /// A configured channel, by name.
    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.get(name)
    }

    pub fn channel_names(&self) -> impl Iterator<Item = &str> {
        self.channels.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Progress, ProviderContext, ProviderError, Submission};
    use async_trait::async_trait;
    use kinora_core::Task;

    struct Named;

    #[async_trait]
    impl Provider for Named {
        async fn submit(&self, _: &Task, _: &ProviderContext) -> Result<Submission, ProviderError> {
            Err(ProviderError::Transient {
                message: "unused".into(),
            })
        }
        async fn poll(&self, _: &Task, _: &ProviderContext) -> Result<Progress, ProviderError> {
            Ok(Progress::Pending)
        }
    }

    fn names(channels: &[&Channel]) -> Vec<String> {
        channels.iter().map(|c| c.name.clone()).collect()
    }

    fn settings(priority: i32, weight: u32) -> ChannelSettings {
        ChannelSettings {
            priority,
            weight,
            ..ChannelSettings::default()
        }
    }

    #[test]
    fn routes_by_model_then_default() {
        let mut providers = Providers::new();
        providers.add_channel("local", Arc::new(Named));
        providers.add_channel("kling-a", Arc::new(Named));
        providers.add_channel("kling-b", Arc::new(Named));
        assert!(
            providers.candidates("kling-v2-6", &[]).is_empty(),
            "no route and no default"
        );
        providers.route("Kling-V2-6", vec!["kling-a".into(), "kling-b".into()]);
        providers.set_default_channel("local");
        assert_eq!(
            names(&providers.candidates("kling-v2-6", &[])),
            ["kling-a", "kling-b"]
        );
        assert_eq!(
            names(&providers.candidates("KLING-v2-6", &["kling-a".into()])),
            ["kling-b"],
            "a skipped channel is left out"
        );
        assert_eq!(names(&providers.candidates("kling-v1", &[])), ["local"]);
        assert!(providers.channel("local").is_some());
        assert!(providers.channel("missing").is_none());
        providers.route("kling-v1", vec!["missing".into()]);
        assert!(
            providers.candidates("kling-v1", &[]).is_empty(),
            "a route to an unknown channel serves nothing"
        );
        assert_eq!(
            providers.channel_names().collect::<Vec<_>>(),
            vec!["kling-a", "kling-b", "local"]
        );
    }

    #[test]
    fn priority_orders_groups_and_weight_draws_within_one() {
        let mut providers = Providers::new();
        providers.add_channel_with("backup", Arc::new(Named), settings(0, 1));
        providers.add_channel_with("last", Arc::new(Named), settings(0, 0));
        providers.add_channel_with("ordered", Arc::new(Named), settings(0, 0));
        providers.add_channel_with("light", Arc::new(Named), settings(10, 1));
        providers.add_channel_with("heavy", Arc::new(Named), settings(10, 3));
        providers.route(
            "m",
            vec![
                "ordered".into(),
                "backup".into(),
                "last".into(),
                "light".into(),
                "heavy".into(),
            ],
        );
        let candidates = providers.candidates("m", &[]);
        assert_eq!(
            names(&candidates),
            ["light", "heavy", "ordered", "backup", "last"]
        );
        // Weights 1 and 3: draws below 1/4 pick `light` first, the rest `heavy`; unweighted
        // channels follow the weighted ones of their priority, in route order.
        let order = |draw: f64| names(&Providers::weighted_order(&candidates, &[draw, 0.0, 0.0]));
        assert_eq!(order(0.1), ["light", "heavy", "backup", "ordered", "last"]);
        assert_eq!(order(0.3), ["heavy", "light", "backup", "ordered", "last"]);
        assert_eq!(order(0.99), ["heavy", "light", "backup", "ordered", "last"]);
        let mut first_heavy = 0;
        for i in 0..1000 {
            if order(f64::from(i) / 1000.0)[0] == "heavy" {
                first_heavy += 1;
            }
        }
        assert_eq!(
            first_heavy, 750,
            "heavy comes first in proportion to its weight"
        );
    }
}
