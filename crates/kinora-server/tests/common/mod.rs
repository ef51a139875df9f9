//! A kinora server on loopback for integration tests: the real router and workers over a
//! temporary data directory, with the bootstrap key, stopped when dropped.
#![allow(dead_code)]

use std::sync::Arc;

use kinora_server::{auth, Config, Services};
use serde_json::Value;

pub struct Server {
    pub base: String,
    pub key: String,
    pub services: Arc<Services>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn serve() -> Server {
    serve_with(|_| {}).await
}

pub async fn serve_with(adjust: impl FnOnce(&mut Config)) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.server.public_url = base.clone();
    config.queue.poll_interval_ms = 50;
    config.render.threads = 2;
    adjust(&mut config);
    let services = Services::open(config).await.expect("services");
    let key = auth::bootstrap(&*services.store)
        .await
        .expect("bootstrap")
        .expect("first start")
        .secret;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = services.clone();
    tokio::spawn(async move {
        let _ = kinora_server::serve_on(served, listener, async {
            let _ = stopped.await;
        })
        .await;
    });
    Server {
        base,
        key,
        services,
        stop: Some(stop),
        _dir: dir,
    }
}

impl Server {
    pub async fn post(&self, key: Option<&str>, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .post(format!("{}/v1/videos", self.base))
            .body(body);
        if let Some(key) = key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, key: &str, path: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {key}"))
            .send()
            .await
            .expect("send");
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        (
            status,
            headers,
            response.json().await.unwrap_or(Value::Null),
        )
    }

    pub async fn submit(&self, body: Value) -> (u16, Value) {
        self.post(Some(&self.key), body.to_string()).await
    }
}
