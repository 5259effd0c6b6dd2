//! Small value types shared by every layer: identifiers, digests, backend names and stored
//! lifecycle states. Each one is validated when it is made, so code that holds one never has to
//! re-check it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid identifier, digest or name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    #[error("`{value}` is not a {what}: expected 64 lower-case hexadecimal characters")]
    NotHex64 { what: &'static str, value: String },
    #[error("unknown backend `{0}`: allowed values are namespace, oci, mock")]
    UnknownBackend(String),
    #[error("unknown environment state `{0}`")]
    UnknownState(String),
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

macro_rules! hex64_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The full 64-character lower-case hex form.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = TypeError;
            fn from_str(s: &str) -> Result<Self, TypeError> {
                if is_hex64(s) {
                    Ok(Self(s.to_string()))
                } else {
                    Err(TypeError::NotHex64 { what: $what, value: s.to_string() })
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex64_type!(
    /// An environment's content identity: blake3 of its locked inputs (see docs/identity.md).
    EnvId,
    "environment id"
);
hex64_type!(
    /// The blake3 hash of an object in the store, which is also its key.
    Digest,
    "blake3 digest"
);

impl EnvId {
    /// An id is the hex form of a blake3 hash, so any digest has the right shape for one.
    pub fn from_digest(d: &Digest) -> EnvId {
        EnvId(d.as_str().to_string())
    }

    /// The first 12 hex characters, used in listings and as a handy prefix.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl Digest {
    /// Hash a byte slice with blake3.
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest(blake3::hash(bytes).to_hex().to_string())
    }

    /// Wrap a finished blake3 hasher's output.
    pub fn from_hash(hash: blake3::Hash) -> Digest {
        Digest(hash.to_hex().to_string())
    }
}

/// Which runtime builds and runs an environment (`[runtime] backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum BackendKind {
    /// Native Linux namespaces + overlayfs; the default.
    #[default]
    Namespace,
    /// An OCI runtime (runc, crun, youki).
    Oci,
    /// A deterministic backend for tests and demos that runs nothing in isolation.
    Mock,
}

impl BackendKind {
    pub const ALL: [BackendKind; 3] = [BackendKind::Namespace, BackendKind::Oci, BackendKind::Mock];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Namespace => "namespace",
            BackendKind::Oci => "oci",
            BackendKind::Mock => "mock",
        }
    }
}

impl FromStr for BackendKind {
    type Err = TypeError;
    /// Accepts the names case-insensitively and with surrounding blanks, as the original did.
    fn from_str(s: &str) -> Result<Self, TypeError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "namespace" => Ok(BackendKind::Namespace),
            "oci" => Ok(BackendKind::Oci),
            "mock" => Ok(BackendKind::Mock),
            _ => Err(TypeError::UnknownBackend(s.to_string())),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for BackendKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for BackendKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The lifecycle state kept in an environment's metadata. `running` is not stored: it is
/// derived at read time from live session markers, so it is right even after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvState {
    /// Registered, build not finished. Only visible while a build is in progress.
    Defined,
    /// Built and usable.
    Built,
    /// Protected against change: no rebuild, rename, destroy or writable use until unfrozen.
    Frozen,
    /// Packed into a single store object; must be unarchived before use.
    Archived,
}

impl EnvState {
    pub fn as_str(self) -> &'static str {
        match self {
            EnvState::Defined => "defined",
            EnvState::Built => "built",
            EnvState::Frozen => "frozen",
            EnvState::Archived => "archived",
        }
    }
}

impl fmt::Display for EnvState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_id_requires_64_lower_hex() {
        let ok = "a".repeat(64);
        assert_eq!(
            ok.parse::<EnvId>().map(|i| i.short().to_string()),
            Ok("a".repeat(12))
        );
        assert!("A".repeat(64).parse::<EnvId>().is_err());
        assert!("a".repeat(63).parse::<EnvId>().is_err());
        assert!(format!("{}g", "a".repeat(63)).parse::<EnvId>().is_err());
    }

    #[test]
    fn backend_names_parse_case_insensitively() {
        assert_eq!(" Mock ".parse::<BackendKind>(), Ok(BackendKind::Mock));
        assert_eq!(
            "NAMESPACE".parse::<BackendKind>(),
            Ok(BackendKind::Namespace)
        );
        assert!("docker".parse::<BackendKind>().is_err());
    }
}
