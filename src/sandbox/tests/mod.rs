//! Unit tests of the sandbox (no privileges needed): the plan as data, and the executor
//! against [`RecordingSys`](super::sys::RecordingSys).

mod exec_tests;
mod fixtures;
mod idmap_tests;
mod plan_tests;
