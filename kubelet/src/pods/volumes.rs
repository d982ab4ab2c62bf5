//! Pod volumes on the node: emptyDir (tmpfs for medium Memory), hostPath, configMap, secret (on
//! tmpfs), downwardAPI and projected, under `<root-dir>/pods/<uid>/volumes/<name>`, bound into
//! containers by their volumeMounts. Contents of configMap, secret, downwardAPI and projected
//! volumes are rewritten on every pass when they differ, so updates reach running pods.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, KeyToPath, Pod, Volume};

use super::spec::{Sources, field};

/// What a volume's files should be: relative path → (content, mode).
pub type Files = BTreeMap<String, (Vec<u8>, i32)>;

/// The ConfigMaps and Secrets a pod's volumes read: (config maps, secrets).
pub fn referenced(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let (mut cms, mut secrets) = (Vec::new(), Vec::new());
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(cm) = &v.config_map {
            cms.push(cm.name.clone());
        }
        if let Some(s) = &v.secret {
            secrets.extend(s.secret_name.clone());
        }
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(cm) = &source.config_map {
                cms.push(cm.name.clone());
            }
            if let Some(s) = &source.secret {
                secrets.push(s.name.clone());
            }
        }
    }
    (cms, secrets)
}

/// The directory of a pod's volume on the node.
pub fn volume_dir(root: &Path, uid: &str, name: &str) -> PathBuf {
    root.join("pods").join(uid).join("volumes").join(name)
}

/// Keys (or the listed items) of a map as files.
fn keyed_files(
    data: &BTreeMap<String, Vec<u8>>,
    items: &Option<Vec<KeyToPath>>,
    default_mode: i32,
) -> Result<Files, String> {
    let mut files = Files::new();
    match items {
        Some(items) => {
            for item in items {
                let content = data.get(&item.key).ok_or_else(|| format!("key {:?} not found", item.key))?;
                files.insert(item.path.clone(), (content.clone(), item.mode.unwrap_or(default_mode)));
            }
        }
        None => {
            for (k, v) in data {
                files.insert(k.clone(), (v.clone(), default_mode));
            }
        }
    }
    Ok(files)
}

fn bytes(map: Option<&BTreeMap<String, String>>) -> Option<BTreeMap<String, Vec<u8>>> {
    map.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect())
}

/// The files of a configMap, secret, downwardAPI or projected volume; `None` for volumes that
/// are directories (emptyDir, hostPath) or not supported here. Missing sources are an error unless
/// the volume says they are optional.
pub fn files(pod: &Pod, v: &Volume, sources: &Sources) -> Option<Result<Files, String>> {
    if let Some(cm) = &v.config_map {
        let mode = cm.default_mode.unwrap_or(0o644);
        return Some(match bytes(sources.config_maps.get(&cm.name)) {
            Some(data) => keyed_files(&data, &cm.items, mode),
            None if cm.optional == Some(true) => Ok(Files::new()),
            None => Err(format!("configmap {:?} not found", cm.name)),
        });
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let mode = s.default_mode.unwrap_or(0o644);
        return Some(match bytes(sources.secrets.get(&name)) {
            Some(data) => keyed_files(&data, &s.items, mode),
            None if s.optional == Some(true) => Ok(Files::new()),
            None => Err(format!("secret {name:?} not found")),
        });
    }
    if let Some(d) = &v.downward_api {
        let mode = d.default_mode.unwrap_or(0o644);
        return Some(downward(pod, d.items.iter().flatten(), mode));
    }
    if let Some(p) = &v.projected {
        let mode = p.default_mode.unwrap_or(0o644);
        let mut all = Files::new();
        for source in p.sources.iter().flatten() {
            let part = if let Some(cm) = &source.config_map {
                match bytes(sources.config_maps.get(&cm.name)) {
                    Some(data) => keyed_files(&data, &cm.items, mode),
                    None if cm.optional == Some(true) => Ok(Files::new()),
                    None => Err(format!("configmap {:?} not found", cm.name)),
                }
            } else if let Some(s) = &source.secret {
                match bytes(sources.secrets.get(&s.name)) {
                    Some(data) => keyed_files(&data, &s.items, mode),
                    None if s.optional == Some(true) => Ok(Files::new()),
                    None => Err(format!("secret {:?} not found", s.name)),
                }
            } else if let Some(d) = &source.downward_api {
                downward(pod, d.items.iter().flatten(), mode)
            } else {
                Ok(Files::new())
            };
            match part {
                Ok(files) => all.extend(files),
                Err(e) => return Some(Err(e)),
            }
        }
        return Some(Ok(all));
    }
    None
}

fn downward<'a>(
    pod: &Pod,
    items: impl Iterator<Item = &'a k8s_openapi::api::core::v1::DownwardAPIVolumeFile>,
    default_mode: i32,
) -> Result<Files, String> {
    let mut files = Files::new();
    for item in items {
        let value = match &item.field_ref {
            Some(f) => field(pod, &f.field_path).ok_or_else(|| format!("unsupported fieldPath {:?}", f.field_path))?,
            None => String::new(),
        };
        files.insert(item.path.clone(), (value.into_bytes(), item.mode.unwrap_or(default_mode)));
    }
    Ok(files)
}

/// `host:container[:ro]` binds for a container's volumeMounts, given each volume's host path.
pub fn binds(c: &Container, paths: &BTreeMap<String, PathBuf>) -> Result<Vec<String>, String> {
    let mut binds = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let host = paths.get(&m.name).ok_or_else(|| format!("volume {:?} not found", m.name))?;
        let host = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) if sub.split('/').any(|part| part == "..") || sub.starts_with('/') => {
                return Err(format!("subPath {sub:?} must be a relative path inside the volume"));
            }
            Some(sub) => host.join(sub),
            None => host.clone(),
        };
        let ro = if m.read_only == Some(true) { ":ro" } else { "" };
        binds.push(format!("{}:{}{ro}", host.display(), m.mount_path));
    }
    Ok(binds)
}

/// Makes every volume of the pod exist on the node and returns their host paths.
pub fn prepare(root: &Path, pod: &Pod, sources: &Sources) -> Result<BTreeMap<String, PathBuf>, String> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let mut paths = BTreeMap::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let dir = volume_dir(root, &uid, &v.name);
        let path = if let Some(host) = &v.host_path {
            let kind = host.type_.as_deref().unwrap_or("");
            let path = PathBuf::from(&host.path);
            match kind {
                "DirectoryOrCreate" => {
                    std::fs::create_dir_all(&path).map_err(|e| format!("hostPath {}: {e}", host.path))?
                }
                "FileOrCreate" if !path.exists() => {
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                    }
                    std::fs::write(&path, b"").map_err(|e| format!("hostPath {}: {e}", host.path))?;
                }
                "Directory" if !path.is_dir() => {
                    return Err(format!("hostPath type check failed: {} is not a directory", host.path));
                }
                "File" if !path.is_file() => {
                    return Err(format!("hostPath type check failed: {} is not a file", host.path));
                }
                _ => {}
            }
            path
        } else if let Some(empty) = &v.empty_dir {
            if !dir.exists() {
                std::fs::create_dir_all(&dir).map_err(|e| format!("emptyDir {}: {e}", v.name))?;
                if empty.medium.as_deref() == Some("Memory") {
                    let size = empty.size_limit.as_ref().map(|q| q.0.clone());
                    mount_tmpfs(&dir, size.as_deref())?;
                }
            }
            dir
        } else if let Some(files) = files(pod, v, sources) {
            let files = files?;
            if !dir.exists() {
                std::fs::create_dir_all(&dir).map_err(|e| format!("volume {}: {e}", v.name))?;
                // Secrets never touch the disk when the node can help it.
                if v.secret.is_some() && mount_tmpfs(&dir, None).is_err() {
                    tracing::warn!(volume = %v.name, "no tmpfs for a secret volume; using the disk");
                }
            }
            write_files(&dir, &files).map_err(|e| format!("volume {}: {e}", v.name))?;
            dir
        } else if let Some(claim) = &v.persistent_volume_claim {
            match sources.claims.get(&claim.claim_name) {
                Some(Ok(path)) => {
                    std::fs::create_dir_all(path).map_err(|e| format!("volume {}: {path}: {e}", v.name))?;
                    PathBuf::from(path)
                }
                Some(Err(why)) => return Err(format!("volume {}: {why}", v.name)),
                None => {
                    return Err(format!("volume {}: persistentvolumeclaim \"{}\" not found", v.name, claim.claim_name));
                }
            }
        } else {
            // Kinds no plugin serves here get an empty directory.
            std::fs::create_dir_all(&dir).map_err(|e| format!("volume {}: {e}", v.name))?;
            dir
        };
        paths.insert(v.name.clone(), path);
    }
    Ok(paths)
}

/// Writes what changed (each file replaced by rename, so readers never see half a file) and
/// removes files no longer wanted.
fn write_files(dir: &Path, files: &Files) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for (rel, (content, mode)) in files {
        let path = dir.join(rel);
        if std::fs::read(&path).is_ok_and(|old| &old == content) {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = path.with_extension("rk-tmp");
        std::fs::write(&tmp, content)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(*mode as u32 & 0o7777))?;
        std::fs::rename(&tmp, &path)?;
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().is_ok_and(|t| t.is_file()) && !files.contains_key(&name) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn mount_tmpfs(dir: &Path, size: Option<&str>) -> Result<(), String> {
    let mut cmd = std::process::Command::new("mount");
    cmd.args(["-t", "tmpfs"]);
    if let Some(size) = size {
        cmd.args(["-o", &format!("size={}", tmpfs_size(size))]);
    }
    let out = cmd.arg("tmpfs").arg(dir).output().map_err(|e| format!("mount: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("mount tmpfs: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// A quantity as tmpfs's size option (bytes).
fn tmpfs_size(q: &str) -> String {
    api_types::quantity::parse_quantity(q).map_or_else(|_| q.to_string(), |p| p.to_value().to_string())
}

/// Unmounts whatever the pod mounted and removes its directory.
pub fn cleanup(root: &Path, uid: &str) {
    let pod_dir = root.join("pods").join(uid);
    if let Ok(entries) = std::fs::read_dir(pod_dir.join("volumes")) {
        for entry in entries.flatten() {
            let _ = std::process::Command::new("umount").arg(entry.path()).output();
        }
    }
    if let Err(e) = std::fs::remove_dir_all(&pod_dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %pod_dir.display(), error = %e, "removing the pod directory failed");
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ConfigMapVolumeSource, VolumeMount};

    use super::*;

    #[test]
    fn config_map_items_modes_and_optional() {
        let v = Volume {
            name: "cfg".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: "settings".into(),
                items: Some(vec![KeyToPath { key: "mode".into(), path: "conf/mode.txt".into(), mode: Some(0o600) }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut sources = Sources::default();
        sources
            .config_maps
            .insert("settings".into(), BTreeMap::from([("mode".into(), "fast".into()), ("x".into(), "y".into())]));
        let files = files(&Pod::default(), &v, &sources).expect("a file volume").expect("resolves");
        assert_eq!(files, Files::from([("conf/mode.txt".to_string(), (b"fast".to_vec(), 0o600))]));
        assert!(files_of_missing(&v).is_err());
    }

    fn files_of_missing(v: &Volume) -> Result<Files, String> {
        files(&Pod::default(), v, &Sources::default()).expect("a file volume")
    }

    #[test]
    fn binds_with_sub_path_and_read_only() {
        let c = Container {
            volume_mounts: Some(vec![
                VolumeMount { name: "data".into(), mount_path: "/data".into(), ..Default::default() },
                VolumeMount {
                    name: "cfg".into(),
                    mount_path: "/etc/app.conf".into(),
                    sub_path: Some("app.conf".into()),
                    read_only: Some(true),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let paths = BTreeMap::from([
            ("data".to_string(), PathBuf::from("/v/data")),
            ("cfg".to_string(), PathBuf::from("/v/cfg")),
        ]);
        assert_eq!(
            binds(&c, &paths),
            Ok(vec!["/v/data:/data".to_string(), "/v/cfg/app.conf:/etc/app.conf:ro".to_string()])
        );
        let mut escape = c.clone();
        escape.volume_mounts.as_mut().expect("mounts")[1].sub_path = Some("../../etc".into());
        assert!(binds(&escape, &paths).is_err());
    }

    #[test]
    fn files_are_replaced_only_when_changed_and_stale_ones_removed() {
        let dir = std::env::temp_dir().join(format!("rk-volume-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        write_files(
            &dir,
            &Files::from([("a".to_string(), (b"1".to_vec(), 0o644)), ("b".to_string(), (b"2".to_vec(), 0o644))]),
        )
        .expect("write");
        write_files(&dir, &Files::from([("a".to_string(), (b"3".to_vec(), 0o644))])).expect("rewrite");
        assert_eq!(std::fs::read(dir.join("a")).expect("a"), b"3");
        assert!(!dir.join("b").exists());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
