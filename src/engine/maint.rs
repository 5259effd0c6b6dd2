//! Store-wide maintenance and set-up: `gc`, `verify-store`, `new`.

use std::path::{Path, PathBuf};

use super::{Engine, EngineError, Result};
use crate::events::Event;
use crate::manifest::templates;
use crate::store::{GcReport, VerifyReport};

impl Engine {
    /// Remove what no environment references. `dry_run` reports the same list, removing nothing.
    pub fn gc(&self, dry_run: bool) -> Result<GcReport> {
        let mut report = self.store.gc(dry_run, &[])?;
        for item in self.gc_images(dry_run)? {
            report.bytes += item.bytes;
            report.items.push(item);
        }
        self.events.emit(Event::info(format!(
            "{} {} item(s), {} bytes",
            if dry_run { "would remove" } else { "removed" },
            report.items.len(),
            report.bytes
        )));
        Ok(report)
    }

    /// Check every object, layer and metadata file. Problems are in the report, not an error.
    /// Operations interrupted by a crash are settled first (that is their normal path: the next
    /// mutating command would do the same), so only real damage is reported.
    pub fn verify(&self) -> Result<VerifyReport> {
        {
            let _store_lock = self.store.lock_store_shared()?;
            self.recover()?;
        }
        let mut report = self.store.verify()?;
        let (images, problems) = self.verify_images()?;
        report.images_checked = images;
        report.problems.extend(problems);
        Ok(report)
    }
}

/// Write template `name` as `dir/karapace.toml`, byte for byte (comments kept), atomically.
/// An existing manifest is only replaced with `force`.
pub fn write_template(dir: &Path, name: &str, force: bool) -> Result<PathBuf> {
    let Some(template) = templates::template(name) else {
        return Err(EngineError::UnknownTemplate {
            name: name.to_string(),
            available: templates::TEMPLATES
                .iter()
                .map(|t| t.name)
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    std::fs::create_dir_all(dir).map_err(|source| EngineError::Io {
        op: "create directory",
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join("karapace.toml");
    if path.exists() && !force {
        return Err(EngineError::Exists { path });
    }
    crate::fsutil::write_atomic(&path, template.text.as_bytes()).map_err(|source| {
        EngineError::Io {
            op: "write",
            path: path.clone(),
            source,
        }
    })?;
    Ok(path)
}
