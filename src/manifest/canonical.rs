//! The canonical form of a manifest: what identifies it, independent of how it was written.
//!
//! Compact JSON with sorted keys over the *normalised* manifest: aliases become the image they
//! name, lists are sorted and de-duplicated, paths are absolute, defaults are spelled out.
//! Comments, key order, spacing and spelling variants (`Rolling` vs `tumbleweed`) do not
//! change it. Optional values (`sha256`, resource limits) are left out when absent, so adding
//! an optional field to the format later never changes the canonical form, and hence the
//! identity, of a manifest that does not use it.

use serde_json::{Map, Value};

use super::{Manifest, MountSpec, MANIFEST_VERSION};

impl Manifest {
    /// The normalised manifest as compact JSON with sorted keys. Optional values are left out
    /// when absent, so adding an optional field later does not change the canonical form (and
    /// hence the identity) of an existing manifest.
    pub fn canonical_json(&self) -> String {
        // Keys are inserted in sorted order, so the output is sorted even if serde_json's
        // `preserve_order` feature gets switched on by some other crate in the build.
        let mut base = Map::new();
        base.insert("image".into(), Value::from(self.base.image.canonical()));
        if let Some(sha) = &self.base.sha256 {
            base.insert("sha256".into(), Value::from(sha.clone()));
        }
        let mut hardware = Map::new();
        hardware.insert("audio".into(), Value::from(self.hardware.audio));
        hardware.insert("gpu".into(), Value::from(self.hardware.gpu));
        let mounts: Vec<Value> = self.mounts.iter().map(mount_json).collect();
        let mut runtime = Map::new();
        runtime.insert("backend".into(), Value::from(self.runtime.backend.as_str()));
        if let Some(cpu) = self.runtime.limits.cpu_shares {
            runtime.insert("cpu_shares".into(), Value::from(cpu));
        }
        if let Some(mem) = self.runtime.limits.memory_limit_mb {
            runtime.insert("memory_limit_mb".into(), Value::from(mem));
        }
        runtime.insert(
            "network_isolation".into(),
            Value::from(self.runtime.network_isolation),
        );
        if let Some(files) = self.runtime.limits.open_files {
            runtime.insert("open_files".into(), Value::from(files));
        }
        if let Some(pids) = self.runtime.limits.pids_limit {
            runtime.insert("pids_limit".into(), Value::from(pids));
        }

        let mut top = Map::new();
        top.insert("base".into(), Value::Object(base));
        // Additions, present only when written, so older manifests keep their form.
        if !self.env.is_empty() {
            let env: Map<String, Value> = self
                .env
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                .collect();
            top.insert("env".into(), Value::Object(env));
        }
        top.insert("gui_apps".into(), Value::from(self.gui_apps.clone()));
        top.insert("hardware".into(), Value::Object(hardware));
        if !self.integration.is_unset() {
            top.insert(
                "integration".into(),
                Value::Object(self.integration.canonical()),
            );
        }
        top.insert("manifest_version".into(), Value::from(MANIFEST_VERSION));
        top.insert("mounts".into(), Value::Array(mounts));
        let packages: Vec<String> = self.packages.iter().map(ToString::to_string).collect();
        top.insert("packages".into(), Value::from(packages));
        top.insert("runtime".into(), Value::Object(runtime));
        Value::Object(top).to_string()
    }
}

fn mount_json(mount: &MountSpec) -> Value {
    let mut m = Map::new();
    // Paths are UTF-8: the parser refuses anything else, so nothing is lost here.
    m.insert(
        "container_path".into(),
        Value::from(mount.container_path.to_string_lossy()),
    );
    m.insert(
        "host_path".into(),
        Value::from(mount.host_path.to_string_lossy()),
    );
    m.insert("label".into(), Value::from(mount.label.clone()));
    m.insert("read_only".into(), Value::from(mount.read_only));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::manifest::ParseEnv;

    fn ok(text: &str) -> Manifest {
        let env = ParseEnv {
            home: "/home/user".into(),
        };
        match Manifest::parse(text, Path::new("/work/proj/karapace.toml"), &env) {
            Ok(m) => m,
            Err(e) => panic!("expected {text:?} to parse, got: {e}"),
        }
    }

    #[test]
    fn canonical_json_golden_value() {
        let m = ok(r#"manifest_version = 1
    [base]
    image = "Rolling"
    [system]
    packages = ["vim", " git ", "", "curl=8.0", "git"]
    [gui]
    apps = ["xterm", "Zed"]
    [hardware]
    gpu = true
    [mounts]
    src = "./src:/src:ro"
    home = "~:/home/me"
    [runtime]
    backend = "OCI"
    [runtime.resource_limits]
    memory_limit_mb = 512
    "#);
        assert_eq!(
            m.canonical_json(),
            concat!(
                r#"{"base":{"image":"alias:opensuse/tumbleweed"},"gui_apps":["Zed","xterm"],"#,
                r#""hardware":{"audio":false,"gpu":true},"manifest_version":1,"mounts":["#,
                r#"{"container_path":"/home/me","host_path":"/home/user","label":"home","read_only":false},"#,
                r#"{"container_path":"/src","host_path":"/work/proj/src","label":"src","read_only":true}],"#,
                r#""packages":["curl=8.0","git","vim"],"#,
                r#""runtime":{"backend":"oci","memory_limit_mb":512,"network_isolation":false}}"#
            )
        );
    }

    #[test]
    fn canonical_json_leaves_out_absent_optionals_and_ignores_spelling() {
        let a = ok("manifest_version = 1\n[base]\nimage = \"tumbleweed\"\n");
        let b = ok("# comment\nmanifest_version = 1\nbase = { image = \" ROLLING \" }\n[runtime]\nbackend = \"Namespace\"\n[system]\npackages = []\n");
        assert_eq!(a.canonical_json(), b.canonical_json());
        assert_eq!(
            a.canonical_json(),
            r#"{"base":{"image":"alias:opensuse/tumbleweed"},"gui_apps":[],"hardware":{"audio":false,"gpu":false},"manifest_version":1,"mounts":[],"packages":[],"runtime":{"backend":"namespace","network_isolation":false}}"#
        );
        let url = ok("manifest_version = 1\n[base]\nimage = \"https://Host/R.tar.xz\"\n");
        assert!(url
            .canonical_json()
            .contains(r#""image":"url:https://Host/R.tar.xz""#));
    }

    #[test]
    fn pids_and_open_files_appear_only_when_set() {
        let m = ok("manifest_version = 1\n[base]\nimage = \"tumbleweed\"\n\
                    [runtime.resource_limits]\npids_limit = 64\nopen_files = 1024\n");
        assert!(m.canonical_json().ends_with(
            r#""runtime":{"backend":"namespace","network_isolation":false,"open_files":1024,"pids_limit":64}}"#
        ));
    }
}
