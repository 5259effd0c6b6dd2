//! karapace-tui: deterministic, rootless Linux development environments.
//!
//! Module map, from the outside in:
//! - [`cli`]: the command-line face (clap), printing text or one JSON document; without a
//!   command on a terminal it opens the terminal UI.
//! - [`app`]: the terminal UI's state machine and event loop (keys → actions → state, engine
//!   calls on worker threads); [`ui`]: drawing it with ratatui; [`tui`]: the host terminal
//!   (raw mode, alternate screen, restore on exit and on panic).
//! - [`engine`]: the lifecycle (build, run, stop, freeze, archive, destroy, gc, verify) that
//!   the CLI and the TUI share.
//! - [`manifest`]: `karapace.toml`, parsed into raw serde structs, then validated into typed
//!   values that nothing else sees raw.
//! - [`lock`]: `karapace.lock` and the environment identity (docs/identity.md).
//! - [`store`]: the content-addressed store: objects, checksummed metadata, the journal,
//!   locks, gc and verify (docs/storage.md).
//! - [`runtime`]: the backends (`mock`, `namespace`; `oci` reports itself unavailable until it
//!   lands) and session records.
//! - [`packages`]: distribution package managers as data (detection, argv, output parsing);
//!   [`policy`]: the mount allow list; [`envpolicy`]: what of the caller's environment a
//!   sandbox gets; [`integration`]: the host's sockets, devices and home a sandbox gets;
//!   [`sandbox`]: the native namespace sandbox.
//! - [`export`]: an environment's applications and programs on the host (desktop entries,
//!   icons, wrapper scripts), run through `karapace-tui exec`.
//! - [`layer`]: directory trees to deterministic tar streams and back.
//! - [`events`]: progress and log events that long operations emit.
//! - [`types`], [`fsutil`], [`crashpoint`]: shared value types, crash-safe writes, and the
//!   crash points the crash tests use.

#![deny(unsafe_code)]
#![deny(clippy::unwrap_used)]

pub mod app;
pub mod cli;
pub mod crashpoint;
pub mod engine;
pub mod envpolicy;
pub mod events;
pub mod export;
pub mod fsutil;
pub mod image;
pub mod integration;
pub mod layer;
pub mod lock;
pub mod manifest;
pub mod markers;
pub mod packages;
pub mod policy;
pub mod prereq;
pub mod runtime;
pub mod sandbox;
pub mod store;
pub mod tui;
pub mod types;
pub mod ui;
