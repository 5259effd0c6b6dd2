//! The security policy's environment rule: what a sandboxed program's environment holds.
//!
//! The sandbox never inherits the caller's environment. It gets, from highest precedence down:
//! 1. the variables karapace sets itself (`PATH`, `HOME`, `USER`, `container`,
//!    `KARAPACE_*`; the backend lets the manifest replace `PATH`, `HOME` and `USER`);
//! 2. the variables of the host integrations that are on and present (`WAYLAND_DISPLAY`,
//!    `SSH_AUTH_SOCK` when the agent is enabled, …; `crate::integration`), whose values point
//!    at what is bound inside — these pass even where a deny pattern matches, since enabling the
//!    integration is the explicit request for them;
//! 3. the manifest's `[env]` table, whose names may never match a deny pattern (refused when
//!    the manifest is read for the built-in list, at build and before every session for the
//!    user's own);
//! 4. host variables whose names match an allow pattern ([`DEFAULT_ALLOW`] plus the user
//!    config's `[policy] env_allow`) and no deny pattern ([`DEFAULT_DENY`] plus
//!    `[policy] env_deny`).
//!
//! Patterns are names with `*` (any run of characters, also none) and `?` (one character),
//! matched against the whole name, case-sensitively (environ(7) names are case-sensitive).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Host variables that pass by default: the terminal, the locale, the time zone, colour
/// preferences, the desktop's name (GUI toolkits pick their look from it), the user's editor
/// and pager. None of them carries a credential. Proxies are left out on purpose: their URLs
/// may hold a password (`env_allow = ["*_proxy", "*_PROXY"]` passes them).
pub const DEFAULT_ALLOW: &[&str] = &[
    "TERM",
    "COLORTERM",
    "TERM_PROGRAM",
    "TERM_PROGRAM_VERSION",
    "VTE_VERSION",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "NO_COLOR",
    "CLICOLOR",
    "CLICOLOR_FORCE",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "XDG_CURRENT_DESKTOP",
    "XDG_SESSION_TYPE",
];

/// Names that never pass from the host or the manifest: credentials, agents and handles on
/// host services. Integration variables (`SSH_AUTH_SOCK` with `ssh_agent = true`,
/// `DBUS_SESSION_BUS_ADDRESS` with `dbus`) are the only exception.
pub const DEFAULT_DENY: &[&str] = &[
    "SSH_AUTH_SOCK",
    "SSH_AGENT_PID",
    "GPG_AGENT_INFO",
    "GNUPGHOME",
    "AWS_*",
    "AZURE_*",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "CLOUDSDK_*",
    "VAULT_*",
    "DOCKER_HOST",
    "DOCKER_CONFIG",
    "DOCKER_CERT_PATH",
    "KUBECONFIG",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "TOKEN",
    "*_TOKEN",
    "*_TOKEN_*",
    "*SECRET*",
    "*PASSWORD*",
    "*PASSWD*",
    "*_API_KEY*",
    "*_APIKEY*",
    "*_ACCESS_KEY*",
    "*_PRIVATE_KEY*",
    "*_CREDENTIALS*",
    "DBUS_SESSION_BUS_ADDRESS",
    "XAUTHORITY",
    "WAYLAND_DISPLAY",
    "DISPLAY",
    "PULSE_SERVER",
    "XDG_RUNTIME_DIR",
];

/// Names the sandbox sets itself; a manifest may not set them (`PATH` and `HOME` it may).
pub const RESERVED: &[&str] = &["KARAPACE_*", "container"];

/// Longest variable name accepted from a manifest or a pattern.
pub const MAX_NAME_LEN: usize = 255;

/// Why a variable name or pattern is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameProblem {
    Empty,
    TooLong(usize),
    BadChar(char),
    FirstIsDigit,
}

impl std::fmt::Display for NameProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameProblem::Empty => f.write_str("is empty"),
            NameProblem::TooLong(n) => write!(f, "is {n} bytes long, more than {MAX_NAME_LEN}"),
            NameProblem::BadChar(c) => write!(f, "contains {c:?}"),
            NameProblem::FirstIsDigit => f.write_str("starts with a digit"),
        }
    }
}

/// What environment names may be: ASCII letters, digits and `_`, not starting with a digit
/// (the portable set of POSIX's "Environment Variables", which every shell can export).
pub fn check_name(name: &str) -> Result<(), NameProblem> {
    check_chars(name, false)
}

fn check_chars(text: &str, wildcards: bool) -> Result<(), NameProblem> {
    if text.is_empty() {
        return Err(NameProblem::Empty);
    }
    if text.len() > MAX_NAME_LEN {
        return Err(NameProblem::TooLong(text.len()));
    }
    if let Some(c) = text.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || *c == '_' || (wildcards && (*c == '*' || *c == '?')))
    }) {
        return Err(NameProblem::BadChar(c));
    }
    if text.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(NameProblem::FirstIsDigit);
    }
    Ok(())
}

/// A glob over variable names: `*` any run, `?` one character, everything else literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    pub fn new(text: &str) -> Result<Pattern, NameProblem> {
        check_chars(text, true)?;
        Ok(Pattern(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the whole of `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        glob(self.0.as_bytes(), name.as_bytes())
    }
}

/// Iterative wildcard matching with one backtrack point (the last `*`), linear enough for
/// names of at most 255 bytes.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

fn builtin(list: &[&str]) -> Vec<Pattern> {
    list.iter().map(|p| Pattern(p.to_string())).collect()
}

/// The first pattern of `patterns` matching `name`.
fn first_match<'a>(patterns: &'a [Pattern], name: &str) -> Option<&'a Pattern> {
    patterns.iter().find(|p| p.matches(name))
}

/// The built-in deny pattern or reserved name that `name` matches, for the manifest's rules.
pub fn builtin_refusal(name: &str) -> Option<String> {
    let reserved = builtin(RESERVED);
    if let Some(p) = first_match(&reserved, name) {
        return Some(format!("is set by karapace itself (`{}`)", p.as_str()));
    }
    first_match(&builtin(DEFAULT_DENY), name)
        .map(|p| format!("matches the deny pattern `{}`", p.as_str()))
}

#[derive(Debug, thiserror::Error)]
pub enum EnvPolicyError {
    #[error("{path}: [policy] {key}: `{pattern}` {problem} (allowed: letters, digits, _ and the wildcards * and ?)")]
    BadPattern {
        path: PathBuf,
        key: &'static str,
        pattern: String,
        problem: NameProblem,
    },
    #[error(
        "[env] {name}: the name matches `{pattern}` of env_deny under [policy] in {config}, \
         which a manifest cannot override; rename the variable or remove the pattern"
    )]
    Denied {
        name: String,
        pattern: String,
        config: PathBuf,
    },
}

/// The user's environment policy: the built-in lists plus `[policy] env_allow` and
/// `env_deny` of the user's config file (the file `crate::policy::MountPolicy` reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvPolicy {
    allow: Vec<Pattern>,
    deny: Vec<Pattern>,
    /// The config file, named in errors.
    config: PathBuf,
}

impl Default for EnvPolicy {
    fn default() -> Self {
        EnvPolicy {
            allow: builtin(DEFAULT_ALLOW),
            deny: builtin(DEFAULT_DENY),
            config: PathBuf::new(),
        }
    }
}

impl EnvPolicy {
    /// The built-in lists extended by the user's patterns (already read from `config`).
    pub fn new(
        env_allow: &[String],
        env_deny: &[String],
        config: &Path,
    ) -> Result<EnvPolicy, EnvPolicyError> {
        let parse = |key: &'static str, list: &[String]| -> Result<Vec<Pattern>, EnvPolicyError> {
            list.iter()
                .map(|text| {
                    Pattern::new(text).map_err(|problem| EnvPolicyError::BadPattern {
                        path: config.to_path_buf(),
                        key,
                        pattern: text.clone(),
                        problem,
                    })
                })
                .collect()
        };
        let mut policy = EnvPolicy {
            config: config.to_path_buf(),
            ..EnvPolicy::default()
        };
        policy.allow.extend(parse("env_allow", env_allow)?);
        policy.deny.extend(parse("env_deny", env_deny)?);
        Ok(policy)
    }

    /// The deny pattern (built-in or the user's) that `name` matches.
    pub fn denies(&self, name: &str) -> Option<&Pattern> {
        first_match(&self.deny, name)
    }

    /// Whether a host variable of this name may pass.
    pub fn passes(&self, name: &str) -> bool {
        self.denies(name).is_none() && first_match(&self.allow, name).is_some()
    }

    /// Refuses a manifest whose `[env]` names a variable the user's deny list covers (the
    /// built-in list is enforced when the manifest is read).
    pub fn check_manifest(&self, env: &BTreeMap<String, String>) -> Result<(), EnvPolicyError> {
        for name in env.keys() {
            if let Some(pattern) = self.denies(name) {
                return Err(EnvPolicyError::Denied {
                    name: name.clone(),
                    pattern: pattern.as_str().to_string(),
                    config: self.config.clone(),
                });
            }
        }
        Ok(())
    }

    /// The sandbox's whole environment (see the module doc for the precedence), sorted by
    /// name. `host` is the caller's environment; `own` what karapace sets; `integrations` the
    /// enabled integrations' variables; `manifest` the `[env]` table (checked already by
    /// [`EnvPolicy::check_manifest`]; a denied name is dropped here all the same).
    pub fn environment<'a>(
        &self,
        host: impl IntoIterator<Item = (&'a str, &'a str)>,
        own: &[(String, String)],
        integrations: &[(String, String)],
        manifest: &BTreeMap<String, String>,
    ) -> Vec<(String, String)> {
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in host {
            if self.passes(name) {
                env.insert(name.to_string(), value.to_string());
            }
        }
        for (name, value) in manifest {
            if self.denies(name).is_none() {
                env.insert(name.clone(), value.clone());
            }
        }
        for (name, value) in integrations.iter().chain(own) {
            env.insert(name.clone(), value.clone());
        }
        env.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(text: &str) -> Pattern {
        Pattern::new(text).expect("pattern")
    }

    #[test]
    fn patterns_match_whole_names() {
        assert!(pat("AWS_*").matches("AWS_SECRET_ACCESS_KEY"));
        assert!(pat("AWS_*").matches("AWS_"));
        assert!(!pat("AWS_*").matches("XAWS_X"));
        assert!(pat("*_TOKEN").matches("FOO_TOKEN"));
        assert!(!pat("*_TOKEN").matches("FOO_TOKENS"));
        assert!(pat("*SECRET*").matches("SECRET"));
        assert!(pat("*SECRET*").matches("MY_SECRET_THING"));
        assert!(pat("LC_*").matches("LC_ALL"));
        assert!(!pat("LC_*").matches("LC"));
        assert!(pat("T?Z").matches("TAZ"));
        assert!(!pat("T?Z").matches("TZ"));
        assert!(pat("*").matches("ANYTHING"));
        assert!(pat("A*B*C").matches("AxxBxxBxxC"));
        assert!(!pat("A*B*C").matches("AxxBxxBxxD"));
        assert!(pat("TERM").matches("TERM"));
        assert!(!pat("TERM").matches("term"), "case-sensitive");
        assert!(!pat("TERM").matches("TERMINAL"));
    }

    #[test]
    fn names_and_patterns_are_validated() {
        assert_eq!(check_name("FOO_1"), Ok(()));
        assert_eq!(check_name("_x"), Ok(()));
        assert_eq!(check_name(""), Err(NameProblem::Empty));
        assert_eq!(check_name("1A"), Err(NameProblem::FirstIsDigit));
        assert_eq!(check_name("A=B"), Err(NameProblem::BadChar('=')));
        assert_eq!(check_name("A B"), Err(NameProblem::BadChar(' ')));
        assert_eq!(check_name("Ä"), Err(NameProblem::BadChar('Ä')));
        assert_eq!(check_name("A*"), Err(NameProblem::BadChar('*')));
        assert_eq!(check_name(&"A".repeat(256)), Err(NameProblem::TooLong(256)));
        assert!(Pattern::new("A*").is_ok());
        assert!(Pattern::new("A-*").is_err());
        let err = EnvPolicy::new(&["GOOD".into(), "bad name".into()], &[], Path::new("/c"))
            .expect_err("bad pattern");
        assert!(err.to_string().contains("env_allow"), "{err}");
    }

    #[test]
    fn every_default_pattern_is_valid_and_the_lists_do_not_overlap() {
        for p in DEFAULT_ALLOW.iter().chain(DEFAULT_DENY).chain(RESERVED) {
            Pattern::new(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        }
        let deny = builtin(DEFAULT_DENY);
        for allowed in DEFAULT_ALLOW {
            assert!(first_match(&deny, allowed).is_none(), "{allowed} is denied");
        }
    }

    fn host() -> Vec<(&'static str, &'static str)> {
        vec![
            ("TERM", "xterm-256color"),
            ("LANG", "C.UTF-8"),
            ("LC_TIME", "de_DE.UTF-8"),
            ("HOME", "/home/host"),
            ("PATH", "/host/bin"),
            ("SHELL", "/bin/zsh"),
            ("AWS_SECRET_ACCESS_KEY", "aws"),
            ("AWS_REGION", "eu"),
            ("GITHUB_TOKEN", "gh"),
            ("FOO_TOKEN", "foo"),
            ("SSH_AUTH_SOCK", "/tmp/agent"),
            ("GPG_AGENT_INFO", "gpg"),
            ("DOCKER_HOST", "tcp://x"),
            ("DB_PASSWORD", "pw"),
            ("OPENAI_API_KEY", "k"),
            ("KUBECONFIG", "/k"),
            ("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/1/bus"),
            ("WAYLAND_DISPLAY", "wayland-1"),
            ("EDITOR", "vim"),
            ("CARGO_TARGET_DIR", "/t"),
        ]
    }

    fn names(env: &[(String, String)]) -> Vec<&str> {
        env.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn only_allowed_host_variables_pass_and_deny_wins() {
        let policy = EnvPolicy::default();
        let own = vec![
            ("PATH".to_string(), "/usr/bin".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ];
        let env = policy.environment(host(), &own, &[], &BTreeMap::new());
        assert_eq!(
            names(&env),
            ["EDITOR", "HOME", "LANG", "LC_TIME", "PATH", "TERM"]
        );
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PATH"), Some("/usr/bin"), "karapace's own value wins");
        assert_eq!(get("HOME"), Some("/root"));
    }

    #[test]
    fn user_patterns_extend_both_lists_and_deny_beats_allow() {
        let policy = EnvPolicy::new(
            &["AWS_REGION".into(), "CARGO_*".into(), "SHELL".into()],
            &["LC_*".into(), "SHELL".into()],
            Path::new("/c"),
        )
        .expect("policy");
        let env = policy.environment(host(), &[], &[], &BTreeMap::new());
        assert_eq!(names(&env), ["CARGO_TARGET_DIR", "EDITOR", "LANG", "TERM"]);
        // A user's allow cannot pass what the built-in deny list holds either.
        assert!(!policy.passes("AWS_REGION"));
        let all = EnvPolicy::new(&["*".into()], &[], Path::new("/c")).expect("policy");
        let env = all.environment(host(), &[], &[], &BTreeMap::new());
        for secret in [
            "AWS_SECRET_ACCESS_KEY",
            "GITHUB_TOKEN",
            "FOO_TOKEN",
            "SSH_AUTH_SOCK",
            "GPG_AGENT_INFO",
            "DOCKER_HOST",
            "DB_PASSWORD",
            "OPENAI_API_KEY",
            "KUBECONFIG",
            "DBUS_SESSION_BUS_ADDRESS",
            "WAYLAND_DISPLAY",
        ] {
            assert!(!names(&env).contains(&secret), "{secret} passed `*`");
        }
        assert!(names(&env).contains(&"SHELL"));
    }

    #[test]
    fn integrations_pass_despite_deny_and_the_manifest_cannot() {
        let policy = EnvPolicy::new(&[], &["MY_*".into()], Path::new("/conf")).expect("policy");
        let integrations = vec![
            ("SSH_AUTH_SOCK".to_string(), "/run/agent".to_string()),
            ("WAYLAND_DISPLAY".to_string(), "wayland-1".to_string()),
        ];
        let mut manifest = BTreeMap::new();
        manifest.insert("RUST_LOG".to_string(), "debug".to_string());
        manifest.insert("MY_VAR".to_string(), "x".to_string());
        manifest.insert("LANG".to_string(), "en_GB.UTF-8".to_string());
        let env = policy.environment(host(), &[], &integrations, &manifest);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("SSH_AUTH_SOCK"), Some("/run/agent"), "not the host's");
        assert_eq!(get("WAYLAND_DISPLAY"), Some("wayland-1"));
        assert_eq!(get("RUST_LOG"), Some("debug"));
        assert_eq!(
            get("LANG"),
            Some("en_GB.UTF-8"),
            "the manifest beats the host"
        );
        assert_eq!(get("MY_VAR"), None, "deny beats the manifest");
        let err = policy.check_manifest(&manifest).expect_err("denied");
        assert!(err.to_string().contains("MY_VAR"), "{err}");
        assert!(err.to_string().contains("/conf"), "{err}");
    }

    #[test]
    fn builtin_refusals_name_the_pattern() {
        assert_eq!(
            builtin_refusal("FOO_TOKEN").as_deref(),
            Some("matches the deny pattern `*_TOKEN`")
        );
        assert!(builtin_refusal("KARAPACE_ENV_ID").is_some_and(|r| r.contains("set by karapace")));
        assert!(builtin_refusal("container").is_some());
        assert_eq!(builtin_refusal("RUST_LOG"), None);
        assert_eq!(builtin_refusal("PATH"), None);
    }
}
