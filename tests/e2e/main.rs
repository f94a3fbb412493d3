//! The end-to-end suites, one module each, in one test binary: `cargo nextest run -p wschat-tests` runs them all,
//! `-E 'test(/^chat::/)'` one suite.

// First: its `fault_modes!` serves the suites after it.
#[macro_use]
mod faults;

mod abuse;
mod auth;
mod big_rooms;
mod chat;
mod cost_and_faults;
mod failover;
mod gateway_fidelity;
mod history;
mod names;
mod operating;
mod presence;
mod redis_store;
mod redis_tls_cluster;
mod store_limits;
mod tls;
