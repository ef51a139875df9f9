//! The fetcher against real HTTP servers on 127.0.0.1. Nothing here resolves a name other
//! than `localhost` or sends a packet to anything but loopback: every other address used is
//! one the guard must refuse before connecting.

use kinora_core::ErrorCode;
use kinora_media::fetch::{FetchConfig, Fetcher, MAX_URL_CHARS};
use kinora_media::{MediaError, MediaErrorKind};
use kinora_storage::{ObjectKey, ObjectStorage, StorageConfig};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MIB: u64 = 1024 * 1024;

/// What a test server answers to one request.
#[derive(Clone)]
enum Reply {
    /// The body with its Content-Length.
    Body { status: u16, body: Vec<u8> },
    /// `total` bytes in chunked encoding, without a Content-Length.
    Chunked { total: u64 },
    /// A Content-Length of `declared` and as much of a body as the client reads.
    Declared { declared: u64 },
    /// A few bytes, then one byte per `pause`.
    Drip { declared: u64, pause: Duration },
    Redirect {
        status: u16,
        location: Option<String>,
    },
}

#[derive(Default)]
struct Stats {
    connections: AtomicUsize,
    finished: AtomicUsize,
    /// Body bytes the server handed to its socket, i.e. sent or buffered for sending.
    body_written: AtomicU64,
    requests: Mutex<Vec<String>>,
}

struct Server {
    addr: SocketAddr,
    stats: Arc<Stats>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<String> {
        self.stats
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Waits until every connection's handler has returned.
    async fn settled(&self) {
        let start = Instant::now();
        while self.stats.finished.load(Ordering::SeqCst) < self.connections() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "server never settled"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn serve<F>(route: F) -> Server
where
    F: Fn(&str) -> Reply + Send + Sync + 'static,
{
    serve_on("127.0.0.1", route).await
}

async fn serve_on<F>(ip: &str, route: F) -> Server
where
    F: Fn(&str) -> Reply + Send + Sync + 'static,
{
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(Stats::default());
    let route = Arc::new(route);
    let server_stats = Arc::clone(&stats);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            server_stats.connections.fetch_add(1, Ordering::SeqCst);
            let stats = Arc::clone(&server_stats);
            let route = Arc::clone(&route);
            tokio::spawn(async move {
                let _ = handle(stream, &*route, &stats).await;
                stats.finished.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    Server { addr, stats }
}

async fn handle<F>(mut stream: TcpStream, route: &F, stats: &Stats) -> std::io::Result<()>
where
    F: Fn(&str) -> Reply,
{
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 65536 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
    if let Ok(mut requests) = stats.requests.lock() {
        requests.push(head);
    }
    let count = |n: usize| {
        stats.body_written.fetch_add(n as u64, Ordering::SeqCst);
    };

    match route(&path) {
        Reply::Body { status, body } => {
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&body).await?;
            count(body.len());
        }
        Reply::Chunked { total } => {
            stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                )
                .await?;
            let block = vec![b'x'; 64 * 1024];
            let mut left = total;
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                stream.write_all(format!("{n:x}\r\n").as_bytes()).await?;
                stream.write_all(&block[..n]).await?;
                stream.write_all(b"\r\n").await?;
                count(n);
                left -= n as u64;
            }
            stream.write_all(b"0\r\n\r\n").await?;
        }
        Reply::Declared { declared } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await?;
            let block = vec![b'x'; 64 * 1024];
            let mut left = declared;
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                stream.write_all(&block[..n]).await?;
                count(n);
                left -= n as u64;
            }
        }
        Reply::Drip { declared, pause } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\nxxxx"
            );
            stream.write_all(head.as_bytes()).await?;
            for _ in 4..declared {
                tokio::time::sleep(pause).await;
                stream.write_all(b"x").await?;
                count(1);
            }
        }
        Reply::Redirect { status, location } => {
            let location = location
                .map(|l| format!("Location: {l}\r\n"))
                .unwrap_or_default();
            let head = format!(
                "HTTP/1.1 {status} Moved\r\n{location}Content-Length: 5\r\nConnection: close\r\n\r\nmoved"
            );
            stream.write_all(head.as_bytes()).await?;
        }
    }
    stream.flush().await?;
    stream.shutdown().await
}

fn body(status: u16, text: &str) -> Reply {
    Reply::Body {
        status,
        body: text.as_bytes().to_vec(),
    }
}

fn redirect(location: &str) -> Reply {
    Reply::Redirect {
        status: 302,
        location: Some(location.to_owned()),
    }
}

fn config(allow: &[&str]) -> FetchConfig {
    FetchConfig {
        allow: allow.iter().map(|s| s.to_string()).collect(),
        connect_timeout_seconds: 2,
        total_timeout_seconds: 10,
        max_redirects: 5,
    }
}

fn fetcher(allow: &[&str]) -> Fetcher {
    Fetcher::new(&config(allow)).unwrap()
}

const LOOPBACK: &[&str] = &["127.0.0.1/32"];

async fn fetch_err(fetcher: &Fetcher, url: &str, max_bytes: u64) -> MediaError {
    match fetcher.fetch_bytes("image", url, max_bytes).await {
        Ok(bytes) => panic!("{url} was fetched ({} bytes)", bytes.len()),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_error(err: &MediaError, kind: MediaErrorKind, detail: &str) {
    assert_eq!(err.kind, kind, "{err}");
    assert_eq!(err.field, "image", "{err}");
    assert_eq!(err.detail, detail, "{err}");
}

// ---- refused addresses -------------------------------------------------------------------

#[tokio::test]
async fn loopback_ipv4_literal_is_refused_without_connecting() {
    let server = serve(|_| body(200, "secret")).await;
    let err = fetch_err(&fetcher(&[]), &server.url("/"), 1000).await;
    assert_error(
        &err,
        MediaErrorKind::AddressRefused,
        "address 127.0.0.1 is refused (loopback)",
    );
    assert_eq!(
        err.to_string(),
        "image: address 127.0.0.1 is refused (loopback)"
    );
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn loopback_ipv6_literal_is_refused() {
    let err = fetch_err(&fetcher(&[]), "http://[::1]:8080/", 1000).await;
    assert_error(
        &err,
        MediaErrorKind::AddressRefused,
        "address ::1 is refused (loopback)",
    );
    let err = fetch_err(&fetcher(&[]), "http://[::ffff:127.0.0.1]:8080/", 1000).await;
    assert_error(
        &err,
        MediaErrorKind::AddressRefused,
        "address ::ffff:127.0.0.1 is refused (loopback)",
    );
}

#[tokio::test]
async fn private_metadata_and_cgnat_literals_are_refused() {
    let fetcher = fetcher(&[]);
    for (url, detail) in [
        (
            "http://10.0.0.1/",
            "address 10.0.0.1 is refused (private network)",
        ),
        (
            "http://169.254.169.254/latest/meta-data/",
            "address 169.254.169.254 is refused (cloud metadata)",
        ),
        (
            "http://100.64.0.1/",
            "address 100.64.0.1 is refused (carrier-grade NAT)",
        ),
        (
            "http://100.100.100.200/latest/meta-data/",
            "address 100.100.100.200 is refused (cloud metadata)",
        ),
        (
            "https://[fd00:ec2::254]/latest/meta-data/",
            "address fd00:ec2::254 is refused (cloud metadata)",
        ),
        (
            "http://0.0.0.0:8080/",
            "address 0.0.0.0 is refused (unspecified)",
        ),
        // Other spellings of an IPv4 address are normalized by the URL parser.
        (
            "http://2130706433/",
            "address 127.0.0.1 is refused (loopback)",
        ),
        ("http://0x7f.1/", "address 127.0.0.1 is refused (loopback)"),
        (
            "http://127.1:8080/",
            "address 127.0.0.1 is refused (loopback)",
        ),
    ] {
        let started = Instant::now();
        let err = fetch_err(&fetcher, url, 1000).await;
        assert_error(&err, MediaErrorKind::AddressRefused, detail);
        // Refused up front, not after a connect attempt timed out.
        assert!(started.elapsed() < Duration::from_secs(1), "{url}");
    }
}

#[tokio::test]
async fn localhost_name_is_refused_at_resolution_without_connecting() {
    let server = serve(|_| body(200, "secret")).await;
    let url = format!("http://localhost:{}/", server.port());
    let err = fetch_err(&fetcher(&[]), &url, 1000).await;
    assert_eq!(err.kind, MediaErrorKind::AddressRefused, "{err}");
    assert!(
        err.detail.starts_with("address ")
            && err.detail.ends_with(" of localhost is refused (loopback)"),
        "{err}"
    );
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn allow_listed_server_redirecting_to_a_private_address_is_refused() {
    let server = serve(|_| redirect("http://10.0.0.1/x")).await;
    let err = fetch_err(&fetcher(LOOPBACK), &server.url("/start"), 1000).await;
    assert_error(
        &err,
        MediaErrorKind::AddressRefused,
        "redirect to address 10.0.0.1 is refused (private network)",
    );
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn allow_listed_server_redirecting_to_localhost_is_refused() {
    let server = serve(|_| body(200, "secret")).await;
    let target = format!("http://localhost:{}/", server.port());
    // On another loopback address, so allowing it does not allow what localhost resolves to.
    let redirector = serve_on("127.0.0.2", move |_| redirect(&target)).await;
    let err = fetch_err(&fetcher(&["127.0.0.2"]), &redirector.url("/"), 1000).await;
    assert_eq!(err.kind, MediaErrorKind::AddressRefused, "{err}");
    assert!(
        err.detail.starts_with("redirect to address ")
            && err.detail.ends_with(" of localhost is refused (loopback)"),
        "{err}"
    );
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn redirect_to_another_scheme_is_refused() {
    let server = serve(|_| redirect("file:///etc/passwd")).await;
    let err = fetch_err(&fetcher(LOOPBACK), &server.url("/"), 1000).await;
    assert_error(
        &err,
        MediaErrorKind::InvalidUrl,
        "redirect refused: must be an absolute http:// or https:// URL",
    );
}

#[tokio::test]
async fn redirect_with_credentials_is_refused() {
    let server = serve(|_| redirect("http://user:pw@127.0.0.1/")).await;
    let err = fetch_err(&fetcher(LOOPBACK), &server.url("/"), 1000).await;
    assert_error(
        &err,
        MediaErrorKind::InvalidUrl,
        "redirect refused: URL must not contain a user name or password",
    );
}

// ---- fetching ----------------------------------------------------------------------------

#[tokio::test]
async fn allow_listed_server_is_fetched() {
    let server = serve(|path| match path {
        "/a.png" => body(200, "png bytes"),
        _ => body(404, "no"),
    })
    .await;
    let bytes = fetcher(LOOPBACK)
        .fetch_bytes("image", &server.url("/a.png"), 1000)
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"png bytes");

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let head = requests[0].to_ascii_lowercase();
    assert!(head.starts_with("get /a.png http/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nuser-agent: kinora/"), "{head}");
}

#[tokio::test]
async fn allow_listed_host_name_is_fetched() {
    let server = serve(|_| body(200, "by name")).await;
    let url = format!("http://localhost:{}/x", server.port());
    let bytes = fetcher(&["localhost"])
        .fetch_bytes("image", &url, 1000)
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"by name");
}

#[tokio::test]
async fn redirects_within_the_allow_list_are_followed() {
    let target = serve(|path| match path {
        "/final.png" => body(200, "final"),
        _ => body(404, "no"),
    })
    .await;
    let absolute = target.url("/final.png");
    let redirector = serve(move |path| match path {
        "/301" => Reply::Redirect {
            status: 301,
            location: Some("/303".into()),
        },
        "/303" => Reply::Redirect {
            status: 303,
            location: Some("307".into()),
        },
        "/307" => Reply::Redirect {
            status: 307,
            location: Some("./308?q=1".into()),
        },
        "/308?q=1" => Reply::Redirect {
            status: 308,
            location: Some(absolute.clone()),
        },
        _ => body(404, "no"),
    })
    .await;
    let bytes = fetcher(LOOPBACK)
        .fetch_bytes("image", &redirector.url("/301"), 1000)
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"final");
    assert_eq!(redirector.requests().len(), 4);
    assert_eq!(target.requests().len(), 1);
}

fn chain(path: &str) -> Reply {
    let hops: u32 = path.trim_start_matches("/hop/").parse().unwrap_or(0);
    if hops == 0 {
        body(200, "end of chain")
    } else {
        redirect(&format!("/hop/{}", hops - 1))
    }
}

#[tokio::test]
async fn redirect_limit_is_enforced() {
    let server = serve(chain).await;
    let fetcher = fetcher(LOOPBACK);

    let bytes = fetcher
        .fetch_bytes("image", &server.url("/hop/5"), 1000)
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"end of chain");

    let err = fetch_err(&fetcher, &server.url("/hop/6"), 1000).await;
    assert_error(&err, MediaErrorKind::Unreachable, "more than 5 redirects");

    let none = Fetcher::new(&FetchConfig {
        max_redirects: 0,
        ..config(LOOPBACK)
    })
    .unwrap();
    let err = fetch_err(&none, &server.url("/hop/1"), 1000).await;
    assert_error(&err, MediaErrorKind::Unreachable, "more than 0 redirects");
}

#[tokio::test]
async fn redirect_without_location_is_unreachable() {
    let server = serve(|_| Reply::Redirect {
        status: 302,
        location: None,
    })
    .await;
    let err = fetch_err(&fetcher(LOOPBACK), &server.url("/"), 1000).await;
    assert_error(
        &err,
        MediaErrorKind::Unreachable,
        "the server answered HTTP 302 Found without a Location header",
    );
}

#[tokio::test]
async fn error_status_is_unreachable() {
    let server = serve(|_| body(404, "not here")).await;
    let err = fetch_err(
        &fetcher(LOOPBACK),
        &server.url("/missing.png?sig=secret"),
        1000,
    )
    .await;
    assert_error(
        &err,
        MediaErrorKind::Unreachable,
        "the server answered HTTP 404 Not Found",
    );
    let server = serve(|_| body(503, "busy")).await;
    let err = fetch_err(&fetcher(LOOPBACK), &server.url("/"), 1000).await;
    assert_error(
        &err,
        MediaErrorKind::Unreachable,
        "the server answered HTTP 503 Service Unavailable",
    );
}

#[tokio::test]
async fn closed_port_is_unreachable() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/a.png?sig=secret");
    let err = fetch_err(&fetcher(LOOPBACK), &url, 1000).await;
    assert_eq!(err.kind, MediaErrorKind::Unreachable, "{err}");
    assert!(
        err.detail
            .starts_with(&format!("could not connect to 127.0.0.1:{port}: ")),
        "{err}"
    );
    assert!(!err.detail.contains("secret"), "{err}");
}

// ---- size limits -------------------------------------------------------------------------

#[tokio::test]
async fn body_of_exactly_the_limit_is_accepted() {
    let server = serve(|path| match path {
        "/sized" => Reply::Body {
            status: 200,
            body: vec![7u8; 1000],
        },
        _ => Reply::Chunked { total: 1000 },
    })
    .await;
    let fetcher = fetcher(LOOPBACK);
    for path in ["/sized", "/chunked"] {
        let bytes = fetcher
            .fetch_bytes("image", &server.url(path), 1000)
            .await
            .unwrap();
        assert_eq!(bytes.len(), 1000, "{path}");
    }
    let err = fetch_err(&fetcher, &server.url("/sized"), 999).await;
    assert_error(
        &err,
        MediaErrorKind::TooLarge,
        "file is larger than 999 bytes",
    );
    let err = fetch_err(&fetcher, &server.url("/chunked"), 999).await;
    assert_error(
        &err,
        MediaErrorKind::TooLarge,
        "file is larger than 999 bytes",
    );
}

#[tokio::test]
async fn declared_oversize_is_refused_before_reading() {
    let server = serve(|_| Reply::Declared {
        declared: 10 * MIB + 1,
    })
    .await;
    let err = fetch_err(&fetcher(LOOPBACK), &server.url("/big.png"), 10 * MIB).await;
    assert_error(
        &err,
        MediaErrorKind::TooLarge,
        "file is larger than 10 MB (10485760 bytes)",
    );
}

#[tokio::test]
async fn chunked_oversize_is_cut_off_and_memory_stays_bounded() {
    let total = 64 * MIB;
    let server = serve(move |_| Reply::Chunked { total }).await;
    let err = fetch_err(&fetcher(LOOPBACK), &server.url("/huge"), MIB).await;
    assert_error(
        &err,
        MediaErrorKind::TooLarge,
        "file is larger than 1 MB (1048576 bytes)",
    );
    server.settled().await;
    // What the server got rid of includes what sat in the two loopback socket buffers when
    // the client hung up, so it is more than the limit but nowhere near the whole body.
    let written = server.stats.body_written.load(Ordering::SeqCst);
    assert!(written > MIB, "{written}");
    assert!(written < 16 * MIB, "server wrote {written} bytes");
}

#[tokio::test]
async fn slow_drip_is_cut_off_by_the_total_timeout() {
    let server = serve(|_| Reply::Drip {
        declared: 1000,
        pause: Duration::from_millis(300),
    })
    .await;
    let fetcher = Fetcher::new(&FetchConfig {
        total_timeout_seconds: 1,
        ..config(LOOPBACK)
    })
    .unwrap();
    let started = Instant::now();
    let err = fetch_err(&fetcher, &server.url("/slow"), MIB).await;
    let elapsed = started.elapsed();
    assert_error(
        &err,
        MediaErrorKind::Timeout,
        "the download did not finish within 1 s",
    );
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    // The server did get to send some of it: the limit cut a live body, not a dead connect.
    assert!(server.stats.body_written.load(Ordering::SeqCst) >= 1);
}

// ---- into storage ------------------------------------------------------------------------

fn memory_storage() -> ObjectStorage {
    ObjectStorage::open(&StorageConfig::Memory).unwrap()
}

fn key(text: &str) -> ObjectKey {
    ObjectKey::parse(text).unwrap()
}

#[tokio::test]
async fn fetch_to_storage_stores_the_body() {
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let served = payload.clone();
    let server = serve(move |path| match path {
        "/big" => Reply::Chunked { total: 7 * MIB },
        _ => Reply::Body {
            status: 200,
            body: served.clone(),
        },
    })
    .await;
    let fetcher = fetcher(LOOPBACK);
    let storage = memory_storage();

    let small = key("tasks/t1/input/image");
    let stored = fetcher
        .fetch_to_storage("image", &server.url("/a.png"), MIB, &storage, &small)
        .await
        .unwrap();
    assert_eq!(stored.key, small);
    assert_eq!(stored.size, payload.len() as u64);
    assert_eq!(storage.get_bytes(&small).await.unwrap(), payload);

    // Large enough for a multipart upload.
    let large = key("tasks/t1/input/video");
    let stored = fetcher
        .fetch_to_storage("video", &server.url("/big"), 8 * MIB, &storage, &large)
        .await
        .unwrap();
    assert_eq!(stored.size, 7 * MIB);
    assert_eq!(
        storage.head(&large).await.unwrap().map(|o| o.size),
        Some(7 * MIB)
    );
}

#[tokio::test]
async fn fetch_to_storage_leaves_nothing_behind_on_failure() {
    let server = serve(|path| match path {
        "/declared" => Reply::Declared { declared: 2 * MIB },
        "/chunked" => Reply::Chunked { total: 2 * MIB },
        "/multipart" => Reply::Chunked { total: 12 * MIB },
        "/slow" => Reply::Drip {
            declared: 100,
            pause: Duration::from_millis(300),
        },
        "/private" => redirect("http://10.0.0.1/x"),
        _ => body(404, "no"),
    })
    .await;
    let storage = memory_storage();
    let fetcher = Fetcher::new(&FetchConfig {
        total_timeout_seconds: 1,
        ..config(LOOPBACK)
    })
    .unwrap();
    let prefix = key("tasks/t2");

    for (path, max, kind, detail) in [
        (
            "/declared",
            MIB,
            MediaErrorKind::TooLarge,
            "file is larger than 1 MB (1048576 bytes)",
        ),
        (
            "/chunked",
            MIB,
            MediaErrorKind::TooLarge,
            "file is larger than 1 MB (1048576 bytes)",
        ),
        (
            "/multipart",
            6 * MIB,
            MediaErrorKind::TooLarge,
            "file is larger than 6 MB (6291456 bytes)",
        ),
        (
            "/slow",
            MIB,
            MediaErrorKind::Timeout,
            "the download did not finish within 1 s",
        ),
        (
            "/private",
            MIB,
            MediaErrorKind::AddressRefused,
            "redirect to address 10.0.0.1 is refused (private network)",
        ),
        (
            "/missing",
            MIB,
            MediaErrorKind::Unreachable,
            "the server answered HTTP 404 Not Found",
        ),
    ] {
        let target = key("tasks/t2/input/image");
        let err = match fetcher
            .fetch_to_storage("image", &server.url(path), max, &storage, &target)
            .await
        {
            Ok(stored) => panic!("{path} was stored: {stored:?}"),
            Err(e) => e,
        };
        assert_error(&err, kind, detail);
        assert_eq!(storage.head(&target).await.unwrap(), None, "{path}");
        assert_eq!(storage.list(&prefix).await.unwrap(), vec![], "{path}");
    }
}

// ---- check_url ---------------------------------------------------------------------------

#[tokio::test]
async fn check_url_refuses_bad_syntax_and_refused_addresses() {
    let fetcher = fetcher(&[]);
    let long = format!("http://example.com/{}", "a".repeat(MAX_URL_CHARS - 18));
    assert_eq!(long.chars().count(), MAX_URL_CHARS + 1);
    for (url, kind, detail) in [
        (
            "ftp://x",
            MediaErrorKind::InvalidUrl,
            "must be an absolute http:// or https:// URL",
        ),
        (
            "not a url",
            MediaErrorKind::InvalidUrl,
            "must be an absolute http:// or https:// URL",
        ),
        (
            "http://user:pw@example.com/",
            MediaErrorKind::InvalidUrl,
            "URL must not contain a user name or password",
        ),
        (
            long.as_str(),
            MediaErrorKind::InvalidUrl,
            "URL is longer than 2048 characters",
        ),
        (
            "http://127.0.0.1/",
            MediaErrorKind::AddressRefused,
            "address 127.0.0.1 is refused (loopback)",
        ),
        (
            "https://[fe80::1]/hook",
            MediaErrorKind::AddressRefused,
            "address fe80::1 is refused (link-local)",
        ),
    ] {
        let err = match fetcher.check_url("callback_url", url).await {
            Ok(ok) => panic!("{url} was accepted as {ok}"),
            Err(e) => e,
        };
        assert_eq!(err.field, "callback_url");
        assert_eq!(err.kind, kind, "{err}");
        assert_eq!(err.detail, detail, "{url}");
    }

    let err = fetcher
        .check_url("callback_url", "http://localhost:9/hook")
        .await
        .map(|u| u.to_string())
        .unwrap_err();
    assert_eq!(err.kind, MediaErrorKind::AddressRefused, "{err}");
    assert!(
        err.detail.ends_with(" of localhost is refused (loopback)"),
        "{err}"
    );
}

#[tokio::test]
async fn check_url_accepts_allowed_addresses_without_connecting() {
    let server = serve(|_| body(200, "hook")).await;
    let by_ip = fetcher(LOOPBACK);
    let url = by_ip
        .check_url("callback_url", &server.url("/hook?a=1"))
        .await
        .unwrap();
    assert_eq!(url.as_str(), server.url("/hook?a=1"));
    let by_name = fetcher(&["localhost"]);
    let hook = format!("http://LOCALHOST:{}/hook", server.port());
    let url = by_name.check_url("callback_url", &hook).await.unwrap();
    assert_eq!(url.host_str(), Some("localhost"));
    assert_eq!(server.connections(), 0);
}

// ---- configuration -----------------------------------------------------------------------

#[test]
fn bad_configuration_is_refused() {
    let err = Fetcher::new(&config(&["10.0.0.0/33"])).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Config);
    assert!(err.message().contains("\"10.0.0.0/33\""), "{err}");

    for broken in [
        FetchConfig {
            connect_timeout_seconds: 0,
            ..FetchConfig::default()
        },
        FetchConfig {
            total_timeout_seconds: 0,
            ..FetchConfig::default()
        },
    ] {
        let err = Fetcher::new(&broken).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Config, "{err}");
    }
    assert!(Fetcher::new(&FetchConfig::default()).is_ok());
}
