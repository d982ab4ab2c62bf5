//! Registry credentials for a pull, from the pod's `imagePullSecrets`: Secrets of type
//! `kubernetes.io/dockerconfigjson` (`.dockerconfigjson`, `{"auths": {...}}`) or the older
//! `kubernetes.io/dockercfg` (`.dockercfg`, the map itself). An entry applies when its key names
//! the image's registry host; the pull tries each that applies, in order, as upstream does.

use bollard::auth::DockerCredentials;
use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

/// The registry host an image reference is pulled from (`docker.io` when none is named).
pub fn registry_host(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// A config key (`https://127.0.0.1:5000/v1/`, `registry.example`, `index.docker.io`) as a host.
fn key_host(key: &str) -> &str {
    let key = key.trim_start_matches("https://").trim_start_matches("http://");
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        h => h,
    }
}

/// Every credential in `secrets` that applies to `image`, in the order given.
pub fn for_image(image: &str, secrets: &[Secret]) -> Vec<DockerCredentials> {
    let host = registry_host(image);
    let mut out = Vec::new();
    for secret in secrets {
        let data = secret.data.as_ref();
        let auths = if let Some(json) = data.and_then(|d| d.get(".dockerconfigjson")) {
            serde_json::from_slice::<Value>(&json.0).ok().map(|v| v["auths"].clone())
        } else {
            data.and_then(|d| d.get(".dockercfg")).and_then(|cfg| serde_json::from_slice::<Value>(&cfg.0).ok())
        };
        let Some(Value::Object(auths)) = auths else { continue };
        for (key, entry) in &auths {
            if key_host(key) != host {
                continue;
            }
            let text = |k: &str| entry[k].as_str().filter(|s| !s.is_empty()).map(str::to_string);
            let (mut username, mut password) = (text("username"), text("password"));
            if let (None, Some(auth)) = (&username, text("auth")) {
                use base64::Engine;
                let decoded = base64::engine::general_purpose::STANDARD.decode(auth.trim()).unwrap_or_default();
                if let Some((u, p)) = String::from_utf8_lossy(&decoded).split_once(':') {
                    (username, password) = (Some(u.to_string()), Some(p.to_string()));
                }
            }
            out.push(DockerCredentials {
                username,
                password,
                serveraddress: Some(host.to_string()),
                identitytoken: text("identitytoken"),
                ..Default::default()
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(key: &str, value: serde_json::Value) -> Secret {
        Secret {
            data: Some(BTreeMap::from([(key.to_string(), ByteString(serde_json::to_vec(&value).unwrap_or_default()))])),
            ..Default::default()
        }
    }

    #[test]
    fn images_name_their_registry_or_docker_hub() {
        for (image, host) in [
            ("127.0.0.1:5000/team/app:1", "127.0.0.1:5000"),
            ("registry.example/app", "registry.example"),
            ("localhost/app:2", "localhost"),
            ("library/busybox:1", "docker.io"),
            ("busybox", "docker.io"),
        ] {
            assert_eq!(registry_host(image), host, "{image}");
        }
    }

    #[test]
    fn credentials_come_from_either_secret_format_and_only_for_their_registry() {
        let json = secret(
            ".dockerconfigjson",
            serde_json::json!({"auths": {
                "https://127.0.0.1:5000/v1/": {"auth": "cHVsbGVyOnMzY3JldA=="},
                "other.example": {"username": "x", "password": "y"}
            }}),
        );
        let cfg = secret(".dockercfg", serde_json::json!({"127.0.0.1:5000": {"username": "old", "password": "pw"}}));
        let found = for_image("127.0.0.1:5000/app:1", &[json.clone(), cfg]);
        let users: Vec<(Option<&str>, Option<&str>)> =
            found.iter().map(|c| (c.username.as_deref(), c.password.as_deref())).collect();
        assert_eq!(users, [(Some("puller"), Some("s3cret")), (Some("old"), Some("pw"))]);
        assert_eq!(found[0].serveraddress.as_deref(), Some("127.0.0.1:5000"));
        assert!(for_image("busybox", &[json]).is_empty(), "no Docker Hub entry, so an anonymous pull");
        let hub = secret(
            ".dockerconfigjson",
            serde_json::json!({"auths": {"https://index.docker.io/v1/": {"username": "u", "password": "p"}}}),
        );
        assert_eq!(for_image("busybox:1", &[hub]).len(), 1);
    }
}
