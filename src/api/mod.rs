//! The gRPC surface: generated types, the services (Identity, Admin, Envoy's ext_authz),
//! and the one mapping from service errors to gRPC statuses.

pub mod admin;
mod codec;
mod convert;
pub mod ext_authz;
pub mod identity;
mod metadata;
mod redact;
pub mod status;

/// Types and stubs generated from `proto/identity/v1`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("identity.v1");

    /// Encoded descriptors of `proto/`, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/identity_descriptor.bin"));
}
