//! The channels as operators see them: which are disabled and why, and how many tasks each
//! holds. Read by `kinora channels` and served as Prometheus gauges on `GET /metrics`, so an
//! alert can fire when an upstream account runs dry and its channel is disabled.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kinora_core::Error;
use kinora_store::ChannelState;

use crate::Services;

/// Every configured channel with its state, in name order. A channel with no recorded state
/// is enabled and idle.
pub async fn report(services: &Services) -> Result<Vec<ChannelState>, Error> {
    let recorded = services.store.channel_states().await?;
    Ok(services
        .providers
        .channel_names()
        .map(|name| {
            recorded
                .iter()
                .find(|s| s.channel == name)
                .cloned()
                .unwrap_or_else(|| ChannelState {
                    channel: name.to_owned(),
                    disabled_at: None,
                    reason: None,
                    in_flight: 0,
                })
        })
        .collect())
}

/// The report in Prometheus' text format.
pub fn render_metrics(channels: &[ChannelState]) -> String {
    let mut text = String::new();
    let label = |name: &str| name.replace('\\', "\\\\").replace('"', "\\\"");
    text.push_str("# HELP kinora_channel_disabled 1 while the channel is disabled until an operator enables it.\n");
    text.push_str("# TYPE kinora_channel_disabled gauge\n");
    for c in channels {
        let _ = writeln!(
            text,
            "kinora_channel_disabled{{channel=\"{}\"}} {}",
            label(&c.channel),
            u8::from(c.disabled_at.is_some())
        );
    }
    text.push_str(
        "# HELP kinora_channel_tasks_in_flight Tasks queued on the channel, submitted or running.\n",
    );
    text.push_str("# TYPE kinora_channel_tasks_in_flight gauge\n");
    for c in channels {
        let _ = writeln!(
            text,
            "kinora_channel_tasks_in_flight{{channel=\"{}\"}} {}",
            label(&c.channel),
            c.in_flight
        );
    }
    text
}

pub fn routes() -> Router<Arc<Services>> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(services): State<Arc<Services>>) -> Response {
    match report(&services).await {
        Ok(channels) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            render_metrics(&channels),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.message().to_owned()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_name_each_channel() {
        let text = render_metrics(&[
            ChannelState {
                channel: "kling-a".into(),
                disabled_at: Some(1),
                reason: Some("1102".into()),
                in_flight: 3,
            },
            ChannelState {
                channel: "local".into(),
                disabled_at: None,
                reason: None,
                in_flight: 0,
            },
        ]);
        assert!(text.contains("kinora_channel_disabled{channel=\"kling-a\"} 1\n"));
        assert!(text.contains("kinora_channel_disabled{channel=\"local\"} 0\n"));
        assert!(text.contains("kinora_channel_tasks_in_flight{channel=\"kling-a\"} 3\n"));
    }
}
