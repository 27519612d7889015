//! The bridge's errors.

use std::path::PathBuf;

/// A configuration that cannot work, found before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has unknown or missing fields.
    #[error("bad config: {0}")]
    Parse(String),
    /// A value is out of range or names something impossible.
    #[error("bad config: {0}")]
    Invalid(String),
}

/// Why a bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The configuration is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Zenoh refused: opening the session or declaring a key expression.
    #[error("zenoh: {what}: {reason}")]
    Zenoh {
        /// What the bridge was doing.
        what: String,
        /// Zenoh's message.
        reason: String,
    },
    /// A local channel could not be opened.
    #[error("route {route}: {source}")]
    Channel {
        /// The route, as `KIND DIRECTION "CHANNEL"`.
        route: String,
        /// shmkit's error, which names the channel and the cause.
        source: shmkit::Error,
    },
}

impl BridgeError {
    pub(crate) fn zenoh(what: impl Into<String>, e: impl std::fmt::Display) -> BridgeError {
        BridgeError::Zenoh {
            what: what.into(),
            reason: crate::config::zenoh_message(&e.to_string()),
        }
    }
}
