//! Images: import from archives, listing, config read-back, removal, and resolution for `run`.
//!
//! Owns the registry-less import path for containerd 1.6 (no Transfer service): blobs go in with
//! `Content.Write` (GC labels linking manifest -> config/layers -> snapshot), layers are unpacked
//! with `Snapshots.Prepare` + `Diff.Apply` + `Snapshots.Commit` keyed by chain id, and the image
//! record is `Images.Create`d, all under one lease so the garbage collector cannot race us.
//! Import is idempotent: existing blobs and snapshots are skipped, existing names re-pointed.
//!
//! Must never: load whole layers into memory (they are streamed from the archive in 1 MiB
//! chunks), trust an archive's digests without containerd verifying them (`expected` on
//! commit, `diff_ids` checked against `Diff.Apply`), or leave a lease behind on success.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    ApplyRequest, CreateImageRequest, DeleteImageRequest, GetImageRequest, Image as CtrImage,
    InfoRequest, ListImagesRequest, ReadContentRequest, UpdateImageRequest, UpdateRequest,
    WriteAction, WriteContentRequest,
};
use containerd_client::tonic::Code;
use containerd_client::types::Descriptor as CtrDescriptor;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::{to_system_time, unique, Runtime, RuntimeError, SNAPSHOTTER};

/// An image known to containerd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Full name, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    /// Digest of the manifest the name points to (`sha256:...`).
    pub digest: String,
    /// Compressed size: manifest + config + layers, in bytes.
    pub size: u64,
    /// When containerd created the image record.
    pub created: Option<SystemTime>,
}

/// The parts of an image's config that decide how its containers run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `ENTRYPOINT`.
    pub entrypoint: Vec<String>,
    /// `CMD`.
    pub cmd: Vec<String>,
    /// `ENV`, in order.
    pub env: Vec<(String, String)>,
    /// `WORKDIR`.
    pub working_dir: Option<String>,
    /// `USER` (`name`, `uid`, `uid:gid`, `name:group`).
    pub user: Option<String>,
    /// `EXPOSE`, as `8080/tcp`.
    pub exposed_ports: Vec<String>,
    /// `LABEL`s.
    pub labels: BTreeMap<String, String>,
    /// `STOPSIGNAL`.
    pub stop_signal: Option<String>,
}

/// An image resolved for running: config plus the chain id of its top layer.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub manifest_digest: String,
    pub config: ImageConfig,
    pub chain_id: String,
    pub size: u64,
}

/// Resolved images by manifest digest (immutable content, so never stale).
#[derive(Default)]
pub(crate) struct Cache {
    by_manifest: HashMap<String, Arc<Resolved>>,
}

const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const MT_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MT_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const CHUNK: usize = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    platform: Option<Platform>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    variant: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    config: Option<ContainerConfig>,
    #[serde(default)]
    rootfs: Option<RootFs>,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerConfig {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    stop_signal: Option<String>,
}

/// The GOARCH-style name of the host architecture.
pub(crate) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        other => other,
    }
}

/// Chain id of a layer stack: `chain(0) = diff(0)`, `chain(n) = sha256(chain(n-1) + " " + diff(n))`.
pub(crate) fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{prev} {d}").as_bytes()))
            ),
        };
        out.push(next);
    }
    out
}

fn is_index(media_type: &str, json: &serde_json::Value) -> bool {
    media_type == MT_OCI_INDEX
        || media_type == MT_DOCKER_LIST
        || (media_type.is_empty() && json.get("manifests").is_some())
}

fn platform_matches(p: &Option<Platform>) -> bool {
    match p {
        None => true,
        Some(p) => p.os == "linux" && p.architecture == host_arch(),
    }
}

fn image_config_from(file: &ConfigFile) -> ImageConfig {
    let c = file.config.as_ref();
    let env = c
        .and_then(|c| c.env.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv, String::new()),
        })
        .collect();
    ImageConfig {
        entrypoint: c.and_then(|c| c.entrypoint.clone()).unwrap_or_default(),
        cmd: c.and_then(|c| c.cmd.clone()).unwrap_or_default(),
        env,
        working_dir: c
            .and_then(|c| c.working_dir.clone())
            .filter(|s| !s.is_empty()),
        user: c.and_then(|c| c.user.clone()).filter(|s| !s.is_empty()),
        exposed_ports: c
            .and_then(|c| c.exposed_ports.as_ref())
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default(),
        labels: c.and_then(|c| c.labels.clone()).unwrap_or_default(),
        stop_signal: c
            .and_then(|c| c.stop_signal.clone())
            .filter(|s| !s.is_empty()),
    }
}

/// Normalizes an image reference the way Docker does (`busybox` ->
/// `docker.io/library/busybox:latest`). None for an empty string.
pub(crate) fn normalize_ref(r: &str) -> Option<String> {
    let r = r.trim();
    if r.is_empty() {
        return None;
    }
    let (mut name, digest) = match r.split_once('@') {
        Some((n, d)) => (n.to_string(), Some(d)),
        None => (r.to_string(), None),
    };
    let first = name.split('/').next().unwrap_or_default();
    let has_domain =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if !name.contains('/') {
        // "busybox" or "busybox:1": an official-library repository.
        name = format!("docker.io/library/{name}");
    } else if !has_domain {
        name = format!("docker.io/{name}");
    }
    let last = name.rsplit('/').next().unwrap_or_default();
    if digest.is_none() && !last.contains(':') {
        name.push_str(":latest");
    }
    Some(match digest {
        Some(d) => format!("{name}@{d}"),
        None => name,
    })
}

// ------------------------------------------------------------------------------------------
// Archive reading (blocking; run under spawn_blocking)

#[derive(Debug, Clone)]
enum BlobSource {
    /// A byte range of the archive file.
    Tar { offset: u64, size: u64 },
    /// Synthesized in memory (docker-archive manifests).
    Memory(Arc<Vec<u8>>),
}

struct ArchiveIndex {
    path: PathBuf,
    entries: HashMap<String, (u64, u64)>,
    links: HashMap<String, String>,
}

fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

impl ArchiveIndex {
    fn invalid(&self, reason: impl Into<String>) -> RuntimeError {
        RuntimeError::InvalidArchive {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    fn open(path: &Path) -> Result<ArchiveIndex, RuntimeError> {
        let file = File::open(path)
            .map_err(|e| RuntimeError::io(format!("open {}", path.display()), e))?;
        let invalid = |reason: String| RuntimeError::InvalidArchive {
            path: path.to_path_buf(),
            reason,
        };
        let mut magic = [0u8; 4];
        let n = (&file)
            .read(&mut magic)
            .map_err(|e| RuntimeError::io("read archive", e))?;
        if n >= 2 && magic[..2] == [0x1f, 0x8b] {
            return Err(invalid(
                "the archive is gzip-compressed; decompress it first (gunzip)".into(),
            ));
        }
        (&file)
            .seek(SeekFrom::Start(0))
            .map_err(|e| RuntimeError::io("seek archive", e))?;
        let mut ar = tar::Archive::new(file);
        let mut entries = HashMap::new();
        let mut links = HashMap::new();
        for entry in ar
            .entries()
            .map_err(|e| invalid(format!("not a tar archive: {e}")))?
        {
            let entry = entry.map_err(|e| invalid(format!("bad tar entry: {e}")))?;
            let name = clean_path(
                &entry
                    .path()
                    .map_err(|e| invalid(e.to_string()))?
                    .to_string_lossy(),
            );
            let kind = entry.header().entry_type();
            if kind.is_file() {
                entries.insert(name, (entry.raw_file_position(), entry.size()));
            } else if kind.is_symlink() || kind.is_hard_link() {
                if let Ok(Some(target)) = entry.link_name() {
                    let target = target.to_string_lossy().to_string();
                    let resolved = if kind.is_symlink() && !target.starts_with('/') {
                        let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                        clean_path(&format!("{dir}/{target}"))
                    } else {
                        clean_path(&target)
                    };
                    links.insert(name, resolved);
                }
            }
        }
        Ok(ArchiveIndex {
            path: path.to_path_buf(),
            entries,
            links,
        })
    }

    fn find(&self, name: &str) -> Option<(u64, u64)> {
        let mut name = clean_path(name);
        for _ in 0..8 {
            if let Some(e) = self.entries.get(&name) {
                return Some(*e);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, RuntimeError> {
        let (offset, size) = self
            .find(name)
            .ok_or_else(|| self.invalid(format!("missing {name}")))?;
        if size > 64 << 20 {
            return Err(self.invalid(format!(
                "{name} is too large for a JSON document ({size} bytes)"
            )));
        }
        self.read_range(offset, size)
    }

    fn read_range(&self, offset: u64, size: u64) -> Result<Vec<u8>, RuntimeError> {
        let mut f = File::open(&self.path).map_err(|e| RuntimeError::io("open archive", e))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| RuntimeError::io("seek archive", e))?;
        let mut buf = Vec::with_capacity(size as usize);
        f.take(size)
            .read_to_end(&mut buf)
            .map_err(|e| RuntimeError::io("read archive", e))?;
        Ok(buf)
    }

    fn blob_path(digest: &str) -> String {
        format!("blobs/{}", digest.replacen(':', "/", 1))
    }

    /// sha256 digest and media type (by magic) of an archive range.
    fn hash_range(&self, offset: u64, size: u64) -> Result<(String, &'static str), RuntimeError> {
        let mut f = File::open(&self.path).map_err(|e| RuntimeError::io("open archive", e))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| RuntimeError::io("seek archive", e))?;
        let mut r = f.take(size);
        let mut h = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        let mut first = true;
        let mut media_type = MT_OCI_LAYER;
        loop {
            let n = r
                .read(&mut buf)
                .map_err(|e| RuntimeError::io("read archive", e))?;
            if n == 0 {
                break;
            }
            if first && n >= 4 {
                if buf[..2] == [0x1f, 0x8b] {
                    media_type = MT_OCI_LAYER_GZIP;
                } else if buf[..4] == [0x28, 0xb5, 0x2f, 0xfd] {
                    media_type = MT_OCI_LAYER_ZSTD;
                }
            }
            first = false;
            h.update(&buf[..n]);
        }
        Ok((format!("sha256:{}", hex::encode(h.finalize())), media_type))
    }
}

/// One blob to put into the content store.
#[derive(Debug, Clone)]
struct BlobPlan {
    desc: Descriptor,
    source: BlobSource,
    labels: BTreeMap<String, String>,
}

/// One image found in an archive.
#[derive(Debug, Clone)]
struct ImagePlan {
    names: Vec<String>,
    target: Descriptor,
    layers: Vec<Descriptor>,
    diff_ids: Vec<String>,
    /// Children first (layers, config, manifest), so GC labels never point at missing content.
    blobs: Vec<BlobPlan>,
}

fn parse_json<T: serde::de::DeserializeOwned>(
    ix: &ArchiveIndex,
    what: &str,
    bytes: &[u8],
) -> Result<T, RuntimeError> {
    serde_json::from_slice(bytes).map_err(|e| ix.invalid(format!("{what}: {e}")))
}

/// Builds the plan of one image from its manifest bytes and a blob lookup.
fn plan_from_manifest(
    ix: &ArchiveIndex,
    names: Vec<String>,
    target: Descriptor,
    manifest_bytes: &[u8],
    manifest_source: BlobSource,
    source_of: &dyn Fn(&Descriptor) -> Result<BlobSource, RuntimeError>,
) -> Result<ImagePlan, RuntimeError> {
    let manifest: Manifest = parse_json(ix, "manifest", manifest_bytes)?;
    let config_src = source_of(&manifest.config)?;
    let config_bytes = match &config_src {
        BlobSource::Tar { offset, size } => ix.read_range(*offset, *size)?,
        BlobSource::Memory(b) => b.to_vec(),
    };
    let config: ConfigFile = parse_json(ix, "image config", &config_bytes)?;
    if let (Some(os), Some(arch)) = (&config.os, &config.architecture) {
        if os != "linux" || arch != host_arch() {
            tracing::warn!(
                os,
                arch,
                host = host_arch(),
                "importing an image built for another platform"
            );
        }
    }
    let diff_ids = config
        .rootfs
        .as_ref()
        .map(|r| r.diff_ids.clone())
        .unwrap_or_default();
    if diff_ids.len() != manifest.layers.len() {
        return Err(ix.invalid(format!(
            "manifest has {} layers but the config lists {} diff_ids",
            manifest.layers.len(),
            diff_ids.len()
        )));
    }
    let chains = chain_ids(&diff_ids);
    let mut blobs = Vec::new();
    for (layer, diff_id) in manifest.layers.iter().zip(&diff_ids) {
        blobs.push(BlobPlan {
            desc: layer.clone(),
            source: source_of(layer)?,
            labels: BTreeMap::from([("containerd.io/uncompressed".to_string(), diff_id.clone())]),
        });
    }
    let mut config_labels = BTreeMap::new();
    if let Some(top) = chains.last() {
        config_labels.insert(
            format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"),
            top.clone(),
        );
    }
    blobs.push(BlobPlan {
        desc: manifest.config.clone(),
        source: config_src,
        labels: config_labels,
    });
    let mut manifest_labels = BTreeMap::from([(
        "containerd.io/gc.ref.content.config".to_string(),
        manifest.config.digest.clone(),
    )]);
    for (i, l) in manifest.layers.iter().enumerate() {
        manifest_labels.insert(
            format!("containerd.io/gc.ref.content.l.{i}"),
            l.digest.clone(),
        );
    }
    blobs.push(BlobPlan {
        desc: target.clone(),
        source: manifest_source,
        labels: manifest_labels,
    });
    Ok(ImagePlan {
        names,
        target,
        layers: manifest.layers,
        diff_ids,
        blobs,
    })
}

fn names_from_annotations(desc: &Descriptor) -> Vec<String> {
    let Some(a) = &desc.annotations else {
        return Vec::new();
    };
    if let Some(n) = a.get("io.containerd.image.name").filter(|n| !n.is_empty()) {
        return vec![n.clone()];
    }
    match a.get("org.opencontainers.image.ref.name") {
        // A bare tag ("latest") names no repository.
        Some(r) if r.contains('/') || r.contains(':') => normalize_ref(r).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// Reads an archive (OCI image layout, or `docker save` layout) into import plans.
fn plan_archive(path: &Path, name: Option<&str>) -> Result<Vec<ImagePlan>, RuntimeError> {
    let ix = ArchiveIndex::open(path)?;
    let mut plans: Vec<ImagePlan> = Vec::new();
    if ix.find("index.json").is_some() {
        let index: Index = parse_json(&ix, "index.json", &ix.read("index.json")?)?;
        let source_of = |d: &Descriptor| -> Result<BlobSource, RuntimeError> {
            let (offset, size) = ix
                .find(&ArchiveIndex::blob_path(&d.digest))
                .ok_or_else(|| ix.invalid(format!("missing blob {}", d.digest)))?;
            if size as i64 != d.size {
                return Err(ix.invalid(format!(
                    "blob {} is {size} bytes, descriptor says {}",
                    d.digest, d.size
                )));
            }
            Ok(BlobSource::Tar { offset, size })
        };
        for top in &index.manifests {
            let names = names_from_annotations(top);
            let bytes = ix.read(&ArchiveIndex::blob_path(&top.digest))?;
            let json: serde_json::Value = parse_json(&ix, "manifest", &bytes)?;
            let (target, bytes) = if is_index(&top.media_type, &json) {
                let nested: Index = parse_json(&ix, "nested index", &bytes)?;
                let Some(m) = nested
                    .manifests
                    .iter()
                    .find(|m| platform_matches(&m.platform))
                else {
                    tracing::warn!(digest = %top.digest, "no linux/{} manifest in image index; skipped", host_arch());
                    continue;
                };
                (m.clone(), ix.read(&ArchiveIndex::blob_path(&m.digest))?)
            } else {
                if !platform_matches(&top.platform) {
                    continue;
                }
                (top.clone(), bytes)
            };
            let mut target = target;
            if target.media_type.is_empty() {
                target.media_type = json
                    .get("mediaType")
                    .and_then(|v| v.as_str())
                    .unwrap_or(MT_OCI_MANIFEST)
                    .to_string();
            }
            target.annotations = None;
            target.platform = None;
            if let Some(existing) = plans.iter_mut().find(|p| p.target.digest == target.digest) {
                existing.names.extend(names);
                continue;
            }
            let src = source_of(&target)?;
            plans.push(plan_from_manifest(
                &ix, names, target, &bytes, src, &source_of,
            )?);
        }
    } else if ix.find("manifest.json").is_some() {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct DockerEntry {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            layers: Vec<String>,
        }
        let entries: Vec<DockerEntry> =
            parse_json(&ix, "manifest.json", &ix.read("manifest.json")?)?;
        for e in entries {
            let config_bytes = Arc::new(ix.read(&e.config)?);
            let config_desc = Descriptor {
                media_type: MT_OCI_CONFIG.into(),
                digest: format!(
                    "sha256:{}",
                    hex::encode(Sha256::digest(config_bytes.as_slice()))
                ),
                size: config_bytes.len() as i64,
                annotations: None,
                platform: None,
            };
            let mut layers = Vec::new();
            let mut sources: HashMap<String, BlobSource> = HashMap::new();
            sources.insert(
                config_desc.digest.clone(),
                BlobSource::Memory(config_bytes.clone()),
            );
            for l in &e.layers {
                let (offset, size) = ix
                    .find(l)
                    .ok_or_else(|| ix.invalid(format!("missing layer {l}")))?;
                let (digest, media_type) = ix.hash_range(offset, size)?;
                sources.insert(digest.clone(), BlobSource::Tar { offset, size });
                layers.push(Descriptor {
                    media_type: media_type.into(),
                    digest,
                    size: size as i64,
                    annotations: None,
                    platform: None,
                });
            }
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(MT_OCI_MANIFEST.into()),
                config: config_desc,
                layers,
            };
            let manifest_bytes = Arc::new(
                serde_json::to_vec(&manifest).map_err(|e| ix.invalid(format!("manifest: {e}")))?,
            );
            let target = Descriptor {
                media_type: MT_OCI_MANIFEST.into(),
                digest: format!(
                    "sha256:{}",
                    hex::encode(Sha256::digest(manifest_bytes.as_slice()))
                ),
                size: manifest_bytes.len() as i64,
                annotations: None,
                platform: None,
            };
            let names = e
                .repo_tags
                .unwrap_or_default()
                .iter()
                .filter_map(|t| normalize_ref(t))
                .collect();
            let source_of = |d: &Descriptor| -> Result<BlobSource, RuntimeError> {
                sources
                    .get(&d.digest)
                    .cloned()
                    .ok_or_else(|| ix.invalid(format!("missing blob {}", d.digest)))
            };
            plans.push(plan_from_manifest(
                &ix,
                names,
                target,
                &manifest_bytes,
                BlobSource::Memory(manifest_bytes.clone()),
                &source_of,
            )?);
        }
    } else {
        return Err(
            ix.invalid("neither index.json (OCI layout) nor manifest.json (docker save) found")
        );
    }
    if plans.is_empty() {
        return Err(ix.invalid(format!("no image for linux/{} in the archive", host_arch())));
    }
    if let Some(name) = name {
        if plans.len() > 1 {
            return Err(ix.invalid(format!(
                "the archive holds {} images; a name override needs exactly one",
                plans.len()
            )));
        }
        let n = normalize_ref(name)
            .ok_or_else(|| RuntimeError::InvalidSpec(format!("invalid image name {name:?}")))?;
        plans[0].names = vec![n];
    }
    for p in &mut plans {
        p.names.sort();
        p.names.dedup();
        if p.names.is_empty() {
            return Err(ix.invalid(format!(
                "image {} has no name in the archive (no io.containerd.image.name / org.opencontainers.image.ref.name / RepoTags); pass a name",
                p.target.digest
            )));
        }
    }
    Ok(plans)
}

fn to_ctr_desc(d: &Descriptor) -> CtrDescriptor {
    CtrDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
        annotations: Default::default(),
    }
}

impl Runtime {
    /// Reads a whole blob from the content store.
    pub(crate) async fn read_content(&self, digest: &str) -> Result<Vec<u8>, RuntimeError> {
        let mut stream = ContentClient::new(self.channel.clone())
            .read(self.req(ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            }))
            .await
            .map_err(|s| RuntimeError::grpc("Content.Read", digest, s))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(msg) = stream
            .message()
            .await
            .map_err(|s| RuntimeError::grpc("Content.Read", digest, s))?
        {
            out.extend_from_slice(&msg.data);
        }
        Ok(out)
    }

    /// Resolves an image name to its config and top chain id (cached by manifest digest).
    /// The image `name` as written, else its normalized form (`redis:7` is
    /// `docker.io/library/redis:7`, as Docker and the import name it).
    pub(crate) async fn resolve_image(&self, name: &str) -> Result<Arc<Resolved>, RuntimeError> {
        let get = |n: String| {
            let mut client = ImagesClient::new(self.channel.clone());
            let req = self.req(GetImageRequest { name: n });
            async move { client.get(req).await }
        };
        let found = match get(name.to_string()).await {
            Err(s) if s.code() == Code::NotFound => match normalize_ref(name) {
                Some(full) if full != name => get(full).await,
                _ => Err(s),
            },
            r => r,
        };
        let img = found
            .map_err(|s| RuntimeError::grpc("Images.Get", &format!("image {name}"), s))?
            .into_inner()
            .image
            .ok_or_else(|| RuntimeError::NotFound(format!("image {name}")))?;
        let target = img.target.ok_or_else(|| RuntimeError::InvalidImage {
            name: name.into(),
            reason: "no target descriptor".into(),
        })?;
        self.resolve_target(name, &target).await
    }

    async fn resolve_target(
        &self,
        name: &str,
        target: &CtrDescriptor,
    ) -> Result<Arc<Resolved>, RuntimeError> {
        if let Some(r) = self
            .images
            .lock()
            .ok()
            .and_then(|c| c.by_manifest.get(&target.digest).cloned())
        {
            return Ok(r);
        }
        let invalid = |reason: String| RuntimeError::InvalidImage {
            name: name.to_string(),
            reason,
        };
        let mut bytes = self.read_content(&target.digest).await?;
        let mut json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| invalid(format!("manifest: {e}")))?;
        let mut manifest_digest = target.digest.clone();
        let mut size = bytes.len() as u64;
        if is_index(&target.media_type, &json) {
            let index: Index =
                serde_json::from_value(json).map_err(|e| invalid(format!("index: {e}")))?;
            let m = index
                .manifests
                .iter()
                .find(|m| platform_matches(&m.platform))
                .ok_or_else(|| invalid(format!("no linux/{} manifest", host_arch())))?;
            manifest_digest = m.digest.clone();
            bytes = self.read_content(&m.digest).await?;
            size += bytes.len() as u64;
            json = serde_json::from_slice(&bytes).map_err(|e| invalid(format!("manifest: {e}")))?;
        }
        let manifest: Manifest =
            serde_json::from_value(json).map_err(|e| invalid(format!("manifest: {e}")))?;
        let config_bytes = self.read_content(&manifest.config.digest).await?;
        let config: ConfigFile =
            serde_json::from_slice(&config_bytes).map_err(|e| invalid(format!("config: {e}")))?;
        let diff_ids = config
            .rootfs
            .as_ref()
            .map(|r| r.diff_ids.clone())
            .unwrap_or_default();
        let chain_id = chain_ids(&diff_ids).pop().unwrap_or_default();
        size += manifest.config.size.max(0) as u64
            + manifest
                .layers
                .iter()
                .map(|l| l.size.max(0) as u64)
                .sum::<u64>();
        let resolved = Arc::new(Resolved {
            manifest_digest,
            config: image_config_from(&config),
            chain_id,
            size,
        });
        if let Ok(mut c) = self.images.lock() {
            c.by_manifest
                .insert(target.digest.clone(), resolved.clone());
        }
        Ok(resolved)
    }

    /// Imports an image archive natively (no `ctr`, no registry).
    ///
    /// Accepts an OCI image layout tar (`buildah push ... oci-archive:`, `skopeo copy`) and the
    /// `docker save` layout (`manifest.json`); layers may be tar, tar+gzip or tar+zstd (containerd
    /// decompresses). Names come from the `io.containerd.image.name` annotation, else
    /// `org.opencontainers.image.ref.name` (normalized like Docker), else `RepoTags`; `name`
    /// overrides them (archives with exactly one image). Re-importing is a no-op apart from
    /// re-pointing names. Returns the images created or updated.
    pub async fn import_archive(
        &self,
        path: &Path,
        name: Option<&str>,
    ) -> Result<Vec<Image>, RuntimeError> {
        let started = std::time::Instant::now();
        let p = path.to_path_buf();
        let n = name.map(str::to_string);
        let plans = tokio::task::spawn_blocking(move || plan_archive(&p, n.as_deref()))
            .await
            .map_err(|e| {
                RuntimeError::io("archive reader", std::io::Error::other(e.to_string()))
            })??;
        let lease = self.create_lease("import").await?;
        let result = self.import_plans(path, &lease, &plans).await;
        self.delete_lease(&lease).await;
        let images = result?;
        tracing::info!(archive = %path.display(), images = ?images.iter().map(|i| &i.name).collect::<Vec<_>>(), elapsed_ms = started.elapsed().as_millis() as u64, "imported image archive");
        Ok(images)
    }

    async fn import_plans(
        &self,
        path: &Path,
        lease: &str,
        plans: &[ImagePlan],
    ) -> Result<Vec<Image>, RuntimeError> {
        let mut out = Vec::new();
        for plan in plans {
            for blob in &plan.blobs {
                self.ensure_content(path, lease, blob).await?;
            }
            self.unpack(lease, plan).await?;
            for name in &plan.names {
                let img = self.put_image(lease, name, &plan.target).await?;
                out.push(Image {
                    name: name.clone(),
                    digest: plan.target.digest.clone(),
                    size: plan.blobs.iter().map(|b| b.desc.size.max(0) as u64).sum(),
                    created: to_system_time(img.created_at.as_ref()),
                });
            }
        }
        Ok(out)
    }

    /// Makes sure a blob is in the content store with (at least) the given labels.
    async fn ensure_content(
        &self,
        path: &Path,
        lease: &str,
        blob: &BlobPlan,
    ) -> Result<(), RuntimeError> {
        let digest = &blob.desc.digest;
        let mut content = ContentClient::new(self.channel.clone());
        match content
            .info(self.req_lease(
                InfoRequest {
                    digest: digest.clone(),
                },
                lease,
            ))
            .await
        {
            Ok(info) => {
                let have = info.into_inner().info.map(|i| i.labels).unwrap_or_default();
                if blob.labels.iter().all(|(k, v)| have.get(k) == Some(v)) {
                    return Ok(());
                }
                return self.update_labels(lease, digest, &blob.labels).await;
            }
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => return Err(RuntimeError::grpc("Content.Info", digest, s)),
        }
        match self.write_content(path, lease, blob).await {
            Err(RuntimeError::AlreadyExists(_)) => {
                self.update_labels(lease, digest, &blob.labels).await
            }
            other => other,
        }
    }

    async fn update_labels(
        &self,
        lease: &str,
        digest: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), RuntimeError> {
        use containerd_client::services::v1::Info;
        let req = UpdateRequest {
            info: Some(Info {
                digest: digest.to_string(),
                labels: labels.clone().into_iter().collect(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: labels.keys().map(|k| format!("labels.{k}")).collect(),
            }),
        };
        ContentClient::new(self.channel.clone())
            .update(self.req_lease(req, lease))
            .await
            .map_err(|s| RuntimeError::grpc("Content.Update", digest, s))?;
        Ok(())
    }

    async fn write_content(
        &self,
        path: &Path,
        lease: &str,
        blob: &BlobPlan,
    ) -> Result<(), RuntimeError> {
        let digest = blob.desc.digest.clone();
        let total = blob.desc.size;
        let ingest_ref = unique("dray-ingest");
        let (mut tx, rx) = futures::channel::mpsc::channel::<WriteContentRequest>(4);
        let source = blob.source.clone();
        let archive = path.to_path_buf();
        let labels: HashMap<String, String> = blob.labels.clone().into_iter().collect();
        let (r, d) = (ingest_ref.clone(), digest.clone());
        let producer = tokio::spawn(async move {
            let mut offset: i64 = 0;
            let send_chunk = |offset: i64, data: Vec<u8>| WriteContentRequest {
                action: WriteAction::Write as i32,
                r#ref: r.clone(),
                total,
                expected: d.clone(),
                offset,
                data,
                labels: Default::default(),
            };
            match source {
                BlobSource::Memory(bytes) => {
                    for c in bytes.chunks(CHUNK) {
                        if tx.send(send_chunk(offset, c.to_vec())).await.is_err() {
                            return Ok(());
                        }
                        offset += c.len() as i64;
                    }
                }
                BlobSource::Tar {
                    offset: start,
                    size,
                } => {
                    let mut f = tokio::fs::File::open(&archive).await?;
                    f.seek(SeekFrom::Start(start)).await?;
                    let mut f = f.take(size);
                    loop {
                        let mut buf = vec![0u8; CHUNK];
                        let mut filled = 0;
                        while filled < CHUNK {
                            let n = f.read(&mut buf[filled..]).await?;
                            if n == 0 {
                                break;
                            }
                            filled += n;
                        }
                        if filled == 0 {
                            break;
                        }
                        buf.truncate(filled);
                        if tx.send(send_chunk(offset, buf)).await.is_err() {
                            return Ok(());
                        }
                        offset += filled as i64;
                    }
                }
            }
            let _ = tx
                .send(WriteContentRequest {
                    action: WriteAction::Commit as i32,
                    r#ref: r.clone(),
                    total,
                    expected: d.clone(),
                    offset,
                    data: Vec::new(),
                    labels,
                })
                .await;
            Ok::<(), std::io::Error>(())
        });
        let mut client = ContentClient::new(self.channel.clone());
        let result: Result<(), RuntimeError> = async {
            let mut responses = client
                .write(self.req_lease(rx, lease))
                .await
                .map_err(|s| RuntimeError::grpc("Content.Write", &digest, s))?
                .into_inner();
            while let Some(resp) = responses.next().await {
                let resp = resp.map_err(|s| RuntimeError::grpc("Content.Write", &digest, s))?;
                if resp.action == WriteAction::Commit as i32 {
                    if !resp.digest.is_empty() && resp.digest != digest {
                        return Err(RuntimeError::InvalidImage {
                            name: digest.clone(),
                            reason: format!("content store computed {}", resp.digest),
                        });
                    }
                    return Ok(());
                }
            }
            Err(RuntimeError::Grpc {
                op: "Content.Write",
                code: Code::Unknown,
                message: format!("{digest}: stream ended before commit"),
            })
        }
        .await;
        match producer.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(RuntimeError::io(
                    format!("read blob {digest} from archive"),
                    e,
                ))
            }
            Err(e) => {
                return Err(RuntimeError::io(
                    "blob reader",
                    std::io::Error::other(e.to_string()),
                ))
            }
        }
        if result.is_err() {
            let _ = client
                .abort(self.req_lease(
                    containerd_client::services::v1::AbortRequest { r#ref: ingest_ref },
                    lease,
                ))
                .await;
        }
        result
    }

    /// Unpacks the layers of an image into committed snapshots named by chain id.
    async fn unpack(&self, lease: &str, plan: &ImagePlan) -> Result<(), RuntimeError> {
        let chains = chain_ids(&plan.diff_ids);
        let mut snaps = SnapshotsClient::new(self.channel.clone());
        for (i, layer) in plan.layers.iter().enumerate() {
            let chain = &chains[i];
            let stat = snaps
                .stat(self.req_lease(
                    StatSnapshotRequest {
                        snapshotter: SNAPSHOTTER.into(),
                        key: chain.clone(),
                    },
                    lease,
                ))
                .await;
            match stat {
                Ok(_) => continue,
                Err(s) if s.code() == Code::NotFound => {}
                Err(s) => return Err(RuntimeError::grpc("Snapshots.Stat", chain, s)),
            }
            let key = unique("dray-extract");
            let parent = if i == 0 {
                String::new()
            } else {
                chains[i - 1].clone()
            };
            let mounts = snaps
                .prepare(self.req_lease(
                    PrepareSnapshotRequest {
                        snapshotter: SNAPSHOTTER.into(),
                        key: key.clone(),
                        parent,
                        labels: Default::default(),
                    },
                    lease,
                ))
                .await
                .map_err(|s| RuntimeError::grpc("Snapshots.Prepare", &key, s))?
                .into_inner()
                .mounts;
            let applied = DiffClient::new(self.channel.clone())
                .apply(self.req_lease(
                    ApplyRequest {
                        diff: Some(to_ctr_desc(layer)),
                        mounts,
                        payloads: Default::default(),
                        sync_fs: false,
                    },
                    lease,
                ))
                .await;
            let res = match applied {
                Ok(r) => {
                    let got = r.into_inner().applied.map(|d| d.digest).unwrap_or_default();
                    if got != plan.diff_ids[i] {
                        Err(RuntimeError::InvalidImage {
                            name: layer.digest.clone(),
                            reason: format!(
                                "layer unpacked to {got}, config says {}",
                                plan.diff_ids[i]
                            ),
                        })
                    } else {
                        match snaps
                            .commit(self.req_lease(
                                CommitSnapshotRequest {
                                    snapshotter: SNAPSHOTTER.into(),
                                    name: chain.clone(),
                                    key: key.clone(),
                                    labels: Default::default(),
                                },
                                lease,
                            ))
                            .await
                        {
                            Ok(_) => Ok(()),
                            // Someone else unpacked the same layer concurrently.
                            Err(s) if s.code() == Code::AlreadyExists => {
                                Err(RuntimeError::AlreadyExists(chain.clone()))
                            }
                            Err(s) => Err(RuntimeError::grpc("Snapshots.Commit", chain, s)),
                        }
                    }
                }
                Err(s) => Err(RuntimeError::grpc("Diff.Apply", &layer.digest, s)),
            };
            match res {
                Ok(()) => {}
                Err(e) => {
                    let _ = snaps
                        .remove(self.req_lease(
                            RemoveSnapshotRequest {
                                snapshotter: SNAPSHOTTER.into(),
                                key,
                            },
                            lease,
                        ))
                        .await;
                    if !matches!(e, RuntimeError::AlreadyExists(_)) {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    async fn put_image(
        &self,
        lease: &str,
        name: &str,
        target: &Descriptor,
    ) -> Result<CtrImage, RuntimeError> {
        let mut images = ImagesClient::new(self.channel.clone());
        let image = CtrImage {
            name: name.to_string(),
            target: Some(to_ctr_desc(target)),
            ..Default::default()
        };
        match images
            .create(self.req_lease(
                CreateImageRequest {
                    image: Some(image.clone()),
                    source_date_epoch: None,
                },
                lease,
            ))
            .await
        {
            Ok(r) => return Ok(r.into_inner().image.unwrap_or(image)),
            Err(s) if s.code() == Code::AlreadyExists => {}
            Err(s) => return Err(RuntimeError::grpc("Images.Create", name, s)),
        }
        let existing = images
            .get(self.req(GetImageRequest {
                name: name.to_string(),
            }))
            .await
            .map_err(|s| RuntimeError::grpc("Images.Get", name, s))?
            .into_inner()
            .image
            .unwrap_or_default();
        if existing.target.as_ref().map(|t| t.digest.as_str()) == Some(target.digest.as_str()) {
            return Ok(existing);
        }
        let updated = images
            .update(self.req_lease(
                UpdateImageRequest {
                    image: Some(image.clone()),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["target".into()],
                    }),
                    source_date_epoch: None,
                },
                lease,
            ))
            .await
            .map_err(|s| RuntimeError::grpc("Images.Update", name, s))?;
        Ok(updated.into_inner().image.unwrap_or(image))
    }

    /// Lists the images of this namespace.
    pub async fn images(&self) -> Result<Vec<Image>, RuntimeError> {
        let list = ImagesClient::new(self.channel.clone())
            .list(self.req(ListImagesRequest { filters: vec![] }))
            .await
            .map_err(|s| RuntimeError::grpc("Images.List", "images", s))?
            .into_inner()
            .images;
        let mut out = Vec::with_capacity(list.len());
        for img in list {
            let Some(target) = img.target.as_ref() else {
                continue;
            };
            let size = match self.resolve_target(&img.name, target).await {
                Ok(r) => r.size,
                Err(e) => {
                    tracing::warn!(image = %img.name, error = %e, "cannot read image content");
                    target.size.max(0) as u64
                }
            };
            out.push(Image {
                name: img.name.clone(),
                digest: target.digest.clone(),
                size,
                created: to_system_time(img.created_at.as_ref()),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Reads an image's config (entrypoint, cmd, env, working dir, user, exposed ports).
    pub async fn image_config(&self, name: &str) -> Result<ImageConfig, RuntimeError> {
        Ok(self.resolve_image(name).await?.config.clone())
    }

    /// Removes an image name. Idempotent: a missing image is not an error. containerd's GC
    /// then removes content and snapshots no other image or container references.
    pub async fn remove_image(&self, name: &str) -> Result<(), RuntimeError> {
        match ImagesClient::new(self.channel.clone())
            .delete(self.req(DeleteImageRequest {
                name: name.to_string(),
                sync: false,
                target: None,
            }))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(RuntimeError::grpc("Images.Delete", name, s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let d = vec!["sha256:a".to_string(), "sha256:b".to_string()];
        let c = chain_ids(&d);
        assert_eq!(c[0], "sha256:a");
        assert_eq!(
            c[1],
            format!(
                "sha256:{}",
                hex::encode(Sha256::digest(b"sha256:a sha256:b"))
            )
        );
    }

    #[test]
    fn refs_are_normalized() {
        assert_eq!(
            normalize_ref("busybox").unwrap(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize_ref("busybox:1.36").unwrap(),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(normalize_ref("me/app").unwrap(), "docker.io/me/app:latest");
        assert_eq!(
            normalize_ref("localhost/app:v1").unwrap(),
            "localhost/app:v1"
        );
        assert_eq!(
            normalize_ref("reg:5000/a/b").unwrap(),
            "reg:5000/a/b:latest"
        );
        assert_eq!(
            normalize_ref("docker.io/library/x:y").unwrap(),
            "docker.io/library/x:y"
        );
    }
}
