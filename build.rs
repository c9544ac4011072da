//! Compiles `proto/` with protox (pure Rust, so no system `protoc`) and writes the
//! descriptor set that server reflection serves.

use protox::prost::Message;
use std::{env, fs, path::PathBuf};

const PROTOS: &[&str] = &["identity/v1/identity.proto", "identity/v1/admin.proto"];

/// Only described through reflection (so grpcurl can show error details and call Envoy's
/// ext_authz); the Rust types come from tonic-types and envoy-types.
const REFLECTION_ONLY: &[&str] = &[
    "google/rpc/error_details.proto",
    "envoy/service/auth/v3/external_auth.proto",
];

/// Where imports are found: ours, then the Envoy protos copied from envoy-types.
const INCLUDES: &[&str] = &["proto", "proto/vendor"];

/// Messages that carry secrets: no derived `Debug`; `src/api/redact.rs` writes one that
/// hides them, so a stray `{:?}` can never log a credential.
const SECRET_BEARING: &[&str] = &[
    ".identity.v1.AuthenticateRequest",
    ".identity.v1.CheckPermissionRequest",
    ".identity.v1.CreateAppTokenResponse",
    ".identity.v1.CreateIntegrationResponse",
    ".identity.v1.IssueTokenRequest",
    ".identity.v1.RefreshTokenRequest",
    ".identity.v1.RegenerateApiTokenResponse",
    ".identity.v1.RevokeTokenRequest",
    ".identity.v1.RotateIntegrationSecretResponse",
    ".identity.v1.SetApiAccessResponse",
    ".identity.v1.SetUserPasswordRequest",
    ".identity.v1.TokenResponse",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    // `compile_fds` ignores `file_descriptor_set_path`, so the set is written here.
    let described = protox::compile(PROTOS.iter().chain(REFLECTION_ONLY), INCLUDES)?;
    fs::write(
        out_dir.join("identity_descriptor.bin"),
        described.encode_to_vec(),
    )?;
    let fds = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        .skip_debug(SECRET_BEARING.iter().copied())
        .codec_path(CODEC)
        .compile_fds(fds)?;
    ext_authz_server();
    Ok(())
}

/// The codec of every generated service: undecodable requests are INVALID_ARGUMENT.
const CODEC: &str = "crate::api::codec::StrictCodec";

/// Envoy's `Authorization` service over envoy-types' messages, but with our codec:
/// envoy-types' own server answers an undecodable check with INTERNAL, which Envoy
/// treats as an error of ours.
fn ext_authz_server() {
    use tonic_prost_build::manual::{Builder, Method, Service};
    let messages = "::envoy_types::pb::envoy::service::auth::v3";
    let check = Method::builder()
        .name("check")
        .route_name("Check")
        .input_type(format!("{messages}::CheckRequest"))
        .output_type(format!("{messages}::CheckResponse"))
        .codec_path(CODEC)
        .build();
    let service = Service::builder()
        .name("Authorization")
        .package("envoy.service.auth.v3")
        .method(check)
        .build();
    Builder::new().build_client(false).compile(&[service]);
}
