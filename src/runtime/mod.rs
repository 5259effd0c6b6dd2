//! Runtime backends: how environments are built and run.

pub mod backend;
pub mod mock;
pub mod pending;
pub mod session;
