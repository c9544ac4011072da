//! Pure domain logic: parsing credentials, the permission algebra, verdicts, secrets and
//! names. Nothing here does I/O or knows about gRPC, so it is unit-tested as plain
//! functions.

pub mod access_token;
pub mod audit;
pub mod clock;
pub mod credentials;
pub mod dispatch;
pub mod document;
pub mod guessing;
pub mod names;
pub mod permissions;
pub mod principal;
pub mod route_policy;
pub mod scopes;
pub mod sealing;
pub mod secret;
pub mod verdict;
