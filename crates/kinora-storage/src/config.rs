use std::fmt;
use std::path::PathBuf;

/// Which backend holds the objects.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub enum StorageConfig {
    /// One file per object under `root`; for single-node deployments.
    Filesystem { root: PathBuf },
    /// Lost on restart; for tests and throwaway instances.
    Memory,
    /// AWS S3 or any S3-compatible server.
    S3(S3Config),
}

/// Settings of an S3 or S3-compatible bucket.
///
/// When both keys are absent the ambient AWS credential chain is used (the `AWS_*` environment
/// variables, web identity tokens, container or instance metadata), so a deployment on AWS
/// needs no secret in its configuration.
#[derive(Clone, serde::Serialize, serde::Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct S3Config {
    pub bucket: String,
    /// For example `us-east-1`; empty means `us-east-1`.
    pub region: String,
    /// For example `http://127.0.0.1:9000` for an S3-compatible server; `None` means AWS.
    pub endpoint: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Required for an `http://` endpoint.
    pub allow_http: bool,
    /// `false` means path-style requests, which most S3-compatible servers need.
    pub virtual_hosted_style: bool,
}

// Written by hand so that logging a configuration never prints the secret.
impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret() {
        let config = StorageConfig::S3(S3Config {
            bucket: "b".into(),
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some("wJalrXUtnFEMI-very-secret".into()),
            ..Default::default()
        });
        let shown = format!("{config:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn missing_s3_fields_take_defaults() {
        let config: StorageConfig =
            serde_json::from_str(r#"{"S3": {"bucket": "media", "endpoint": "http://s3:9000"}}"#)
                .unwrap();
        assert_eq!(
            config,
            StorageConfig::S3(S3Config {
                bucket: "media".into(),
                endpoint: Some("http://s3:9000".into()),
                ..Default::default()
            })
        );
    }
}
