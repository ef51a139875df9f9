//! A kinora server on loopback for integration tests: the real router and workers over a
//! temporary data directory, with the bootstrap key, stopped when dropped.
#![allow(dead_code)]

use std::sync::Arc;

use std::io::Cursor;

use base64::Engine;
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

    /// The bootstrap account, which `key` acts for.
    pub async fn account(&self) -> kinora_core::AccountId {
        self.services
            .store
            .bootstrap_account()
            .await
            .expect("store")
            .expect("bootstrap account")
            .id
    }

    /// An API key of a second account, for isolation checks.
    pub async fn other_account_key(&self) -> String {
        let other = self
            .services
            .store
            .create_account("b")
            .await
            .expect("account");
        auth::issue_key(&*self.services.store, Some(other.id), None, "b")
            .await
            .expect("key")
            .secret
    }
}

pub fn png_base64(width: u32, height: u32) -> String {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    base64::engine::general_purpose::STANDARD.encode(out.into_inner())
}

/// Serves `bytes` at every path on loopback; returns the base URL.
pub async fn fixture_server(bytes: Vec<u8>, content_type: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = axum::Router::new().fallback(move || {
        let bytes = bytes.clone();
        async move { ([("content-type", content_type)], bytes) }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

pub fn png_bytes(width: u32, height: u32) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(png_base64(width, height))
        .expect("base64")
}

/// Serves the media of the seed examples on loopback, by the URL path's extension: `.mp4` the
/// given clip, `.png` a 1280x720 mask, anything else a 1280x720 JPEG.
pub async fn seed_media_server(clip: Vec<u8>) -> String {
    let jpeg = {
        let img = image::RgbImage::from_fn(1280, 720, |x, y| {
            image::Rgb([(x / 5) as u8, (y / 3) as u8, 128])
        });
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg)
            .expect("jpeg");
        out.into_inner()
    };
    let mask = {
        let img = image::GrayImage::from_fn(1280, 720, |x, _| {
            image::Luma([if x < 640 { 255 } else { 0 }])
        });
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png)
            .expect("png");
        out.into_inner()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let path = uri.path().to_owned();
        let (bytes, kind) = if path.ends_with(".mp4") {
            (clip.clone(), "video/mp4")
        } else if path.ends_with(".png") {
            (mask.clone(), "image/png")
        } else {
            (jpeg.clone(), "image/jpeg")
        };
        async move { ([("content-type", kind)], bytes) }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

/// Points every URL in a request body at `base`, keeping its path and query.
pub fn rehost(value: &mut Value, base: &str) {
    match value {
        Value::String(s) if s.starts_with("http://") || s.starts_with("https://") => {
            if let Ok(url) = url::Url::parse(s) {
                let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
                *s = format!("{base}{}{query}", url.path());
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rehost(v, base)),
        Value::Object(map) => map.values_mut().for_each(|v| rehost(v, base)),
        _ => {}
    }
}

pub async fn official_post(server: &Server, token: &str, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", server.base))
        .bearer_auth(token)
        .body(body.to_string())
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub async fn official_get(server: &Server, token: Option<&str>, path: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(format!("{}{path}", server.base));
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(body["request_id"], request_id.as_str(), "{body}");
    (status, body)
}
