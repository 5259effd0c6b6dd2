//! Unit tests of the sandbox (no privileges needed): the plan as data, and the executor
//! against [`RecordingSys`](super::sys::RecordingSys).

mod dev_net_tests;
mod exec_tests;
pub(crate) mod fixtures;
mod idmap_tests;
mod overlay_tests;
mod plan_tests;
