//! The security policy's mount rule: a manifest may only bind host directories that lie inside
//! the user's allow list. The original compared mount paths by string prefix, so `/homeevil`,
//! `../../etc`, `~/../../etc` and a symbolic link under /tmp all reached the host's /etc.
//!
//! Here every host path is resolved with `realpath(3)` (all symbolic links followed) and
//! compared component by component ([`Path::starts_with`]) against allowed roots that are
//! themselves resolved. The roots are the user's home and `/tmp`, plus `[policy] allow_mounts`
//! in the user's `config.toml`; a manifest can never widen them. The check runs when a build
//! starts (before anything is fetched or run) and again before every session, whose bind
//! sources are the resolved paths — a link re-pointed after the build is caught then.
//!
//! The same `[policy]` table holds the environment rule's `env_allow` and `env_deny`
//! ([`load_env_policy`]; the rule itself is `crate::envpolicy`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::image::config_path;
use crate::lock::LockFile;
use crate::manifest::MountSpec;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "mount `{label}`: the host path {path} does not exist ({source}); create it or remove \
         the mount"
    )]
    Missing {
        label: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "mount `{label}`: the host path {path} resolves to {resolved}, which is outside the \
         directories mounts may come from ({allowed}); mount something inside them, or add the \
         directory to `allow_mounts` under [policy] in {config}"
    )]
    Outside {
        label: String,
        path: PathBuf,
        resolved: PathBuf,
        allowed: String,
        config: PathBuf,
    },
    #[error("{path}: [policy] {detail}")]
    Config { path: PathBuf, detail: String },
    #[error(transparent)]
    Env(#[from] crate::envpolicy::EnvPolicyError),
}

#[derive(Deserialize, Default)]
struct RawFile {
    #[serde(default)]
    policy: RawPolicy,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    allow_mounts: Vec<String>,
    /// Patterns of host variables that may also pass into sandboxes (`crate::envpolicy`).
    #[serde(default)]
    env_allow: Vec<String>,
    /// Patterns of variables that never pass, added to the built-in deny list.
    #[serde(default)]
    env_deny: Vec<String>,
}

/// The user's config file as text (empty when there is none) and its path.
fn read_config(home: &Path) -> Result<(String, PathBuf), PolicyError> {
    let config = config_path(home);
    match std::fs::read_to_string(&config) {
        Ok(text) => Ok((text, config)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((String::new(), config)),
        Err(e) => Err(PolicyError::Config {
            path: config,
            detail: format!("cannot read the file: {e}"),
        }),
    }
}

fn parse_raw(text: &str, config: &Path) -> Result<RawFile, PolicyError> {
    toml::from_str(text).map_err(|e| PolicyError::Config {
        path: config.to_path_buf(),
        detail: e.to_string().trim_end().to_string(),
    })
}

/// The user's environment policy: the built-in lists plus `[policy] env_allow` and
/// `env_deny` of the same config file.
pub fn load_env_policy(home: &Path) -> Result<crate::envpolicy::EnvPolicy, PolicyError> {
    let (text, config) = read_config(home)?;
    parse_env_policy(&text, &config)
}

pub fn parse_env_policy(
    text: &str,
    config: &Path,
) -> Result<crate::envpolicy::EnvPolicy, PolicyError> {
    let raw = parse_raw(text, config)?;
    Ok(crate::envpolicy::EnvPolicy::new(
        &raw.policy.env_allow,
        &raw.policy.env_deny,
        config,
    )?)
}

/// Where mounts may come from: resolved, absolute directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPolicy {
    allowed: Vec<PathBuf>,
    config: PathBuf,
}

impl MountPolicy {
    /// The user's policy: `home`, `/tmp`, and the config file's `allow_mounts`. Roots that do
    /// not exist are dropped (nothing can be mounted from them anyway).
    pub fn load(home: &Path) -> Result<MountPolicy, PolicyError> {
        let (text, config) = read_config(home)?;
        MountPolicy::parse(&text, home, config)
    }

    pub fn parse(text: &str, home: &Path, config: PathBuf) -> Result<MountPolicy, PolicyError> {
        MountPolicy::parse_with(
            text,
            vec![home.to_path_buf(), PathBuf::from("/tmp")],
            config,
        )
    }

    /// `parse` with other default roots than home and /tmp.
    fn parse_with(
        text: &str,
        mut roots: Vec<PathBuf>,
        config: PathBuf,
    ) -> Result<MountPolicy, PolicyError> {
        let raw = parse_raw(text, &config)?;
        for entry in raw.policy.allow_mounts {
            let path = PathBuf::from(&entry);
            if !path.is_absolute() {
                return Err(PolicyError::Config {
                    path: config,
                    detail: format!("allow_mounts entry `{entry}` is not an absolute path"),
                });
            }
            roots.push(path);
        }
        let mut allowed: Vec<PathBuf> = roots
            .iter()
            .filter_map(|r| std::fs::canonicalize(r).ok())
            .collect();
        allowed.sort();
        allowed.dedup();
        Ok(MountPolicy { allowed, config })
    }

    /// The resolved host path of a mount, if the policy allows it.
    pub fn check(&self, label: &str, host_path: &Path) -> Result<PathBuf, PolicyError> {
        let resolved = std::fs::canonicalize(host_path).map_err(|source| PolicyError::Missing {
            label: label.to_string(),
            path: host_path.to_path_buf(),
            source,
        })?;
        if self.allowed.iter().any(|root| resolved.starts_with(root)) {
            return Ok(resolved);
        }
        Err(PolicyError::Outside {
            label: label.to_string(),
            path: host_path.to_path_buf(),
            resolved,
            allowed: self
                .allowed
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            config: self.config.clone(),
        })
    }

    /// Checks every mount of a manifest.
    pub fn check_manifest(&self, mounts: &[MountSpec]) -> Result<(), PolicyError> {
        for m in mounts {
            self.check(&m.label, &m.host_path)?;
        }
        Ok(())
    }

    /// A copy of `lock` whose mount sources are checked and resolved, for a session.
    pub fn resolve_lock(&self, lock: &LockFile) -> Result<LockFile, PolicyError> {
        let mut out = lock.clone();
        for m in &mut out.mounts {
            m.host_path = self.check(&m.label, &m.host_path)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::{MountPolicy, PolicyError};

    /// The test directories live under /tmp, so only `home` is a default root here.
    fn policy(home: &std::path::Path, text: &str) -> MountPolicy {
        MountPolicy::parse_with(text, vec![home.to_path_buf()], home.join("config.toml"))
            .expect("policy")
    }

    #[test]
    fn paths_are_resolved_and_compared_by_component() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path().canonicalize().expect("canonical");
        let home = base.join("home/user");
        fs::create_dir_all(home.join("src")).expect("mkdir");
        fs::create_dir_all(base.join("home/userevil")).expect("mkdir");
        fs::create_dir_all(base.join("etc")).expect("mkdir");
        symlink(base.join("etc"), home.join("link-out")).expect("symlink");
        symlink(home.join("src"), home.join("link-in")).expect("symlink");
        let p = policy(&home, "");
        assert_eq!(
            p.check("a", &home.join("src")).expect("inside"),
            home.join("src")
        );
        assert_eq!(p.check("a", &home).expect("home itself"), home);
        assert_eq!(
            p.check("a", &home.join("link-in"))
                .expect("a link that stays inside"),
            home.join("src")
        );
        for outside in [
            base.join("home/userevil"),
            home.join("link-out"),
            home.join("src/../../userevil"),
            base.join("etc"),
        ] {
            let err = p.check("a", &outside).expect_err("outside");
            assert!(
                matches!(err, PolicyError::Outside { .. }),
                "{outside:?}: {err}"
            );
            assert!(err.to_string().contains("allow_mounts"), "{err}");
        }
        assert!(matches!(
            p.check("a", &home.join("missing")),
            Err(PolicyError::Missing { .. })
        ));
    }

    #[test]
    fn the_config_widens_the_list_and_is_checked() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path().canonicalize().expect("canonical");
        let home = base.join("home");
        let data = base.join("data");
        fs::create_dir_all(&home).expect("mkdir");
        fs::create_dir_all(&data).expect("mkdir");
        assert!(policy(&home, "").check("d", &data).is_err());
        let text = format!("[policy]\nallow_mounts = [\"{}\"]\n", data.display());
        assert_eq!(
            policy(&home, &text).check("d", &data).expect("allowed"),
            data
        );
        let text = "[policy]\nenv_allow = [\"CARGO_*\"]\nenv_deny = [\"LC_*\"]\n";
        assert!(
            policy(&home, text).check("d", &data).is_err(),
            "env keys are known"
        );
        let env = super::parse_env_policy(text, &home.join("c.toml")).expect("env policy");
        assert!(env.passes("CARGO_HOME") && !env.passes("LC_ALL") && env.passes("LANG"));
        assert!(matches!(
            super::parse_env_policy("[policy]\nenv_deny = [\"a b\"]\n", &home),
            Err(PolicyError::Env(_))
        ));
        for bad in [
            "[policy]\nallow_mounts = [\"relative/dir\"]\n",
            "[policy]\nallow_everything = true\n",
        ] {
            let err = MountPolicy::parse_with(bad, vec![home.clone()], home.join("c.toml"))
                .expect_err(bad);
            assert!(matches!(err, PolicyError::Config { .. }), "{err}");
        }
    }
}
