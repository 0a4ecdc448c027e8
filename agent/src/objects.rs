//! Objects: a per-app blob store on the local filesystem (`DATA_DIR/objects/<app>/<key>`).
//!
//! Used for uploads that are too big for a form field (image archives, source tarballs) and,
//! later, build logs. Writes go to a temp file that is fsynced and renamed into place, so a
//! reader never sees half an object. This module owns the layout and key validation; it must
//! never interpret what it stores.

use std::path::{Component, Path, PathBuf};

use tokio::io::AsyncWriteExt;

/// Why an object operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("invalid object key {0:?}: use a relative path of letters, digits, '.', '-', '_' and '/' without '..'")]
    InvalidKey(String),
    #[error("object not found: {0}")]
    NotFound(String),
    #[error("object store I/O error on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The filesystem object store.
#[derive(Clone, Debug)]
pub struct Objects {
    root: PathBuf,
}

impl Objects {
    pub fn new(root: PathBuf) -> Self {
        Objects { root }
    }

    /// The path of an object after validating app and key.
    pub fn path(&self, app: &str, key: &str) -> Result<PathBuf, ObjectError> {
        let valid = !key.is_empty()
            && key.len() <= 512
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
            && Path::new(key)
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        if !valid {
            return Err(ObjectError::InvalidKey(key.to_string()));
        }
        Ok(self.root.join(app).join(key))
    }

    /// The `object://app/key` URL of an object.
    pub fn url(app: &str, key: &str) -> String {
        format!("object://{app}/{key}")
    }

    /// Store an object from a stream of chunks; returns its size.
    pub async fn put<S, E>(&self, app: &str, key: &str, mut chunks: S) -> Result<u64, ObjectError>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let path = self.path(app, key)?;
        let io = |source, p: &Path| ObjectError::Io {
            path: p.display().to_string(),
            source,
        };
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io(e, &dir))?;
        let tmp = dir.join(format!(".upload-{}", crate::ids::token()));
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| io(e, &tmp))?;
        let mut size = 0u64;
        use futures::StreamExt;
        while let Some(chunk) = chunks.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Err(io(std::io::Error::other(e.to_string()), &tmp));
                }
            };
            size += chunk.len() as u64;
            if let Err(e) = file.write_all(&chunk).await {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(io(e, &tmp));
            }
        }
        file.sync_all().await.map_err(|e| io(e, &tmp))?;
        drop(file);
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| io(e, &path))?;
        Ok(size)
    }

    /// Whether an object exists.
    pub async fn exists(&self, app: &str, key: &str) -> Result<bool, ObjectError> {
        let path = self.path(app, key)?;
        Ok(tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_file()))
    }

    /// Open an object for reading.
    pub async fn open(&self, app: &str, key: &str) -> Result<tokio::fs::File, ObjectError> {
        let path = self.path(app, key)?;
        tokio::fs::File::open(&path).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ObjectError::NotFound(key.to_string())
            } else {
                ObjectError::Io {
                    path: path.display().to_string(),
                    source: e,
                }
            }
        })
    }

    /// Delete an object (missing is not an error).
    pub async fn delete(&self, app: &str, key: &str) -> Result<(), ObjectError> {
        let path = self.path(app, key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ObjectError::Io {
                path: path.display().to_string(),
                source: e,
            }),
        }
    }

    /// Delete every object of an app.
    pub async fn delete_app(&self, app: &str) -> Result<(), ObjectError> {
        let dir = self.root.join(app);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ObjectError::Io {
                path: dir.display().to_string(),
                source: e,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_the_app_directory() {
        let o = Objects::new(PathBuf::from("/data/objects"));
        assert!(o.path("a", "tmp/x.tar").is_ok());
        for bad in ["", "../x", "/etc/passwd", "a/../../b", "a b", "a\\b"] {
            assert!(o.path("a", bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn put_is_atomic_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let o = Objects::new(dir.path().to_path_buf());
        let chunks = futures::stream::iter(vec![
            Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"hello ")),
            Ok(bytes::Bytes::from_static(b"world")),
        ]);
        assert_eq!(o.put("app", "tmp/a.txt", chunks).await.unwrap(), 11);
        assert!(o.exists("app", "tmp/a.txt").await.unwrap());
        let mut f = o.open("app", "tmp/a.txt").await.unwrap();
        let mut s = String::new();
        use tokio::io::AsyncReadExt;
        f.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "hello world");
        o.delete("app", "tmp/a.txt").await.unwrap();
        assert!(!o.exists("app", "tmp/a.txt").await.unwrap());
        assert!(matches!(
            o.open("app", "tmp/a.txt").await,
            Err(ObjectError::NotFound(_))
        ));
    }
}
