//! Fetching user-supplied http(s) URLs through the address guard.
//!
//! The guard runs where the connection is made: the client's DNS resolver drops refused
//! addresses, so a name that resolves differently between a check and the connect (DNS
//! rebinding) still cannot reach a refused address. IP-literal hosts never reach a resolver
//! and are checked before each request. Redirects are followed here, one hop at a time, so
//! every hop passes the same checks.

use crate::guard::{forbidden_reason, AllowList};
use crate::{MediaError, MediaErrorKind};
use bytes::{Bytes, BytesMut};
use kinora_core::{Error, ErrorCode};
use kinora_storage::{ObjectKey, ObjectStorage, StoredObject};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{header, StatusCode};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::time::Instant;
use url::{Host, Url};

/// Longest URL accepted in any URL field, callbacks included.
pub const MAX_URL_CHARS: usize = 2048;

const USER_AGENT: &str = concat!("kinora/", env!("CARGO_PKG_VERSION"));

const MIB: u64 = 1024 * 1024;

/// Upper bound on what is reserved up front for a body with a declared length, so a large
/// declared length costs memory only as the bytes actually arrive.
const MAX_PREALLOCATION: u64 = 8 * MIB;

/// How URL inputs are fetched.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FetchConfig {
    /// Hosts and networks the address guard lets through (see [`AllowList`]).
    pub allow: Vec<String>,
    pub connect_timeout_seconds: u64,
    /// Covers resolving, connecting, every redirect and the whole body.
    pub total_timeout_seconds: u64,
    pub max_redirects: u32,
}

impl FetchConfig {
    /// Checks the settings without building a client; returns the parsed allow-list.
    pub fn validate(&self) -> Result<AllowList, Error> {
        let allow = AllowList::parse(&self.allow)?;
        for (name, value) in [
            ("connect_timeout_seconds", self.connect_timeout_seconds),
            ("total_timeout_seconds", self.total_timeout_seconds),
        ] {
            if value == 0 {
                return Err(Error::new(
                    ErrorCode::Config,
                    format!("fetch {name} must be at least 1"),
                ));
            }
        }
        Ok(allow)
    }
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            connect_timeout_seconds: 10,
            total_timeout_seconds: 120,
            max_redirects: 5,
        }
    }
}

/// Fetches URLs through the address guard; cheap to clone and share.
#[derive(Clone, Debug)]
pub struct Fetcher {
    client: reqwest::Client,
    allow: Arc<AllowList>,
    connect_timeout: Duration,
    total_timeout: Duration,
    max_redirects: u32,
}

impl Fetcher {
    pub fn new(config: &FetchConfig) -> Result<Self, Error> {
        let allow = Arc::new(config.validate()?);
        let connect_timeout = Duration::from_secs(config.connect_timeout_seconds);
        let client = reqwest::Client::builder()
            // Redirects are followed by hand so that every hop is checked.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would make the connection, and the guard would only see the proxy.
            .no_proxy()
            .connect_timeout(connect_timeout)
            .dns_resolver(Arc::new(GuardedResolver {
                allow: Arc::clone(&allow),
            }))
            .retry(reqwest::retry::never())
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| Error::internal(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            allow,
            connect_timeout,
            total_timeout: Duration::from_secs(config.total_timeout_seconds),
            max_redirects: config.max_redirects,
        })
    }

    /// Syntax and address check without fetching (for callback URLs at submit): an absolute
    /// http(s) URL of at most [`MAX_URL_CHARS`] characters, without a user name or password,
    /// whose host resolves and whose every address the guard allows. Resolving gets the connect
    /// timeout, since a callback check must not hold up the submit for the whole fetch limit.
    pub async fn check_url(&self, field: &str, url: &str) -> Result<Url, MediaError> {
        let url = parse_url(field, url, Hop::First)?;
        match url.host() {
            Some(Host::Domain(domain)) => {
                let lookup = resolve(&self.allow, domain, Screen::AllAllowed);
                match tokio::time::timeout(self.connect_timeout, lookup).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e.into_media(field, Hop::First)),
                    Err(_) => {
                        return Err(MediaError::new(
                            field,
                            MediaErrorKind::Timeout,
                            format!(
                                "resolving {domain} took longer than {} s",
                                self.connect_timeout.as_secs()
                            ),
                        ))
                    }
                }
            }
            _ => self.check_literal(field, &url, Hop::First)?,
        }
        Ok(url)
    }

    /// Fetches the whole body into memory, refusing more than `max_bytes`.
    pub async fn fetch_bytes(
        &self,
        field: &str,
        url: &str,
        max_bytes: u64,
    ) -> Result<Bytes, MediaError> {
        let deadline = Instant::now() + self.total_timeout;
        let work = async {
            let mut response = self.open(field, url).await?;
            let declared = check_declared_length(field, &response, max_bytes)?;
            let capacity = declared.unwrap_or(0).min(MAX_PREALLOCATION);
            let mut body = BytesMut::with_capacity(usize::try_from(capacity).unwrap_or(0));
            while let Some(chunk) = response.chunk().await.map_err(|e| body_error(field, &e))? {
                // Checked before appending, so the buffer never holds more than the limit.
                if body.len() as u64 + chunk.len() as u64 > max_bytes {
                    return Err(too_large(field, max_bytes));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body.freeze())
        };
        tokio::time::timeout_at(deadline, work)
            .await
            .unwrap_or_else(|_| Err(self.total_timeout_error(field)))
    }

    /// Streams the body into object storage under `key`, refusing more than `max_bytes`;
    /// nothing is left behind on failure.
    ///
    /// The total time limit covers the fetch but not the storage backend's own writes: the
    /// body stream fails at the deadline, which lets the upload abort itself cleanly instead
    /// of being dropped halfway through a write.
    pub async fn fetch_to_storage(
        &self,
        field: &str,
        url: &str,
        max_bytes: u64,
        storage: &ObjectStorage,
        key: &ObjectKey,
    ) -> Result<StoredObject, MediaError> {
        let deadline = Instant::now() + self.total_timeout;
        let response = tokio::time::timeout_at(deadline, self.open(field, url))
            .await
            .unwrap_or_else(|_| Err(self.total_timeout_error(field)))?;
        check_declared_length(field, &response, max_bytes)?;

        // The storage layer turns a stream error into a message; the error itself is kept
        // here so the caller gets its kind back.
        let failure: Arc<OnceLock<MediaError>> = Arc::new(OnceLock::new());
        let body = BodyStream {
            field: field.to_owned(),
            max_bytes,
            deadline,
            total_timeout: self.total_timeout,
            failure: Arc::clone(&failure),
        }
        .into_stream(response);

        match storage.put_stream(key, body, Some(max_bytes)).await {
            Ok(object) => Ok(object),
            Err(e) => {
                if let Some(cause) = failure.get() {
                    return Err(cause.clone());
                }
                if e.code() == ErrorCode::InvalidInput {
                    return Err(too_large(field, max_bytes));
                }
                tracing::warn!(key = %key, error = %e, "storing a fetched input failed");
                Err(MediaError::new(
                    field,
                    MediaErrorKind::Storage,
                    "the fetched file could not be stored",
                ))
            }
        }
    }

    /// Sends the request and follows redirects up to the configured limit, checking every
    /// hop; returns the final 2xx response with its body unread.
    async fn open(&self, field: &str, url: &str) -> Result<reqwest::Response, MediaError> {
        let mut current = parse_url(field, url, Hop::First)?;
        let mut redirects = 0u32;
        loop {
            let hop = if redirects == 0 {
                Hop::First
            } else {
                Hop::Redirect
            };
            self.check_literal(field, &current, hop)?;
            let response = self
                .client
                .get(current.clone())
                .send()
                .await
                .map_err(|e| self.send_error(field, &current, hop, &e))?;
            let status = response.status();
            if is_redirect(status) {
                if redirects >= self.max_redirects {
                    return Err(MediaError::new(
                        field,
                        MediaErrorKind::Unreachable,
                        format!("more than {} redirects", self.max_redirects),
                    ));
                }
                current = redirect_target(field, &current, &response)?;
                redirects += 1;
                continue;
            }
            if !status.is_success() {
                return Err(MediaError::new(
                    field,
                    MediaErrorKind::Unreachable,
                    format!("the server answered HTTP {}", status_text(status)),
                ));
            }
            return Ok(response);
        }
    }

    fn check_literal(&self, field: &str, url: &Url, hop: Hop) -> Result<(), MediaError> {
        let ip = match url.host() {
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
            _ => return Ok(()),
        };
        if self.allow.allows_ip(ip) {
            return Ok(());
        }
        match forbidden_reason(ip) {
            Some(reason) => Err(GuardError::Refused {
                host: None,
                ip,
                reason,
            }
            .into_media(field, hop)),
            None => Ok(()),
        }
    }

    fn send_error(&self, field: &str, url: &Url, hop: Hop, err: &reqwest::Error) -> MediaError {
        if let Some(guard) = find_cause::<GuardError>(err) {
            return guard.clone().into_media(field, hop);
        }
        let target = authority(url);
        if err.is_timeout() {
            return MediaError::new(
                field,
                MediaErrorKind::Timeout,
                format!(
                    "could not connect to {target} within {} s",
                    self.connect_timeout.as_secs()
                ),
            );
        }
        let detail = if err.is_connect() {
            format!("could not connect to {target}: {}", root_cause(err))
        } else {
            format!("the request to {target} failed: {}", root_cause(err))
        };
        MediaError::new(field, MediaErrorKind::Unreachable, detail)
    }

    fn total_timeout_error(&self, field: &str) -> MediaError {
        total_timeout_error(field, self.total_timeout)
    }

    /// A client for POSTing to user-supplied URLs (callbacks) through the same guard: every
    /// resolved address is checked, redirects are never followed, and connecting is bounded
    /// by `connect_timeout`.
    pub fn poster(&self, connect_timeout: Duration) -> Result<Poster, Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(connect_timeout)
            .dns_resolver(Arc::new(GuardedResolver {
                allow: Arc::clone(&self.allow),
            }))
            .retry(reqwest::retry::never())
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| Error::internal(format!("cannot build the HTTP client: {e}")))?;
        Ok(Poster {
            fetcher: Fetcher {
                client,
                allow: Arc::clone(&self.allow),
                connect_timeout,
                total_timeout: self.total_timeout,
                max_redirects: 0,
            },
        })
    }
}

/// POSTs through the address guard (see [`Fetcher::poster`]).
#[derive(Clone, Debug)]
pub struct Poster {
    fetcher: Fetcher,
}

/// What a POST's target answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostAnswer {
    pub status: u16,
    /// The first bytes of the answer, at most the limit asked for.
    pub body: Bytes,
}

impl Poster {
    /// POSTs `body` with `headers` to `url`; the whole exchange is bounded by `total_timeout`
    /// and at most `max_answer_bytes` of the answer are read. A redirect is an answer like
    /// any other (its status is returned), never followed.
    pub async fn post(
        &self,
        field: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
        total_timeout: Duration,
        max_answer_bytes: usize,
    ) -> Result<PostAnswer, MediaError> {
        let fetcher = &self.fetcher;
        let target = parse_url(field, url, Hop::First)?;
        fetcher.check_literal(field, &target, Hop::First)?;
        let work = async {
            let mut request = fetcher.client.post(target.clone()).body(body);
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            let mut response = request
                .send()
                .await
                .map_err(|e| fetcher.send_error(field, &target, Hop::First, &e))?;
            let status = response.status().as_u16();
            let mut answer = BytesMut::new();
            while answer.len() < max_answer_bytes {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        let room = max_answer_bytes - answer.len();
                        answer.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    }
                    // The status decides the outcome; an answer cut short does not change it.
                    Ok(None) | Err(_) => break,
                }
            }
            Ok(PostAnswer {
                status,
                body: answer.freeze(),
            })
        };
        tokio::time::timeout(total_timeout, work)
            .await
            .unwrap_or_else(|_| Err(total_timeout_error(field, total_timeout)))
    }
}

fn total_timeout_error(field: &str, limit: Duration) -> MediaError {
    MediaError::new(
        field,
        MediaErrorKind::Timeout,
        format!("the download did not finish within {} s", limit.as_secs()),
    )
}

/// Feeds a response body to the storage layer, enforcing the size and time limits itself so
/// that a failure keeps its kind.
struct BodyStream {
    field: String,
    max_bytes: u64,
    deadline: Instant,
    total_timeout: Duration,
    failure: Arc<OnceLock<MediaError>>,
}

impl BodyStream {
    fn into_stream(
        self,
        response: reqwest::Response,
    ) -> impl futures::Stream<Item = Result<Bytes, MediaError>> + Send {
        let this = Arc::new(self);
        futures::stream::unfold(Some((response, 0u64)), move |state| {
            let this = Arc::clone(&this);
            async move {
                let (mut response, received) = state?;
                match this.next_chunk(&mut response, received).await {
                    Ok(Some(chunk)) => {
                        let received = received + chunk.len() as u64;
                        Some((Ok(chunk), Some((response, received))))
                    }
                    Ok(None) => None,
                    Err(e) => {
                        let _ = this.failure.set(e.clone());
                        Some((Err(e), None))
                    }
                }
            }
        })
    }

    async fn next_chunk(
        &self,
        response: &mut reqwest::Response,
        received: u64,
    ) -> Result<Option<Bytes>, MediaError> {
        let chunk = tokio::time::timeout_at(self.deadline, response.chunk())
            .await
            .map_err(|_| total_timeout_error(&self.field, self.total_timeout))?
            .map_err(|e| body_error(&self.field, &e))?;
        if let Some(chunk) = &chunk {
            if received + chunk.len() as u64 > self.max_bytes {
                return Err(too_large(&self.field, self.max_bytes));
            }
        }
        Ok(chunk)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hop {
    First,
    Redirect,
}

/// The syntax rules every URL must pass, before anything is resolved.
fn parse_url(field: &str, text: &str, hop: Hop) -> Result<Url, MediaError> {
    let invalid = |detail: &str| {
        let detail = match hop {
            Hop::First => detail.to_owned(),
            Hop::Redirect => format!("redirect refused: {detail}"),
        };
        MediaError::new(field, MediaErrorKind::InvalidUrl, detail)
    };
    if text.chars().count() > MAX_URL_CHARS {
        return Err(invalid(&format!(
            "URL is longer than {MAX_URL_CHARS} characters"
        )));
    }
    let absolute = "must be an absolute http:// or https:// URL";
    let url = Url::parse(text).map_err(|_| invalid(absolute))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid(absolute));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("URL must not contain a user name or password"));
    }
    Ok(url)
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    )
}

fn redirect_target(
    field: &str,
    current: &Url,
    response: &reqwest::Response,
) -> Result<Url, MediaError> {
    let status = response.status();
    let unusable = |what: &str| {
        MediaError::new(
            field,
            MediaErrorKind::Unreachable,
            format!("the server answered HTTP {} {what}", status_text(status)),
        )
    };
    let location = response
        .headers()
        .get(header::LOCATION)
        .ok_or_else(|| unusable("without a Location header"))?;
    let location = std::str::from_utf8(location.as_bytes())
        .map_err(|_| unusable("with an unreadable Location"))?;
    let next = current
        .join(location.trim())
        .map_err(|_| unusable("with an unreadable Location"))?;
    parse_url(field, next.as_str(), Hop::Redirect)
}

fn check_declared_length(
    field: &str,
    response: &reqwest::Response,
    max_bytes: u64,
) -> Result<Option<u64>, MediaError> {
    let declared = response.content_length();
    if declared.is_some_and(|len| len > max_bytes) {
        return Err(too_large(field, max_bytes));
    }
    Ok(declared)
}

fn too_large(field: &str, max_bytes: u64) -> MediaError {
    MediaError::new(field, MediaErrorKind::TooLarge, too_large_detail(max_bytes))
}

fn too_large_detail(max_bytes: u64) -> String {
    // A mask rather than `%`: clippy asks for `is_multiple_of`, which is newer than the MSRV.
    if max_bytes >= MIB && max_bytes & (MIB - 1) == 0 {
        format!(
            "file is larger than {} MB ({max_bytes} bytes)",
            max_bytes / MIB
        )
    } else {
        format!("file is larger than {max_bytes} bytes")
    }
}

fn body_error(field: &str, err: &reqwest::Error) -> MediaError {
    MediaError::new(
        field,
        MediaErrorKind::Unreachable,
        format!("reading the file failed: {}", root_cause(err)),
    )
}

fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// Host and port only: the path and query may carry signed tokens that do not belong in
/// error messages or logs.
fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

fn find_cause<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// The innermost cause, which names what actually went wrong (reqwest's own message also
/// contains the whole URL).
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = err;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    let text = innermost.to_string();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Why the guard stopped a host; travels through reqwest's error chain from the resolver.
#[derive(Clone, Debug)]
enum GuardError {
    Refused {
        host: Option<String>,
        ip: IpAddr,
        reason: &'static str,
    },
    NotResolved {
        host: String,
    },
}

impl GuardError {
    fn into_media(self, field: &str, hop: Hop) -> MediaError {
        let prefix = match hop {
            Hop::First => "",
            Hop::Redirect => "redirect to ",
        };
        match self {
            GuardError::Refused { .. } => MediaError::new(
                field,
                MediaErrorKind::AddressRefused,
                format!("{prefix}{self}"),
            ),
            GuardError::NotResolved { .. } => MediaError::new(
                field,
                MediaErrorKind::Unreachable,
                format!("{prefix}{self}"),
            ),
        }
    }
}

impl fmt::Display for GuardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuardError::Refused {
                host: Some(host),
                ip,
                reason,
            } => write!(f, "address {ip} of {host} is refused ({reason})"),
            GuardError::Refused {
                host: None,
                ip,
                reason,
            } => write!(f, "address {ip} is refused ({reason})"),
            GuardError::NotResolved { host } => write!(f, "host {host} could not be resolved"),
        }
    }
}

impl std::error::Error for GuardError {}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Screen {
    /// Connect-time: refused addresses are dropped, the rest are used.
    DropRefused,
    /// Up-front check: one refused address refuses the host.
    AllAllowed,
}

/// Resolves `host` and applies the guard to every address.
async fn resolve(
    allow: &AllowList,
    host: &str,
    screen: Screen,
) -> Result<Vec<SocketAddr>, GuardError> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|_| GuardError::NotResolved {
            host: host.to_owned(),
        })?
        .collect();
    if resolved.is_empty() {
        return Err(GuardError::NotResolved {
            host: host.to_owned(),
        });
    }
    if allow.allows_host(host) {
        return Ok(resolved);
    }
    let mut allowed = Vec::with_capacity(resolved.len());
    let mut refused = None;
    for addr in resolved {
        let ip = addr.ip();
        match forbidden_reason(ip).filter(|_| !allow.allows_ip(ip)) {
            None => allowed.push(addr),
            Some(reason) => {
                tracing::debug!(host, %ip, reason, "address guard refused a resolved address");
                refused.get_or_insert(GuardError::Refused {
                    host: Some(host.to_owned()),
                    ip,
                    reason,
                });
            }
        }
    }
    match refused {
        Some(refusal) if allowed.is_empty() || screen == Screen::AllAllowed => Err(refusal),
        _ => Ok(allowed),
    }
}

/// The resolver every connection of the fetch client goes through.
struct GuardedResolver {
    allow: Arc<AllowList>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = Arc::clone(&self.allow);
        Box::pin(async move {
            let addrs = resolve(&allow, name.as_str(), Screen::DropRefused).await?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_named_in_megabytes_when_whole() {
        assert_eq!(
            too_large_detail(10 * MIB),
            "file is larger than 10 MB (10485760 bytes)"
        );
        assert_eq!(
            too_large_detail(200 * MIB),
            "file is larger than 200 MB (209715200 bytes)"
        );
        assert_eq!(too_large_detail(1000), "file is larger than 1000 bytes");
        assert_eq!(
            too_large_detail(MIB + 1),
            "file is larger than 1048577 bytes"
        );
    }

    fn syntax_error(text: &str) -> String {
        match parse_url("image", text, Hop::First) {
            Ok(url) => panic!("{text:?} was accepted as {url}"),
            Err(e) => {
                assert_eq!(e.kind, MediaErrorKind::InvalidUrl, "{text:?}");
                e.detail
            }
        }
    }

    #[test]
    fn url_syntax_rules() {
        let absolute = "must be an absolute http:// or https:// URL";
        for text in [
            "",
            "example.com/a.png",
            "/a.png",
            "ftp://example.com/a.png",
            "file:///etc/passwd",
            "data:image/png;base64,AAAA",
            "javascript:alert(1)",
            "http://",
        ] {
            assert_eq!(syntax_error(text), absolute, "{text:?}");
        }
        for text in [
            "http://user:pw@example.com/",
            "http://user@example.com/",
            "https://:pw@example.com/",
        ] {
            assert_eq!(
                syntax_error(text),
                "URL must not contain a user name or password"
            );
        }

        let base = "https://example.com/";
        let fits = format!("{base}{}", "a".repeat(MAX_URL_CHARS - base.len()));
        assert!(parse_url("image", &fits, Hop::First).is_ok());
        let long = format!("{fits}a");
        assert_eq!(syntax_error(&long), "URL is longer than 2048 characters");
        // Characters, not bytes, are counted.
        let wide = format!("{base}{}", "é".repeat(MAX_URL_CHARS - base.len()));
        assert!(parse_url("image", &wide, Hop::First).is_ok());

        let redirect = parse_url("image", "gopher://x/", Hop::Redirect);
        assert_eq!(
            redirect.map_err(|e| e.detail),
            Err(format!("redirect refused: {absolute}"))
        );
    }

    #[test]
    fn only_the_five_redirect_statuses_are_followed() {
        for code in [301, 302, 303, 307, 308] {
            assert!(is_redirect(
                StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
            ));
        }
        for code in [200, 300, 304, 305, 306, 400] {
            assert!(!is_redirect(
                StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
            ));
        }
    }

    #[test]
    fn error_messages_leave_out_path_and_query() {
        let url = Url::parse("https://files.example:8443/a/b.png?sig=secret").ok();
        assert_eq!(
            url.as_ref().map(authority).as_deref(),
            Some("files.example:8443")
        );
    }

    #[test]
    fn config_defaults_and_unknown_fields() {
        let config: FetchConfig = serde_json::from_str("{}").unwrap_or_default();
        assert_eq!(config, FetchConfig::default());
        assert_eq!(config.connect_timeout_seconds, 10);
        assert_eq!(config.total_timeout_seconds, 120);
        assert_eq!(config.max_redirects, 5);
        assert!(config.allow.is_empty());
        assert!(serde_json::from_str::<FetchConfig>(r#"{"allowlist": []}"#).is_err());
    }
}
