//! The example manifests that `karapace-tui new --template NAME` writes.
//!
//! They are compiled in and written out byte for byte, comments included: the comments are the
//! first documentation a new user reads, which the original lost by re-serialising templates.
//! Package names are those of each template's base distribution (the original listed Debian or
//! Fedora spellings on an openSUSE base); a unit test parses every template.

/// One built-in template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template {
    /// What `--template` takes.
    pub name: &'static str,
    /// One line for listings and `--help`.
    pub description: &'static str,
    /// The manifest text, written as is.
    pub text: &'static str,
}

/// All templates, in the order they are listed.
pub const TEMPLATES: &[Template] = &[
    Template {
        name: "minimal",
        description: "openSUSE Tumbleweed base image only",
        text: include_str!("../../assets/templates/minimal.toml"),
    },
    Template {
        name: "dev",
        description: "openSUSE Tumbleweed with git, editors, tmux and C/C++ compilers",
        text: include_str!("../../assets/templates/dev.toml"),
    },
    Template {
        name: "gui-dev",
        description: "openSUSE Tumbleweed with compilers, Mesa, Firefox, GPU and audio",
        text: include_str!("../../assets/templates/gui-dev.toml"),
    },
    Template {
        name: "rust-dev",
        description: "openSUSE Tumbleweed with the native toolchain and OpenSSL headers for Rust",
        text: include_str!("../../assets/templates/rust-dev.toml"),
    },
    Template {
        name: "ubuntu-dev",
        description: "Ubuntu 24.04 with build-essential, CMake, Python and Node.js",
        text: include_str!("../../assets/templates/ubuntu-dev.toml"),
    },
];

/// Looks a template up by its exact name.
pub fn template(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::manifest::{ImageRef, Manifest, ParseEnv};
    use crate::types::BackendKind;

    fn env() -> ParseEnv {
        ParseEnv {
            home: "/home/user".into(),
        }
    }

    fn parse(t: &Template) -> Manifest {
        match Manifest::parse(t.text, Path::new("/home/user/proj/karapace.toml"), &env()) {
            Ok(m) => m,
            Err(e) => panic!("template {} does not parse: {e}", t.name),
        }
    }

    #[test]
    fn every_template_parses_with_the_namespace_backend() {
        assert_eq!(TEMPLATES.len(), 5);
        for t in TEMPLATES {
            let m = parse(t);
            assert_eq!(m.runtime.backend, BackendKind::Namespace, "{}", t.name);
            assert!(
                t.text.starts_with("# karapace.toml"),
                "{} has no header comment",
                t.name
            );
            assert!(
                !t.text.contains("export-app"),
                "{} mentions a command that does not exist",
                t.name
            );
        }
    }

    #[test]
    fn templates_are_found_by_name_only() {
        let names: Vec<&str> = TEMPLATES.iter().map(|t| t.name).collect();
        assert_eq!(
            names,
            ["minimal", "dev", "gui-dev", "rust-dev", "ubuntu-dev"]
        );
        assert_eq!(template("gui-dev").map(|t| t.name), Some("gui-dev"));
        assert!(template("Dev").is_none());
        assert!(template("gaming").is_none());
    }

    #[test]
    fn openssl_and_mesa_use_tumbleweed_names_and_ubuntu_uses_ubuntu_names() {
        let names = |t: &str| -> Vec<String> {
            template(t)
                .map(|t| parse(t).packages.iter().map(|p| p.to_string()).collect())
                .unwrap_or_default()
        };
        assert!(names("rust-dev").contains(&"libopenssl-devel".to_string()));
        assert!(!names("rust-dev").contains(&"openssl-devel".to_string()));
        assert!(names("gui-dev").contains(&"Mesa-dri-devel".to_string()));
        assert!(names("ubuntu-dev").contains(&"build-essential".to_string()));
        let ubuntu = template("ubuntu-dev").map(parse).map(|m| m.base.image);
        assert!(matches!(ubuntu, Some(ImageRef::Alias { ref release, .. }) if release == "noble"));
    }

    /// blake3 of each template's canonical JSON (home `/home/user`). A change here changes the
    /// identity of every environment created from that template, so it must be deliberate.
    #[test]
    fn canonical_forms_of_templates_are_pinned() {
        let expected = [
            (
                "minimal",
                "c7daed4b3a9cbb08b651e6cc7fcacbd909a77a312febcfbafe4c715b38d14c3d",
            ),
            (
                "dev",
                "469c9500714fab08e281d62c836581689f5168b0b8a096521c06cc574a8c1306",
            ),
            (
                "gui-dev",
                "44a0b709a5cb8fd06420f0fb09a997d32b83d673bc4e0b9ffc840dbbab868395",
            ),
            (
                "rust-dev",
                "5bfbabe5193dc59bb5e5130952862299ed56d6ba1225b17f540237b97f8eb278",
            ),
            (
                "ubuntu-dev",
                "23f59d32ef4cd8f692fdade25d86eca3106f9bb2171b5d5d917fb29dff6d7bd7",
            ),
        ];
        let mut wrong = Vec::new();
        for (name, hash) in expected {
            let json = template(name)
                .map(parse)
                .map(|m| m.canonical_json())
                .unwrap_or_default();
            let got = blake3::hash(json.as_bytes()).to_hex().to_string();
            if got != hash {
                wrong.push(format!("{name}: got {got} for {json}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
