//! identityd's integration tests: one binary (one link) with a module per area. Each test
//! starts the real server in-process over a fresh database; behaviour tests run on both
//! SQLite and PostgreSQL.

// Tests fail by panicking; the crate-wide bans are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod app_support;
mod apps;
mod audit_log;
mod basic_auth;
mod binary;
mod cli;
mod credential_dispatch;
mod deployment;
mod edge_input;
mod ext_authz;
mod fuzzing;
mod guessing_limits;
mod headers;
mod helm_chart;
mod jwt_attacks;
mod login_names;
mod oauth;
mod oauth_support;
mod operations;
mod ops_http;
mod readme;
mod replicas;
mod route_policy;
mod scopes;
mod staff_customers;
mod support;
mod take_over;
mod tls;
mod token_cache;
mod user_revocation;
