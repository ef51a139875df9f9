//! Where an input's bytes come from: a URL to fetch, or Base64 to decode, told apart by the
//! rule every dialect shares (a value starting with `http://` or `https://` is a URL; one
//! starting with `data:` is a data URI; anything else is raw Base64).

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use bytes::Bytes;

use crate::{MediaError, MediaErrorKind};

/// What each dialect accepts in an image field besides URLs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InlinePolicy {
    /// Raw Base64 or a `data:image/...;base64,` URI (the unified dialect).
    Base64OrDataUri,
    /// Raw Base64 only; a `data:` prefix is refused as Kling refuses it (the official dialect).
    RawBase64Only,
    /// URLs only (AceData, and every video field).
    UrlOnly,
}

/// An input as the request gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaSource {
    Url(String),
    /// Raw Base64 text (a data URI's prefix already removed).
    Base64(String),
}

impl MediaSource {
    /// Classifies `value` under the dialect's policy.
    pub fn parse(field: &str, value: &str, policy: InlinePolicy) -> Result<Self, MediaError> {
        let trimmed = value.trim();
        if starts_with_ignore_case(trimmed, "http://")
            || starts_with_ignore_case(trimmed, "https://")
        {
            return Ok(Self::Url(trimmed.to_owned()));
        }
        if policy == InlinePolicy::UrlOnly {
            return Err(MediaError::new(
                field,
                MediaErrorKind::InvalidUrl,
                "must be an absolute http:// or https:// URL",
            ));
        }
        if starts_with_ignore_case(trimmed, "data:") {
            if policy == InlinePolicy::RawBase64Only {
                return Err(MediaError::new(
                    field,
                    MediaErrorKind::DataUriRefused,
                    "File is not in a valid base64 format",
                ));
            }
            return data_uri_payload(field, trimmed).map(|b64| Self::Base64(b64.to_owned()));
        }
        Ok(Self::Base64(trimmed.to_owned()))
    }
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// The Base64 part of `data:image/<type>;base64,<data>`.
fn data_uri_payload<'a>(field: &str, uri: &'a str) -> Result<&'a str, MediaError> {
    let invalid = |detail: &str| MediaError::new(field, MediaErrorKind::InvalidBase64, detail);
    let (header, payload) = uri
        .split_once(',')
        .ok_or_else(|| invalid("data URI has no `,` before its data"))?;
    let header = header.get(5..).unwrap_or_default();
    let mut parts = header.split(';');
    let media_type = parts.next().unwrap_or_default();
    if !starts_with_ignore_case(media_type, "image/") {
        return Err(invalid("data URI must have an image/... media type"));
    }
    if !parts.any(|p| p.eq_ignore_ascii_case("base64")) {
        return Err(invalid("data URI must be Base64-encoded (`;base64,`)"));
    }
    Ok(payload)
}

/// Decodes Base64 (standard alphabet, padding optional, ASCII whitespace ignored), refusing
/// before decoding anything when the decoded size would pass `max_bytes`.
pub fn decode_base64(field: &str, text: &str, max_bytes: u64) -> Result<Bytes, MediaError> {
    let significant = text.bytes().filter(|b| !b.is_ascii_whitespace()).count() as u64;
    // Every 4 characters carry 3 bytes; padding only makes the real size smaller.
    let decoded_upper_bound = significant.div_ceil(4) * 3;
    let padding = text
        .bytes()
        .rev()
        .filter(|b| !b.is_ascii_whitespace())
        .take_while(|&b| b == b'=')
        .count() as u64;
    if decoded_upper_bound.saturating_sub(padding.min(2)) > max_bytes {
        return Err(MediaError::new(
            field,
            MediaErrorKind::TooLarge,
            too_large(max_bytes),
        ));
    }
    let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let decoded = LENIENT_STANDARD.decode(&compact).map_err(|e| {
        MediaError::new(
            field,
            MediaErrorKind::InvalidBase64,
            format!("not valid Base64 ({e})"),
        )
    })?;
    if decoded.is_empty() {
        return Err(MediaError::new(
            field,
            MediaErrorKind::InvalidBase64,
            "Base64 data is empty",
        ));
    }
    Ok(Bytes::from(decoded))
}

const LENIENT_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// `file is larger than 10 MB (10485760 bytes)`.
pub fn too_large(max_bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if max_bytes.is_multiple_of(MIB) {
        format!(
            "file is larger than {} MB ({max_bytes} bytes)",
            max_bytes / MIB
        )
    } else {
        format!("file is larger than {max_bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_data_uris_and_raw_base64_are_told_apart() {
        use InlinePolicy::*;
        assert_eq!(
            MediaSource::parse("image", "HTTPS://example.com/a.jpg", RawBase64Only),
            Ok(MediaSource::Url("HTTPS://example.com/a.jpg".into()))
        );
        assert_eq!(
            MediaSource::parse("image", "data:image/png;base64,iVBORw0K", Base64OrDataUri),
            Ok(MediaSource::Base64("iVBORw0K".into()))
        );
        assert_eq!(
            MediaSource::parse("image", "iVBORw0K", RawBase64Only),
            Ok(MediaSource::Base64("iVBORw0K".into()))
        );
    }

    #[test]
    fn official_dialect_refuses_the_data_prefix_with_klings_text() {
        let err = MediaSource::parse(
            "image",
            "data:image/png;base64,iVBORw0K",
            InlinePolicy::RawBase64Only,
        )
        .expect_err("refused");
        assert_eq!(err.kind, MediaErrorKind::DataUriRefused);
        assert_eq!(err.detail, "File is not in a valid base64 format");
    }

    #[test]
    fn url_only_fields_refuse_inline_data() {
        let err =
            MediaSource::parse("video_url", "AAAA", InlinePolicy::UrlOnly).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "video_url: must be an absolute http:// or https:// URL"
        );
        let err = MediaSource::parse("image_url", "ftp://x/y.png", InlinePolicy::UrlOnly)
            .expect_err("refused");
        assert_eq!(err.kind, MediaErrorKind::InvalidUrl);
    }

    #[test]
    fn malformed_data_uris_are_refused() {
        for uri in [
            "data:image/png;base64",
            "data:text/plain;base64,AAAA",
            "data:image/png,AAAA",
        ] {
            let err =
                MediaSource::parse("image", uri, InlinePolicy::Base64OrDataUri).expect_err(uri);
            assert_eq!(err.kind, MediaErrorKind::InvalidBase64, "{uri}");
        }
    }

    #[test]
    fn base64_is_lenient_about_padding_and_whitespace() {
        assert_eq!(
            decode_base64("image", "aGVsbG8=", 100).as_deref(),
            Ok(&b"hello"[..])
        );
        assert_eq!(
            decode_base64("image", "aGVsbG8", 100).as_deref(),
            Ok(&b"hello"[..])
        );
        assert_eq!(
            decode_base64("image", " aGVs\nbG8=\r\n", 100).as_deref(),
            Ok(&b"hello"[..])
        );
        let err = decode_base64("image", "a*b=", 100).expect_err("bad alphabet");
        assert_eq!(err.kind, MediaErrorKind::InvalidBase64);
        assert!(
            err.to_string().starts_with("image: not valid Base64"),
            "{err}"
        );
        assert_eq!(
            decode_base64("image", "", 100).expect_err("empty").kind,
            MediaErrorKind::InvalidBase64
        );
    }

    #[test]
    fn decoded_size_limit_applies_before_decoding() {
        // 8 characters decode to at most 6 bytes; "aGVsbG8=" is exactly 5.
        assert!(decode_base64("image", "aGVsbG8=", 5).is_ok());
        let err = decode_base64("image", "aGVsbG8h", 5).expect_err("6 bytes > 5");
        assert_eq!(err.kind, MediaErrorKind::TooLarge);
        // Far too large is refused even when the text is not valid Base64 at all.
        let huge = "*".repeat(20 * 1024 * 1024);
        let err = decode_base64("image", &huge, 10 * 1024 * 1024).expect_err("too large");
        assert_eq!(
            err.to_string(),
            "image: file is larger than 10 MB (10485760 bytes)"
        );
    }
}
