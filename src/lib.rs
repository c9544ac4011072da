//! identityd: a gRPC identity service. Internal services forward the raw `Authorization`
//! header and get back a principal and a verdict: allow, 401 or 403.
//!
//! - [`domain`]: pure logic (header parsing, permissions, verdicts, secrets).
//! - [`store`]: persistence behind one trait, for SQLite and PostgreSQL.
//! - [`service`]: use cases (authentication with its cache, administration, bootstrap).
//! - [`api`]: the gRPC surface and the mapping of errors to statuses.
//! - [`ops`]: the operator HTTP port: metrics, probes, JWKS.
//! - [`server`]: wiring, health, reflection, shutdown.
//! - [`tls`]: TLS and mTLS for gRPC, with certificates reloaded when their files change.

pub mod api;
pub mod cli;
pub mod config;
pub mod domain;
pub mod loadgen;
pub mod master_key;
pub mod ops;
pub mod server;
pub mod service;
pub mod store;
pub mod tls;
