use std::collections::BTreeMap;
use std::sync::Arc;

use crate::Provider;

/// The channels this process can use and which channel serves which model.
/// Model names are matched case-insensitively; a model without its own route uses the
/// default channel, if there is one.
#[derive(Clone, Default)]
pub struct Providers {
    channels: BTreeMap<String, Arc<dyn Provider>>,
    routes: BTreeMap<String, String>,
    default_channel: Option<String>,
}

impl Providers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_channel(&mut self, name: impl Into<String>, provider: Arc<dyn Provider>) {
        self.channels.insert(name.into(), provider);
    }

    pub fn route(&mut self, model: &str, channel: impl Into<String>) {
        self.routes
            .insert(model.to_ascii_lowercase(), channel.into());
    }

    pub fn set_default_channel(&mut self, channel: impl Into<String>) {
        self.default_channel = Some(channel.into());
    }

    /// The channel name and provider that serve `model`.
    pub fn for_model(&self, model: &str) -> Option<(&str, &Arc<dyn Provider>)> {
        let name = self
            .routes
            .get(&model.to_ascii_lowercase())
            .or(self.default_channel.as_ref())?;
        self.channels
            .get_key_value(name)
            .map(|(n, p)| (n.as_str(), p))
    }

    /// The provider of a channel a task was already submitted to.
    pub fn channel(&self, name: &str) -> Option<&Arc<dyn Provider>> {
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

    #[test]
    fn routes_by_model_then_default() {
        let mut providers = Providers::new();
        providers.add_channel("local", Arc::new(Named));
        providers.add_channel("kling-a", Arc::new(Named));
        assert!(
            providers.for_model("kling-v2-6").is_none(),
            "no route and no default"
        );
        providers.route("Kling-V2-6", "kling-a");
        providers.set_default_channel("local");
        assert_eq!(
            providers.for_model("kling-v2-6").map(|(n, _)| n),
            Some("kling-a")
        );
        assert_eq!(
            providers.for_model("kling-v1").map(|(n, _)| n),
            Some("local")
        );
        assert!(providers.channel("local").is_some());
        assert!(providers.channel("missing").is_none());
        providers.route("kling-v1", "missing");
        assert!(
            providers.for_model("kling-v1").is_none(),
            "a route to an unknown channel serves nothing"
        );
        assert_eq!(
            providers.channel_names().collect::<Vec<_>>(),
            vec!["kling-a", "local"]
        );
    }
}
