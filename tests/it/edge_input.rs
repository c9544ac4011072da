//! Input checked at the edge, through the real server on both backends:
//!
//! - a request that does not decode (broken wire format, a `string` field that is not
//!   UTF-8) is INVALID_ARGUMENT `malformed_request`, on every service, never INTERNAL;
//! - NUL, control, invisible characters and over-long values in every string field that
//!   reaches storage get one answer, the same on SQLite and PostgreSQL, and never a
//!   storage failure (UNAVAILABLE, INTERNAL, UNKNOWN);
//! - the good spellings of a name still work: `Alice` is `alice` everywhere.

use crate::app_support::*;
use crate::oauth_support::*;
use crate::on_both_backends;
use crate::support::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use envoy_types::ext_authz::v3::pb::CheckRequest;
use identityd::api::pb::{self, admin_client::AdminClient, identity_client::IdentityClient};
use prost::Message as _;
use prost::bytes::{Buf as _, BufMut as _};
use std::sync::atomic::{AtomicUsize, Ordering};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

// ---------------------------------------------------------------------------------------
// Undecodable requests

/// A codec that sends a body byte for byte and reads the answer's bytes: what a broken or
/// hostile client puts on the wire, which no generated client can send.
#[derive(Debug, Clone, Copy, Default)]
struct RawBytes;

impl Codec for RawBytes {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self {
        Self
    }

    fn decoder(&mut self) -> Self {
        Self
    }
}

impl Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// Field 1 as bytes: for a service reading field 1 as a `string`, any bytes at all.
#[derive(Clone, PartialEq, prost::Message)]
struct Raw {
    #[prost(bytes = "vec", tag = "1")]
    field: Vec<u8>,
}

/// `bytes` as field 1.
fn field1(bytes: &[u8]) -> Vec<u8> {
    Raw {
        field: bytes.to_vec(),
    }
    .encode_to_vec()
}

/// `leaf` as a length-delimited field nested along `tags` (outermost first).
fn nested(tags: &[u32], leaf: &[u8]) -> Vec<u8> {
    tags.iter().rev().fold(leaf.to_vec(), |inner, &tag| {
        let mut outer = Vec::new();
        prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, &mut outer);
        prost::encoding::encode_varint(inner.len() as u64, &mut outer);
        outer.extend(inner);
        outer
    })
}

/// Calls `path` with `body` as the request message, with the admin's credentials (so that
/// nothing but the body can be wrong).
async fn raw_call(
    server: &TestServer,
    path: &'static str,
    body: Vec<u8>,
) -> Result<Vec<u8>, Status> {
    let channel = Channel::from_shared(server.url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("channel ready");
    let path = http::uri::PathAndQuery::from_static(path);
    grpc.unary(authed(&server.admin_auth, body), path, RawBytes)
        .await
        .map(tonic::Response::into_inner)
}

/// True when prost reads `bytes` as an `M`: each body below must not be one.
fn decodes<M: prost::Message + Default>(bytes: &[u8]) -> bool {
    M::decode(bytes).is_ok()
}

/// A body that does not decode is the caller's fault: INVALID_ARGUMENT with reason
/// `malformed_request`, on every service, Envoy's ext_authz included.
///
/// With tonic's default codec every one of these was INTERNAL: tonic-prost 0.14's
/// `ProstDecoder` maps any `prost::DecodeError` through `from_decode_error`, which is
/// `Status::internal(error.to_string())` (tonic-prost-0.14.9/src/codec.rs; envoy-types'
/// generated `AuthorizationServer` uses that `tonic_prost::ProstCodec` too). Callers,
/// retry policies and Envoy count INTERNAL as identityd failing.
async fn undecodable_requests_are_invalid_argument(backend: Backend) {
    const AUTHENTICATE: &str = "/identity.v1.Identity/Authenticate";
    const ISSUE_TOKEN: &str = "/identity.v1.Identity/IssueToken";
    const GET_USER: &str = "/identity.v1.Admin/GetUser";
    const CHECK: &str = "/envoy.service.auth.v3.Authorization/Check";
    let server = TestServer::start(backend).await;

    let not_utf8 = field1(b"\xff\xfeadmin\xc0");
    // Field 1 claims 5 bytes; one follows.
    let truncated = field1(b"admin")[..3].to_vec();
    // Field 1 with wire type 7, which does not exist.
    let bad_wire_type = vec![0x0f, 0x00];
    // A varint that never ends.
    let endless_varint = vec![0x08, 0xff, 0xff, 0xff];
    // CheckRequest.attributes (1) is a message: garbage inside it, and a method
    // (attributes.request.http.method, 1.4.2.2) that is not UTF-8.
    let garbage_attributes = field1(&[0xff, 0xff, 0xff]);
    let method_not_utf8 = nested(&[1, 4, 2, 2], b"G\xffT");

    type Decodes = fn(&[u8]) -> bool;
    let authenticate: Decodes = decodes::<pb::AuthenticateRequest>;
    let issue_token: Decodes = decodes::<pb::IssueTokenRequest>;
    let get_user: Decodes = decodes::<pb::GetUserRequest>;
    let check: Decodes = decodes::<CheckRequest>;
    let rows: Vec<(&'static str, Decodes, &str, Vec<u8>)> = vec![
        (
            AUTHENTICATE,
            authenticate,
            "field 1 not UTF-8",
            not_utf8.clone(),
        ),
        (AUTHENTICATE, authenticate, "truncated", truncated.clone()),
        (
            AUTHENTICATE,
            authenticate,
            "bad wire type",
            bad_wire_type.clone(),
        ),
        (
            ISSUE_TOKEN,
            issue_token,
            "field 1 not UTF-8",
            not_utf8.clone(),
        ),
        (ISSUE_TOKEN, issue_token, "truncated", truncated.clone()),
        (
            ISSUE_TOKEN,
            issue_token,
            "endless varint",
            endless_varint.clone(),
        ),
        (GET_USER, get_user, "field 1 not UTF-8", not_utf8),
        (GET_USER, get_user, "truncated", truncated.clone()),
        (GET_USER, get_user, "bad wire type", bad_wire_type.clone()),
        (CHECK, check, "garbage in attributes", garbage_attributes),
        (CHECK, check, "method not UTF-8", method_not_utf8),
        (CHECK, check, "truncated", truncated),
        (CHECK, check, "bad wire type", bad_wire_type),
    ];
    for (path, decodes, what, body) in rows {
        assert!(!decodes(&body), "{path} {what}: the body must not decode");
        let status = raw_call(&server, path, body)
            .await
            .expect_err("an undecodable request is refused");
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{path} {what}: {status:?}"
        );
        assert_eq!(
            error_reason(&status),
            "malformed_request",
            "{path} {what}: {status:?}"
        );
    }

    // The same bytes, well formed, are answered as usual: only the decoding was refused.
    let body = pb::AuthenticateRequest::default().encode_to_vec();
    let answer = raw_call(&server, AUTHENTICATE, body)
        .await
        .expect("Authenticate");
    let answer = pb::AuthenticateResponse::decode(&answer[..]).expect("a response");
    assert_eq!(answer.reason, "missing_credentials");
    let body = pb::GetUserRequest {
        username: "admin".into(),
    }
    .encode_to_vec();
    let answer = raw_call(&server, GET_USER, body).await.expect("GetUser");
    let user = pb::User::decode(&answer[..]).expect("a user");
    assert_eq!(user.username, "admin");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Bad bytes in every string field that reaches storage

/// An RPC whose request carries `client_address` or whose metadata carries `x-request-id`.
#[derive(Debug, Clone, Copy)]
enum Rpc {
    Authenticate,
    CheckPermission,
    IssueToken,
    RefreshToken,
    RevokeToken,
    GetUser,
}

/// Where a row's value goes.
#[derive(Debug, Clone, Copy)]
enum Input {
    /// IssueToken `password` grant: username (with the right password).
    LoginUsername,
    /// IssueToken `client_credentials`: client_id (with the right secret).
    ClientCredentialsClientId,
    /// IssueToken `password` grant with an integration as client: client_id.
    PasswordClientId,
    /// IssueToken `refresh_token` grant (with a real refresh token): client_id.
    RefreshGrantClientId,
    /// Identity.RefreshToken (with a real refresh token): client_id.
    RefreshTokenClientId,
    /// Identity.RevokeToken: client_id.
    RevokeClientId,
    /// Identity.RegenerateApiToken: username.
    RegenerateApiToken,
    CreateUserUsername,
    CreateUserEmail,
    UpdateUserEmail,
    GetUser,
    UpdateUser,
    DeleteUser,
    SetApiAccess,
    SetUserPassword,
    AssignRole,
    UnassignRole,
    RevokeUserCredentials,
    CreateRoleName,
    CreateRoleDescription,
    CreateIntegrationName,
    GetIntegrationClientId,
    CreateAppName,
    CreateAppAttachedUser,
    UpdateAppAttachedUser,
    GetAppId,
    CreateAppTokenName,
    /// Admin.ListUsers: the value, base64url-encoded as page tokens are.
    ListUsersPageToken,
    /// Admin.ListUsers: the value as it is.
    ListUsersRawPageToken,
    /// The request's `client_address`.
    ClientAddress(Rpc),
    /// `x-request-id` metadata.
    RequestId(Rpc),
}

/// The answer a row must get.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// The call succeeds.
    Ok,
    /// An OAuth error: this code, with this ErrorInfo reason.
    OAuth(Code, &'static str),
    /// INVALID_ARGUMENT with a BadRequest violation of this field.
    Invalid(&'static str),
    /// As `Invalid`, and the message names why (contains the text).
    Why(&'static str, &'static str),
    /// The client cannot send it at all (an HTTP/2 header value cannot hold it).
    Unsendable,
}

use Want::{Invalid, Unsendable, Why};

const REQUEST: Want = Want::OAuth(Code::InvalidArgument, "invalid_request");
const CLIENT: Want = Want::OAuth(Code::Unauthenticated, "invalid_client");
const OK: Want = Want::Ok;

/// The bad values, in the order of the table's columns; each replaces `{}` in a row's
/// template.
fn bad_values() -> [(&'static str, String); 7] {
    [
        ("NUL", "\0".into()),
        ("U+0001", "\u{1}".into()),
        ("DEL", "\u{7f}".into()),
        ("NEL U+0085", "\u{85}".into()),
        ("RLO U+202E", "\u{202e}".into()),
        ("ZWSP U+200B", "\u{200b}".into()),
        ("5000 bytes", "x".repeat(5000)),
    ]
}

/// A username (or a field holding one) refused, saying why.
const fn username_refused(field: &'static str) -> [Want; 7] {
    let control = Why(field, "must not contain control characters");
    let invisible = Why(field, "must not contain invisible characters");
    let long = Why(field, "must be 1 to 64 characters");
    [
        control, control, control, control, invisible, invisible, long,
    ]
}

/// An email refused, saying why.
const EMAIL_REFUSED: [Want; 7] = {
    let control = Why("email", "must not contain control characters");
    let invisible = Why("email", "must not contain invisible characters");
    let long = Why("email", "must be at most 254 characters");
    [
        control, control, control, control, invisible, invisible, long,
    ]
};

/// A client_id with control characters or too long is refused before any lookup
/// (`invalid_request`), and so are invisible characters, which no id identityd issues has.
const CLIENT_ID: [Want; 7] = [REQUEST; 7];

/// Every value refused as this field.
const fn all_invalid(field: &'static str) -> [Want; 7] {
    [Invalid(field); 7]
}

/// `x-request-id`: bytes below 0x20 and DEL cannot be in an HTTP/2 header value; the
/// rest are not visible ASCII, or too long, so identityd ignores them and makes a request
/// id of its own: the call goes through (a forwarded junk header never fails a check).
const REQUEST_ID: [Want; 7] = [Unsendable, Unsendable, Unsendable, OK, OK, OK, OK];

/// The table: for each field, a template (`{}` is where the bad value goes; `<client_id>`
/// and `<app_id>` are real ones) and what each bad value must get, column by column:
/// NUL, U+0001, DEL, NEL (U+0085), RLO (U+202E), ZWSP (U+200B), 5000 bytes.
#[rustfmt::skip]
fn bad_byte_table() -> Vec<(Input, &'static str, [Want; 7])> {
    use Input::*;
    let description = Invalid("description");
    vec![
        // The token endpoint: control and invisible characters and length are refused up
        // front (before any lookup, and before anything is recorded).
        //                                                                     NUL      U+0001   DEL      NEL      RLO      ZWSP     5000 B
        (LoginUsername,                       "alice{}",                      [REQUEST, REQUEST, REQUEST, REQUEST, REQUEST, REQUEST, REQUEST]),
        (ClientCredentialsClientId,           "<client_id>{}",                CLIENT_ID),
        (PasswordClientId,                    "<client_id>{}",                CLIENT_ID),
        (RefreshGrantClientId,                "<client_id>{}",                CLIENT_ID),
        (RefreshTokenClientId,                "<client_id>{}",                CLIENT_ID),
        (RevokeClientId,                      "<client_id>{}",                CLIENT_ID),
        (RegenerateApiToken,                  "alice{}",                      username_refused("username")),
        // Users.
        (CreateUserUsername,                  "carol{}",                      username_refused("username")),
        (CreateUserEmail,                     "carol{}@example.com",          EMAIL_REFUSED),
        (UpdateUserEmail,                     "alice{}@example.com",          EMAIL_REFUSED),
        (GetUser,                             "alice{}",                      username_refused("username")),
        (UpdateUser,                          "alice{}",                      username_refused("username")),
        (DeleteUser,                          "alice{}",                      username_refused("username")),
        (SetApiAccess,                        "alice{}",                      username_refused("username")),
        (SetUserPassword,                     "alice{}",                      username_refused("username")),
        (AssignRole,                          "alice{}",                      username_refused("username")),
        (UnassignRole,                        "alice{}",                      username_refused("username")),
        (RevokeUserCredentials,               "alice{}",                      username_refused("username")),
        (ListUsersPageToken,                  "alice{}",                      all_invalid("page_token")),
        (ListUsersRawPageToken,               "YWxpY2U{}",                    all_invalid("page_token")),
        // Roles. A description is free text for people, but no control or invisible
        // character (a bidirectional override would make a listing read otherwise).
        (CreateRoleName,                      "auditor{}",                    all_invalid("name")),
        (CreateRoleDescription,               "Reads orders{}",               [description; 7]),
        // Integrations and apps.
        (CreateIntegrationName,               "billing{}",                    all_invalid("name")),
        (GetIntegrationClientId,              "<client_id>{}",                all_invalid("client_id")),
        (CreateAppName,                       "storefront{}",                 all_invalid("name")),
        // The request's field is `attached_user`: the violation names the field the
        // caller sent.
        (CreateAppAttachedUser,               "alice{}",                      username_refused("attached_user")),
        (UpdateAppAttachedUser,               "alice{}",                      username_refused("attached_user")),
        (GetAppId,                            "<app_id>{}",                   all_invalid("app_id")),
        (CreateAppTokenName,                  "deploy{}",                     all_invalid("name")),
        // Origin: client addresses and request ids.
        (ClientAddress(Rpc::Authenticate),    "203.0.113.9{}",                all_invalid("client_address")),
        (ClientAddress(Rpc::CheckPermission), "203.0.113.9{}",                all_invalid("client_address")),
        (ClientAddress(Rpc::IssueToken),      "203.0.113.9{}",                all_invalid("client_address")),
        (ClientAddress(Rpc::RefreshToken),    "2001:db8::1{}",                all_invalid("client_address")),
        (ClientAddress(Rpc::RevokeToken),     "2001:db8::1{}",                all_invalid("client_address")),
        (RequestId(Rpc::Authenticate),        "req-{}",                       REQUEST_ID),
        (RequestId(Rpc::IssueToken),          "req-{}",                       REQUEST_ID),
        (RequestId(Rpc::GetUser),             "req-{}",                       REQUEST_ID),
    ]
}

/// Single values, each with its answer: addresses that are not IP addresses, page tokens
/// that are not canonical, request ids, and good values next to them.
fn single_value_table() -> Vec<(Input, String, Want)> {
    use Input::*;
    let address = Invalid("client_address");
    let page = Invalid("page_token");
    let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
    let mut rows = Vec::new();
    for rpc in [
        Rpc::Authenticate,
        Rpc::CheckPermission,
        Rpc::IssueToken,
        Rpc::RefreshToken,
        Rpc::RevokeToken,
    ] {
        for bad in [
            "not-an-ip",
            "1.2.3.4\0",
            "::1%eth0",
            "fe80::1%2",
            "1.2.3.4:80",
            "[::1]",
            " 1.2.3.4",
            "1.2.3",
            "localhost",
        ] {
            rows.push((ClientAddress(rpc), bad.to_owned(), address));
        }
    }
    rows.extend([
        (ClientAddress(Rpc::Authenticate), "203.0.113.9".into(), OK),
        (ClientAddress(Rpc::Authenticate), "2001:db8::1".into(), OK),
        (
            ClientAddress(Rpc::Authenticate),
            "::ffff:203.0.113.9".into(),
            OK,
        ),
        (
            ClientAddress(Rpc::CheckPermission),
            "198.51.100.1".into(),
            OK,
        ),
        (ClientAddress(Rpc::IssueToken), "198.51.100.1".into(), OK),
        // Page tokens are base64url of a canonical username.
        (ListUsersRawPageToken, b64("alice"), OK),
        (ListUsersRawPageToken, b64("ADMIN"), page),
        (ListUsersRawPageToken, b64("a\0b"), page),
        (ListUsersRawPageToken, b64("\u{202e}nimda"), page),
        (ListUsersRawPageToken, b64(&"a".repeat(65)), page),
        (ListUsersRawPageToken, "YWxpY2U=".into(), page),
        (ListUsersRawPageToken, "%%%%".into(), page),
        (
            ListUsersRawPageToken,
            URL_SAFE_NO_PAD.encode(b"\xff\xfe"),
            page,
        ),
        // Request ids: 1 to 128 visible ASCII characters are kept; anything else is
        // ignored (identityd makes one) and the call goes through all the same.
        (RequestId(Rpc::Authenticate), "x".repeat(200), OK),
        (RequestId(Rpc::GetUser), "x".repeat(200), OK),
        (RequestId(Rpc::IssueToken), "x".repeat(200), OK),
        (RequestId(Rpc::Authenticate), "x".repeat(129), OK),
        (RequestId(Rpc::Authenticate), String::new(), OK),
        (RequestId(Rpc::IssueToken), String::new(), OK),
        (RequestId(Rpc::Authenticate), "two words".into(), OK),
        (RequestId(Rpc::IssueToken), "two words".into(), OK),
        (RequestId(Rpc::Authenticate), "tab\there".into(), OK),
        (RequestId(Rpc::IssueToken), "tab\there".into(), OK),
        (RequestId(Rpc::Authenticate), "x".repeat(128), OK),
        (
            RequestId(Rpc::GetUser),
            "5c1e9f0a-6f0e-4a59-9a57-0d9d0d6c1e2b".into(),
            OK,
        ),
        (RequestId(Rpc::IssueToken), "req:42/retry=1".into(), OK),
    ]);
    rows
}

/// What a call got: success, or the code, ErrorInfo reason, BadRequest field and
/// message of its error.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Ok,
    Unsendable,
    Refused {
        code: Code,
        reason: Option<String>,
        field: Option<String>,
        message: String,
    },
}

impl Answer {
    fn of<T>(result: Result<T, Status>) -> Self {
        match result {
            Ok(_) => Self::Ok,
            Err(status) => Self::Refused {
                code: status.code(),
                reason: status.get_details_error_info().map(|i| i.reason),
                field: status
                    .get_details_bad_request()
                    .and_then(|b| b.field_violations.first().map(|v| v.field.clone())),
                message: status.message().to_owned(),
            },
        }
    }

    /// What must be the same on every backend: all but the message.
    fn key(&self) -> (Option<Code>, Option<&str>, Option<&str>) {
        match self {
            Self::Ok | Self::Unsendable => (None, None, None),
            Self::Refused {
                code,
                reason,
                field,
                ..
            } => (Some(*code), reason.as_deref(), field.as_deref()),
        }
    }

    /// Whether this is the answer `want` asks for.
    fn is(&self, want: Want) -> bool {
        match (self, want) {
            (Self::Ok, Want::Ok) | (Self::Unsendable, Want::Unsendable) => true,
            (Self::Refused { code, reason, .. }, Want::OAuth(c, r)) => {
                *code == c && reason.as_deref() == Some(r)
            }
            (Self::Refused { code, field, .. }, Want::Invalid(f)) => {
                *code == Code::InvalidArgument && field.as_deref() == Some(f)
            }
            (
                Self::Refused {
                    code,
                    field,
                    message,
                    ..
                },
                Want::Why(f, why),
            ) => {
                *code == Code::InvalidArgument
                    && field.as_deref() == Some(f)
                    && message.contains(why)
            }
            _ => false,
        }
    }

    /// A storage or server failure: what no input may ever cause.
    fn is_failure(&self) -> bool {
        matches!(
            self,
            Self::Refused {
                code: Code::Unavailable | Code::Internal | Code::Unknown,
                ..
            }
        )
    }
}

/// A server with what the rows act on: `alice` (role `alice-role`, password
/// [`PASSWORD`]), an integration, an app, and a refresh token of alice's.
struct Fixture {
    server: TestServer,
    identity: IdentityClient<Channel>,
    admin: AdminClient<Channel>,
    client_id: String,
    client_secret: String,
    refresh_token: String,
    app_id: String,
    next: AtomicUsize,
}

impl Fixture {
    async fn start(backend: Backend) -> Self {
        let server = TestServer::start(backend).await;
        user_with_password(&server, "alice", &["orders:read"]).await;
        let (integration, client_secret) = integration(&server, "billing", &["orders:read"]).await;
        let app = create_app(&server, "shop", &["orders:read"], "").await;
        let refresh_token = login(&server, "alice", PASSWORD).await.refresh_token;
        Self {
            identity: server.identity().await,
            admin: server.admin().await,
            client_id: integration.client_id,
            client_secret,
            refresh_token,
            app_id: app.id,
            next: AtomicUsize::new(0),
            server,
        }
    }

    /// A name no earlier row used, for rows that would create something.
    fn unique(&self, stem: &str) -> String {
        format!("{stem}-{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// `template` with its placeholders filled and `bad` in place of `{}`.
    fn fill(&self, template: &str, bad: &str) -> String {
        template
            .replace("<client_id>", &self.client_id)
            .replace("<app_id>", &self.app_id)
            .replacen("{}", bad, 1)
    }

    fn as_admin<T>(&self, message: T) -> tonic::Request<T> {
        authed(&self.server.admin_auth, message)
    }

    /// Sends `value` where `input` says; returns what came back.
    async fn answer(&self, input: Input, value: &str) -> Answer {
        let (mut identity, mut admin) = (self.identity.clone(), self.admin.clone());
        let v = value.to_owned();
        let client = |client_id: String| pb::IssueTokenRequest {
            client_id,
            client_secret: self.client_secret.clone(),
            ..Default::default()
        };
        match input {
            Input::LoginUsername => {
                Answer::of(identity.issue_token(password_grant(value, PASSWORD)).await)
            }
            Input::ClientCredentialsClientId => Answer::of(
                identity
                    .issue_token(pb::IssueTokenRequest {
                        grant_type: "client_credentials".into(),
                        ..client(v)
                    })
                    .await,
            ),
            Input::PasswordClientId => Answer::of(
                identity
                    .issue_token(pb::IssueTokenRequest {
                        client_id: v,
                        client_secret: self.client_secret.clone(),
                        ..password_grant("alice", PASSWORD)
                    })
                    .await,
            ),
            Input::RefreshGrantClientId => Answer::of(
                identity
                    .issue_token(pb::IssueTokenRequest {
                        grant_type: "refresh_token".into(),
                        refresh_token: self.refresh_token.clone(),
                        ..client(v)
                    })
                    .await,
            ),
            Input::RefreshTokenClientId => Answer::of(
                identity
                    .refresh_token(pb::RefreshTokenRequest {
                        refresh_token: self.refresh_token.clone(),
                        client_id: v,
                        client_secret: self.client_secret.clone(),
                        ..Default::default()
                    })
                    .await,
            ),
            Input::RevokeClientId => Answer::of(
                identity
                    .revoke_token(pb::RevokeTokenRequest {
                        token: "not-a-token-anyone-holds".into(),
                        client_id: v,
                        client_secret: self.client_secret.clone(),
                        ..Default::default()
                    })
                    .await,
            ),
            Input::RegenerateApiToken => Answer::of(
                identity
                    .regenerate_api_token(
                        self.as_admin(pb::RegenerateApiTokenRequest { username: v }),
                    )
                    .await,
            ),
            Input::CreateUserUsername => Answer::of(
                admin
                    .create_user(self.as_admin(pb::CreateUserRequest {
                        username: v,
                        ..Default::default()
                    }))
                    .await,
            ),
            Input::CreateUserEmail => Answer::of(
                admin
                    .create_user(self.as_admin(pb::CreateUserRequest {
                        username: self.unique("dave"),
                        email: v,
                        ..Default::default()
                    }))
                    .await,
            ),
            Input::UpdateUserEmail => Answer::of(
                admin
                    .update_user(self.as_admin(pb::UpdateUserRequest {
                        username: "alice".into(),
                        email: Some(v),
                        ..Default::default()
                    }))
                    .await,
            ),
            Input::GetUser => Answer::of(
                admin
                    .get_user(self.as_admin(pb::GetUserRequest { username: v }))
                    .await,
            ),
            Input::UpdateUser => Answer::of(
                admin
                    .update_user(self.as_admin(pb::UpdateUserRequest {
                        username: v,
                        is_staff: Some(false),
                        ..Default::default()
                    }))
                    .await,
            ),
            Input::DeleteUser => Answer::of(
                admin
                    .delete_user(self.as_admin(pb::DeleteUserRequest { username: v }))
                    .await,
            ),
            Input::SetApiAccess => Answer::of(
                admin
                    .set_api_access(self.as_admin(pb::SetApiAccessRequest {
                        username: v,
                        enabled: true,
                    }))
                    .await,
            ),
            Input::SetUserPassword => Answer::of(
                admin
                    .set_user_password(self.as_admin(pb::SetUserPasswordRequest {
                        username: v,
                        password: "another long password".into(),
                    }))
                    .await,
            ),
            Input::AssignRole => Answer::of(
                admin
                    .assign_role(self.as_admin(pb::AssignRoleRequest {
                        username: v,
                        role: "alice-role".into(),
                    }))
                    .await,
            ),
            Input::UnassignRole => Answer::of(
                admin
                    .unassign_role(self.as_admin(pb::UnassignRoleRequest {
                        username: v,
                        role: "alice-role".into(),
                    }))
                    .await,
            ),
            Input::RevokeUserCredentials => Answer::of(
                admin
                    .revoke_user_credentials(
                        self.as_admin(pb::RevokeUserCredentialsRequest { username: v }),
                    )
                    .await,
            ),
            Input::CreateRoleName => Answer::of(
                admin
                    .create_role(self.as_admin(pb::CreateRoleRequest {
                        name: v,
                        description: String::new(),
                        permissions: strings(&["orders:read"]),
                    }))
                    .await,
            ),
            Input::CreateRoleDescription => Answer::of(
                admin
                    .create_role(self.as_admin(pb::CreateRoleRequest {
                        name: self.unique("described"),
                        description: v,
                        permissions: strings(&["orders:read"]),
                    }))
                    .await,
            ),
            Input::CreateIntegrationName => Answer::of(
                admin
                    .create_integration(self.as_admin(pb::CreateIntegrationRequest {
                        name: v,
                        permissions: strings(&["orders:read"]),
                    }))
                    .await,
            ),
            Input::GetIntegrationClientId => Answer::of(
                admin
                    .get_integration(self.as_admin(pb::GetIntegrationRequest { client_id: v }))
                    .await,
            ),
            Input::CreateAppName => Answer::of(
                admin
                    .create_app(self.as_admin(app_request(&v, &["orders:read"], "")))
                    .await,
            ),
            Input::CreateAppAttachedUser => Answer::of(
                admin
                    .create_app(self.as_admin(app_request(
                        &self.unique("attached"),
                        &["orders:read"],
                        &v,
                    )))
                    .await,
            ),
            Input::UpdateAppAttachedUser => Answer::of(
                admin
                    .update_app(self.as_admin(pb::UpdateAppRequest {
                        attached_user: Some(v),
                        ..app_update(&self.app_id)
                    }))
                    .await,
            ),
            Input::GetAppId => Answer::of(
                admin
                    .get_app(self.as_admin(pb::GetAppRequest { app_id: v }))
                    .await,
            ),
            Input::CreateAppTokenName => Answer::of(
                admin
                    .create_app_token(self.as_admin(pb::CreateAppTokenRequest {
                        app_id: self.app_id.clone(),
                        name: v,
                    }))
                    .await,
            ),
            Input::ListUsersPageToken => Answer::of(
                admin
                    .list_users(self.as_admin(pb::ListUsersRequest {
                        page_size: 10,
                        page_token: URL_SAFE_NO_PAD.encode(value),
                    }))
                    .await,
            ),
            Input::ListUsersRawPageToken => Answer::of(
                admin
                    .list_users(self.as_admin(pb::ListUsersRequest {
                        page_size: 10,
                        page_token: v,
                    }))
                    .await,
            ),
            Input::ClientAddress(rpc) => self.with_address(rpc, v).await,
            Input::RequestId(rpc) => {
                // Sent as bytes, as a client may: only what HTTP/2 can carry gets through.
                let Ok(request_id) = AsciiMetadataValue::try_from(value.as_bytes()) else {
                    return Answer::Unsendable;
                };
                self.with_request_id(rpc, request_id).await
            }
        }
    }

    /// Calls `rpc` with `client_address`; the rest of the request is well formed.
    async fn with_address(&self, rpc: Rpc, client_address: String) -> Answer {
        let mut identity = self.identity.clone();
        match rpc {
            Rpc::Authenticate => Answer::of(
                identity
                    .authenticate(pb::AuthenticateRequest {
                        authorization: String::new(),
                        client_address,
                    })
                    .await,
            ),
            Rpc::CheckPermission => Answer::of(
                identity
                    .check_permission(pb::CheckPermissionRequest {
                        authorization: self.server.admin_auth.clone(),
                        permissions: strings(&["orders:read"]),
                        client_address,
                        ..Default::default()
                    })
                    .await,
            ),
            Rpc::IssueToken => Answer::of(
                identity
                    .issue_token(pb::IssueTokenRequest {
                        client_address,
                        ..password_grant("alice", PASSWORD)
                    })
                    .await,
            ),
            Rpc::RefreshToken => Answer::of(
                identity
                    .refresh_token(pb::RefreshTokenRequest {
                        refresh_token: "not-a-refresh-token".into(),
                        client_address,
                        ..Default::default()
                    })
                    .await,
            ),
            Rpc::RevokeToken => Answer::of(
                identity
                    .revoke_token(pb::RevokeTokenRequest {
                        token: "not-a-token-anyone-holds".into(),
                        client_address,
                        ..Default::default()
                    })
                    .await,
            ),
            Rpc::GetUser => unreachable!("GetUser has no client_address"),
        }
    }

    /// Calls `rpc`, well formed, with `x-request-id` metadata.
    async fn with_request_id(&self, rpc: Rpc, request_id: AsciiMetadataValue) -> Answer {
        fn with_id<T>(mut request: tonic::Request<T>, id: AsciiMetadataValue) -> tonic::Request<T> {
            request.metadata_mut().insert("x-request-id", id);
            request
        }
        let (mut identity, mut admin) = (self.identity.clone(), self.admin.clone());
        match rpc {
            Rpc::Authenticate => Answer::of(
                identity
                    .authenticate(with_id(
                        tonic::Request::new(pb::AuthenticateRequest::default()),
                        request_id,
                    ))
                    .await,
            ),
            Rpc::IssueToken => Answer::of(
                identity
                    .issue_token(with_id(
                        tonic::Request::new(password_grant("alice", PASSWORD)),
                        request_id,
                    ))
                    .await,
            ),
            Rpc::GetUser => Answer::of(
                admin
                    .get_user(with_id(
                        self.as_admin(pb::GetUserRequest {
                            username: "alice".into(),
                        }),
                        request_id,
                    ))
                    .await,
            ),
            other => unreachable!("no request-id row for {other:?}"),
        }
    }
}

/// One row's outcome: a printable label, what it must get, what it got.
struct Row {
    label: String,
    want: Want,
    got: Answer,
}

/// Runs both tables on one server, in order.
async fn run_tables(fixture: &Fixture) -> Vec<Row> {
    let mut rows = Vec::new();
    for (input, template, wants) in bad_byte_table() {
        for ((column, bad), want) in bad_values().into_iter().zip(wants) {
            let value = fixture.fill(template, &bad);
            let got = fixture.answer(input, &value).await;
            rows.push(Row {
                label: format!("{input:?} {template:?} with {column}"),
                want,
                got,
            });
        }
    }
    for (input, value, want) in single_value_table() {
        let got = fixture.answer(input, &value).await;
        let shown: String = value.chars().take(40).collect();
        rows.push(Row {
            label: format!("{input:?} {shown:?} ({} bytes)", value.len()),
            want,
            got,
        });
    }
    rows
}

/// Every row gets the answer its table says, and none is a server failure. All rows run
/// before the verdict, which lists every row that went wrong.
async fn bad_bytes_in_stored_fields_are_refused_alike(backend: Backend) {
    let fixture = Fixture::start(backend).await;
    let rows = run_tables(&fixture).await;
    let wrong: Vec<String> = rows
        .iter()
        .filter(|row| row.got.is_failure() || !row.got.is(row.want))
        .map(|row| format!("  {}: want {:?}, got {:?}", row.label, row.want, row.got))
        .collect();
    // Nothing refused or ignored was written down: no control character and no
    // over-long value is in the audit log or the guess-limit counters, and every stored
    // request id is 1 to 128 visible ASCII characters (an ignored one was replaced).
    let long = "x".repeat(300);
    let shown = |text: &str| text.chars().take(60).collect::<String>();
    let request_id_ok =
        |id: &str| (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic());
    let stored: Vec<String> = stored_texts(&fixture.server)
        .await
        .into_iter()
        .filter(|(place, text)| {
            text.chars().any(char::is_control)
                || text.contains(&long)
                || (place.ends_with(" request_id") && !request_id_ok(text))
        })
        .map(|(place, text)| format!("  {place}: {:?}", shown(&text)))
        .collect();
    assert!(
        wrong.is_empty() && stored.is_empty(),
        "{backend:?}: {} of {} rows answered wrongly:\n{}\nrefused values stored: {}\n{}",
        wrong.len(),
        rows.len(),
        wrong.join("\n"),
        stored.len(),
        stored.join("\n")
    );
    // Nothing a row sent changed alice.
    let alice = get_user(&fixture.server, "alice").await.expect("alice");
    assert_eq!(
        (
            alice.email.as_str(),
            alice.roles.as_slice(),
            alice.api_access
        ),
        ("", &["alice-role".to_owned()][..], false)
    );
    login(&fixture.server, "alice", PASSWORD).await;
    fixture.server.stop().await;
}

/// Every text of every audit event and guess-limit counter the server holds, each with
/// where it is.
async fn stored_texts(server: &TestServer) -> Vec<(String, String)> {
    let mut admin = server.admin().await;
    let mut texts = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = admin
            .list_audit_events(as_admin(
                server,
                pb::ListAuditEventsRequest {
                    page_size: 1000,
                    page_token,
                    ..Default::default()
                },
            ))
            .await
            .expect("ListAuditEvents")
            .into_inner();
        for e in page.events {
            let place = |field: &str| format!("audit event {} ({}) {field}", e.id, e.action);
            texts.extend([
                (place("actor"), e.actor.clone()),
                (place("actor_name"), e.actor_name.clone()),
                (place("credential"), e.credential.clone()),
                (place("target"), e.target.clone()),
                (place("reason"), e.reason.clone()),
                (place("source"), e.source.clone()),
                (place("peer"), e.peer.clone()),
                (place("request_id"), e.request_id.clone()),
                (place("details"), e.details.clone()),
            ]);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let limits = admin
        .list_guess_limits(as_admin(
            server,
            pb::ListGuessLimitsRequest {
                page_size: 1000,
                ..Default::default()
            },
        ))
        .await
        .expect("ListGuessLimits")
        .into_inner()
        .limits;
    for l in limits {
        texts.push((format!("guess limit {} subject", l.secret), l.subject));
        texts.push((format!("guess limit {} source", l.secret), l.source));
    }
    texts
}

/// An `x-request-id` that is not 1 to 128 visible ASCII characters is ignored, not
/// refused: the call goes through, and its event gets a request id identityd made, as a
/// call sending none does (each its own); a good one is kept as sent.
async fn ignored_request_ids_are_replaced(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "alice", &["orders:read"]).await;
    let mut identity = server.identity().await;
    let mut admin = server.admin().await;
    let long = "x".repeat(200);
    let sent: [Option<&str>; 7] = [
        Some("two words"),
        Some("tab\there"),
        Some(&long),
        Some("req-\u{202e}"),
        Some(""),
        None,
        Some("req:42/retry=1"),
    ];
    let mut recorded = Vec::new();
    for id in sent {
        let mut request = tonic::Request::new(password_grant("alice", PASSWORD));
        if let Some(id) = id {
            let value = AsciiMetadataValue::try_from(id.as_bytes()).expect("sendable");
            request.metadata_mut().insert("x-request-id", value);
        }
        let issued = identity
            .issue_token(request)
            .await
            .unwrap_or_else(|s| panic!("the login with {id:?} goes through: {s:?}"))
            .into_inner();
        let logins = admin
            .list_audit_events(as_admin(
                &server,
                pb::ListAuditEventsRequest {
                    action: "login".into(),
                    page_size: 1000,
                    ..Default::default()
                },
            ))
            .await
            .expect("ListAuditEvents")
            .into_inner()
            .events;
        let session = |e: &pb::AuditEvent| {
            serde_json::from_str::<serde_json::Value>(&e.details).expect("JSON details")["session"]
                .as_str()
                .map(str::to_owned)
        };
        let events: Vec<_> = logins
            .iter()
            .filter(|e| session(e).as_deref() == Some(issued.session_id.as_str()))
            .collect();
        assert_eq!(events.len(), 1, "{id:?}: {logins:#?}");
        recorded.push(events[0].request_id.clone());
    }
    assert_eq!(recorded[6], "req:42/retry=1");
    let made = &recorded[..6];
    for id in made {
        assert!(
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "a request id identityd made: {recorded:?}"
        );
    }
    let distinct: std::collections::HashSet<_> = made.iter().collect();
    assert_eq!(distinct.len(), made.len(), "{recorded:?}");
    server.stop().await;
}

/// A client_id longer than any identityd issues (64 characters: `is_client_id`,
/// `check_issued_id`) names no integration; refused, it must not be written down either.
/// Under the 4096-byte cap the token endpoint puts on every field, it gets past the edge.
async fn over_long_client_ids_never_reach_storage(backend: Backend) {
    use Input::*;
    let fixture = Fixture::start(backend).await;
    let long = format!("idc_{}", "x".repeat(4000));
    for input in [
        ClientCredentialsClientId,
        PasswordClientId,
        RefreshGrantClientId,
        RefreshTokenClientId,
        RevokeClientId,
    ] {
        let got = fixture.answer(input, &long).await;
        assert!(got.is(CLIENT) || got.is(REQUEST), "{input:?}: {got:?}");
    }
    let too_long = "x".repeat(65);
    let stored: Vec<String> = stored_texts(&fixture.server)
        .await
        .into_iter()
        .filter(|(_, text)| text.contains(&too_long))
        .map(|(place, text)| format!("  {place}: {} bytes", text.len()))
        .collect();
    assert!(
        stored.is_empty(),
        "{backend:?}: a {}-byte client_id was stored:\n{}",
        long.len(),
        stored.join("\n")
    );
    fixture.server.stop().await;
}

/// The same rows on SQLite and PostgreSQL get the same code, ErrorInfo reason and
/// BadRequest field, whatever the tables expect.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_bytes_get_one_answer_on_both_backends() {
    let (sqlite, postgres) = tokio::join!(
        Fixture::start(Backend::Sqlite),
        Fixture::start(Backend::Postgres)
    );
    let (on_sqlite, on_postgres) = tokio::join!(run_tables(&sqlite), run_tables(&postgres));
    let differ: Vec<String> = on_sqlite
        .iter()
        .zip(&on_postgres)
        .filter(|(s, p)| s.got.key() != p.got.key())
        .map(|(s, p)| format!("  {}: SQLite {:?}, PostgreSQL {:?}", s.label, s.got, p.got))
        .collect();
    assert_eq!(on_sqlite.len(), on_postgres.len());
    assert!(
        differ.is_empty(),
        "{} rows differ between the backends:\n{}",
        differ.len(),
        differ.join("\n")
    );
    sqlite.server.stop().await;
    postgres.server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Good spellings

/// `Alice` is created as `alice`; any case of the name finds and logs in the same user,
/// and page tokens are canonical names.
async fn good_spellings_still_work(backend: Backend) {
    let server = TestServer::start(backend).await;
    let created = create_user(
        &server,
        pb::CreateUserRequest {
            username: "Alice".into(),
            email: "Alice@Example.COM".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        (created.username.as_str(), created.email.as_str()),
        ("alice", "alice@example.com")
    );
    let found = get_user(&server, "ALICE").await.expect("GetUser(ALICE)");
    assert_eq!(
        (found.id.as_str(), found.username.as_str()),
        (created.id.as_str(), "alice")
    );

    // One name in any case: a second `ALICE` is the same user.
    let again = server
        .admin()
        .await
        .create_user(as_admin(
            &server,
            pb::CreateUserRequest {
                username: "ALICE".into(),
                ..Default::default()
            },
        ))
        .await;
    assert_oauth_error(again, Code::AlreadyExists, "already_exists");

    let set = set_password(&server, "ALICE", PASSWORD)
        .await
        .expect("SetUserPassword(ALICE)");
    assert_eq!(set.user.expect("the user").username, "alice");
    for login_name in ["ALICE", "alice", "Alice@example.com", "ALICE@EXAMPLE.COM"] {
        let tokens = login(&server, login_name, PASSWORD).await;
        let principal = authenticate(&server, &bearer(&tokens.access_token))
            .await
            .principal
            .expect("a valid token");
        assert_eq!(
            (principal.id.as_str(), principal.name.as_str()),
            (created.id.as_str(), "alice"),
            "logged in as {login_name:?}"
        );
    }

    // Admin calls canonicalise too.
    let token = server.enable_api_access("ALICE").await;
    assert!(
        authenticate(&server, &basic("alice", &token))
            .await
            .principal
            .is_some()
    );
    let regenerated = regenerate_api_token(&server, "Alice")
        .await
        .expect("RegenerateApiToken(Alice)");
    assert_eq!(regenerated.username, "alice");

    // Page tokens continue after a canonical username, and round-trip.
    let list = async |page_token: String| {
        server
            .admin()
            .await
            .list_users(as_admin(
                &server,
                pb::ListUsersRequest {
                    page_size: 1,
                    page_token,
                },
            ))
            .await
            .expect("ListUsers")
            .into_inner()
    };
    let first = list(String::new()).await;
    assert_eq!(first.users[0].username, "admin");
    assert_eq!(first.next_page_token, URL_SAFE_NO_PAD.encode("admin"));
    let second = list(first.next_page_token).await;
    assert_eq!(second.users[0].username, "alice");
    server.stop().await;
}

on_both_backends!(
    undecodable_requests_are_invalid_argument,
    bad_bytes_in_stored_fields_are_refused_alike,
    over_long_client_ids_never_reach_storage,
    ignored_request_ids_are_replaced,
    good_spellings_still_work,
);
