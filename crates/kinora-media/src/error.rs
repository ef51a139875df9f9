use std::fmt;

/// What kind of rule a media input broke. Dialects use it to pick their error body; the
/// message is always [`MediaError`]'s `Display`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaErrorKind {
    /// A `data:` prefix where the dialect accepts raw Base64 only (the official dialect
    /// answers this with Kling's own text).
    DataUriRefused,
    /// Not valid Base64.
    InvalidBase64,
    /// Not an absolute http(s) URL, or too long.
    InvalidUrl,
    /// The address guard refused the URL's host or one of its redirects.
    AddressRefused,
    /// The server could not be reached or did not answer with the file.
    Unreachable,
    /// The connect or total time limit ran out.
    Timeout,
    /// The input is larger than the field allows.
    TooLarge,
    /// The bytes are not a format the field accepts (or not readable as one).
    Format,
    /// The file is readable but breaks a rule of the field (dimensions, aspect ratio,
    /// duration, frame rate, mask consistency).
    Rule,
    /// kinora could not store or read back its copy: a server fault, not the client's.
    Storage,
}

impl MediaErrorKind {
    /// Whether the client's input is at fault (answered 400 in every dialect) or kinora.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, Self::Storage)
    }
}

/// A media input that cannot be used. `Display` is `"{field}: {detail}"`, e.g.
/// `image: aspect ratio 3.2:1 is outside 1:2.5..2.5:1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaError {
    pub field: String,
    pub kind: MediaErrorKind,
    pub detail: String,
}

impl MediaError {
    pub fn new(field: impl Into<String>, kind: MediaErrorKind, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            kind,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for MediaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.detail)
    }
}

impl std::error::Error for MediaError {}

impl From<MediaError> for kinora_core::Error {
    fn from(err: MediaError) -> Self {
        if err.kind.is_client_error() {
            kinora_core::Error::invalid(err.to_string())
        } else {
            kinora_core::Error::new(kinora_core::ErrorCode::Storage, err.to_string())
        }
    }
}
