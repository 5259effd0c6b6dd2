//! The store every backend writes to: can this user write it, is its format one this build
//! reads, and is there room. Read without opening the store, so `doctor` can diagnose a store
//! that [`Store::open`](crate::store::Store::open) would refuse, and changes nothing.

use std::io;
use std::path::Path;

use super::host::Host;
use super::{Check, Group, Status};
use crate::events::human_bytes;
use crate::store::{parse_version, StoreError, FORMAT_VERSION, VERSION_FILE};

/// Below this much free space a build cannot be expected to finish.
pub const SPACE_FAIL: u64 = 256 << 20;
/// Below this much, warn: a base image alone takes 100–500 MiB unpacked.
pub const SPACE_WARN: u64 = 2 << 30;

const MOVE_STORE: &str = "use another store: --store DIR (or KARAPACE_STORE=DIR)";

pub fn checks(host: &dyn Host, store: &Path) -> Vec<Check> {
    vec![
        writable(host, store),
        format(host, store),
        space(host, store),
    ]
}

/// The store, or the directory it would be created in.
fn nearest_existing<'a>(host: &dyn Host, store: &'a Path) -> &'a Path {
    store
        .ancestors()
        .find(|p| host.exists(p))
        .unwrap_or(Path::new("/"))
}

fn writable(host: &dyn Host, store: &Path) -> Check {
    let who = host.ids().who();
    let shown = store.display();
    let check =
        |status, meaning| Check::new(Group::Store, "writable", "store writable", status, meaning);
    if host.is_dir(store) {
        return if host.writable(store) {
            check(Status::Pass, format!("{shown} is writable by {who}"))
        } else {
            check(
                Status::Fail,
                format!("{shown} is not writable by {who} (or is on a read-only mount)"),
            )
            .fix(format!("sudo chown -R {who} {shown}, or {MOVE_STORE}"))
        };
    }
    if host.exists(store) {
        return check(
            Status::Fail,
            format!("{shown} exists but is not a directory"),
        )
        .fix(format!("move {shown} away, or {MOVE_STORE}"));
    }
    let parent = nearest_existing(host, store);
    if host.writable(parent) {
        check(
            Status::Pass,
            format!(
                "{shown} does not exist yet; it is created in {} at first use",
                parent.display()
            ),
        )
    } else {
        check(
            Status::Fail,
            format!(
                "{shown} cannot be created: {} is not writable by {who}",
                parent.display()
            ),
        )
        .fix(format!(
            "sudo mkdir -p {shown} && sudo chown {who} {shown}, or {MOVE_STORE}"
        ))
    }
}

fn format(host: &dyn Host, store: &Path) -> Check {
    let check =
        |status, meaning| Check::new(Group::Store, "format", "store format", status, meaning);
    if !host.is_dir(store) {
        return check(
            Status::Pass,
            format!("a new store is created with format {FORMAT_VERSION}, this build's"),
        );
    }
    let path = store.join(VERSION_FILE);
    let text = match host.read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return unversioned(host, store),
        Err(e) => {
            return check(Status::Fail, format!("cannot read {}: {e}", path.display()))
                .fix(format!("make {} readable by this user", path.display()))
        }
    };
    match parse_version(&path, text.as_bytes()) {
        Ok(found) if found == FORMAT_VERSION => check(
            Status::Pass,
            format!("format {found}, the one this build reads and writes"),
        ),
        Ok(found) => check(
            Status::Warn,
            format!("format {found}, older than this build's {FORMAT_VERSION}; it is still read"),
        ),
        Err(StoreError::FormatTooNew {
            found, supported, ..
        }) => check(
            Status::Fail,
            format!(
                "format {found}, written by a newer karapace-tui; this build reads up to \
                 format {supported}"
            ),
        )
        .fix(format!("upgrade karapace-tui, or {MOVE_STORE}")),
        Err(e) => check(Status::Fail, e.to_string()).fix(format!(
            "restore {} (it holds `karapace-tui store format {FORMAT_VERSION}`), or {MOVE_STORE}",
            path.display()
        )),
    }
}

/// A directory without a `version` file: empty, it becomes a store; otherwise it is something
/// else, which the store refuses to take over.
fn unversioned(host: &dyn Host, store: &Path) -> Check {
    let check =
        |status, meaning| Check::new(Group::Store, "format", "store format", status, meaning);
    match host.list(store) {
        Ok(names) if names.is_empty() => check(
            Status::Pass,
            format!("empty: it becomes a store of format {FORMAT_VERSION} at first use"),
        ),
        Ok(names) => check(
            Status::Fail,
            format!(
                "{} holds `{}` but no `{VERSION_FILE}` file: it is not a karapace-tui store",
                store.display(),
                names[0]
            ),
        )
        .fix(MOVE_STORE),
        Err(e) => check(
            Status::Fail,
            format!("cannot list {}: {e}", store.display()),
        )
        .fix(format!("make {} readable by this user", store.display())),
    }
}

fn space(host: &dyn Host, store: &Path) -> Check {
    let check = |status, meaning| Check::new(Group::Store, "space", "free space", status, meaning);
    let at = nearest_existing(host, store);
    let space = match host.space(at) {
        Ok(space) => space,
        Err(e) => {
            return check(
                Status::Warn,
                format!("cannot tell the free space of {}: {e}", at.display()),
            )
        }
    };
    let found = format!(
        "{} free of {} on the file system of {}",
        human_bytes(space.available as f64),
        human_bytes(space.total as f64),
        store.display()
    );
    let fix = "free space on that file system, or put the store on a larger one: --store DIR \
               (or KARAPACE_STORE=DIR)";
    if space.available < SPACE_FAIL {
        check(
            Status::Fail,
            format!("{found}: too little for a base image"),
        )
        .fix(fix)
    } else if space.available < SPACE_WARN {
        check(
            Status::Warn,
            format!(
                "{found}: a base image takes 100–500 MiB unpacked, and each environment adds \
                 its packages"
            ),
        )
        .fix(fix)
    } else {
        check(Status::Pass, found)
    }
}
