//! Objects of an app: upload, fetch, delete (the blob store itself is [`crate::objects`]).

use super::{Controllers, Error};
use crate::objects::{ObjectError, Objects};

impl From<ObjectError> for Error {
    fn from(e: ObjectError) -> Self {
        match e {
            ObjectError::InvalidKey(_) => Error::BadRequest(e.to_string()),
            ObjectError::NotFound(_) => Error::NotFound(e.to_string()),
            ObjectError::Io { .. } => Error::Internal(e.to_string()),
        }
    }
}

impl Controllers {
    /// Store an object for an app; returns its `object://` URL.
    pub async fn object_put<S, E>(&self, app: &str, key: &str, body: S) -> Result<String, Error>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.app_record(app).await?;
        let size = self.objects.put(app, key, body).await?;
        tracing::info!(target: "audit", app, key, size, "object stored");
        Ok(Objects::url(app, key))
    }

    /// Open an object of an app for reading.
    pub async fn object_open(&self, app: &str, key: &str) -> Result<tokio::fs::File, Error> {
        self.app_record(app).await?;
        Ok(self.objects.open(app, key).await?)
    }

    /// Delete an object of an app.
    pub async fn object_delete(&self, app: &str, key: &str) -> Result<(), Error> {
        self.app_record(app).await?;
        Ok(self.objects.delete(app, key).await?)
    }

    /// The filesystem path of an object (for the agent's own consumers: image import).
    pub fn object_path(&self, app: &str, key: &str) -> Result<std::path::PathBuf, Error> {
        Ok(self.objects.path(app, key)?)
    }
}
