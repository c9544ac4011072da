//! Use cases: authentication with its cache, checks, administration and bootstrap.
//! Speaks domain types and [`ServiceError`]; the gRPC layer maps both to the wire.

pub mod admin;
pub mod apps;
pub mod audit;
pub mod authenticator;
pub mod bootstrap;
pub mod cache;
pub mod checks;
pub mod documents;
pub mod error;
pub mod integrations;
pub mod keys;
pub mod limits;
pub mod passwords;
pub mod replicas;
pub mod tokens;
pub mod usage;

pub use error::ServiceError;
