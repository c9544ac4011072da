//! Forged, tampered, mis-typed and expired access tokens. Each one is a 401 with a stable
//! reason under both `Bearer` and `JWT`, in CheckPermission and Authenticate alike: never
//! an allow, never an RPC error.

use crate::oauth_support::*;
use crate::on_both_backends;
use crate::support::*;
use ed25519_dalek::Signer as _;
use identityd::domain::clock::Clock;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

/// Alice's genuine access token, taken apart, and the public key that verifies it.
struct Victim {
    token: String,
    header: Value,
    claims: Value,
    kid: String,
    /// The JWK `x` of the signing key.
    x: String,
}

async fn victim(server: &TestServer) -> Victim {
    user_with_password(server, "alice", &["orders:read"]).await;
    let token = login(server, "alice", PASSWORD).await.access_token;
    let kid = kid_of(&token);
    let x = jwk(server, &kid).await.x;
    // The control every row below is measured against.
    assert_allowed(server, &token, "orders:read", "the genuine token").await;
    Victim {
        header: header_of(&token),
        claims: claims_of(&token),
        token,
        kid,
        x,
    }
}

/// An Ed25519 key identityd has never seen.
fn attacker_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7; 32])
}

/// A compact JWS of `header` and `claims` signed with `key`.
fn ed25519_signed(key: &ed25519_dalek::SigningKey, header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", b64_json(header), b64_json(claims));
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64(signature.to_bytes()))
}

/// A compact JWS of `header` and `claims` with an HS256 MAC keyed with `secret`.
fn hs256_signed(secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", b64_json(header), b64_json(claims));
    let mac = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .expect("HMAC");
    format!("{input}.{mac}")
}

/// One attack: a name, the token, and the reasons a 401 may give for it.
type Row = (&'static str, String, &'static [&'static str]);

const INVALID: &[&str] = &["invalid_credentials"];
const EXPIRED: &[&str] = &["expired"];
/// Breaks the `Authorization` grammar (RFC 6750 b64token) before it is a token.
const MALFORMED: &[&str] = &["malformed_credentials"];
/// Two things wrong at once: the token is refused as invalid before its expiry counts.
const EXPIRED_OR_INVALID: &[&str] = &["invalid_credentials"];
/// Over 8 KiB the header parser may refuse before the token is looked at.
const TOO_LONG: &[&str] = &["malformed_credentials", "invalid_credentials"];
/// A signed token naming a session that is not the subject's.
const NOT_THEIRS: &[&str] = &["invalid_credentials"];
/// A signed token naming a session that does not exist.
const REVOKED: &[&str] = &["revoked"];

/// Every row is a 401 with one of its reasons, in CheckPermission under `Bearer` and `JWT`
/// and in Authenticate.
async fn assert_all_refused(server: &TestServer, rows: &[Row]) {
    let mut failures = Vec::new();
    for (name, token, reasons) in rows {
        for (scheme, header) in [("Bearer", bearer(token)), ("JWT", jwt(token))] {
            let check = server.check(&header, &["orders:read"]).await;
            let authn = authenticate(server, &header).await;
            for (rpc, status, reason, challenge, has_principal) in [
                (
                    "CheckPermission",
                    check.http_status,
                    check.reason.as_str(),
                    check.www_authenticate.as_str(),
                    check.principal.is_some(),
                ),
                (
                    "Authenticate",
                    authn.http_status,
                    authn.reason.as_str(),
                    authn.www_authenticate.as_str(),
                    authn.principal.is_some(),
                ),
            ] {
                let challenge_ok = reason == "malformed_credentials"
                    || (challenge.starts_with(&format!(r#"{scheme} realm="identityd""#))
                        && challenge.contains(r#"error="invalid_token""#));
                if status != 401 || !reasons.contains(&reason) || has_principal || !challenge_ok {
                    failures.push(format!(
                        "{name} ({scheme}, {rpc}): got {status} {reason:?} challenge {challenge:?} \
                         principal={has_principal}; expected 401 {reasons:?}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} refusals wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Signatures that are missing, of the wrong kind, by the wrong key, or do not cover the
/// token presented; and tokens that are not compact JWSs at all.
async fn forged_tokens(backend: Backend) {
    let server = TestServer::start(backend).await;
    let v = victim(&server).await;
    let admin_id = admin_user_id(&server).await;
    let (h, p, s) = segments(&v.token);
    let attacker = attacker_key();
    let public_key = unb64(&v.x).expect("x");
    let with_header =
        |edit: &dyn Fn(&mut serde_json::Map<String, Value>)| edited(&v.header, |m| edit(m));
    let none = |alg: &str| json!({"alg": alg, "typ": "at+jwt", "kid": v.kid});
    let hs256 = with_header(&|m| {
        m.insert("alg".into(), json!("HS256"));
    });
    let as_admin_claims = edited(&v.claims, |c| {
        c.insert("sub".into(), json!(admin_id));
    });
    let longer_claims = edited(&v.claims, |c| {
        let exp = c["exp"].as_i64().expect("exp");
        c.insert("exp".into(), json!(exp + 86_400));
    });
    let second = login(&server, "alice", PASSWORD).await.access_token;
    let mut flipped = s.clone().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).expect("ascii");

    let rows: Vec<Row> = vec![
        // alg none, in its spellings, with and without a signature.
        (
            "alg none, empty signature",
            format!("{}.{p}.", b64_json(&none("none"))),
            INVALID,
        ),
        (
            "alg none, original signature",
            format!("{}.{p}.{s}", b64_json(&none("none"))),
            INVALID,
        ),
        (
            "alg None, empty signature",
            format!("{}.{p}.", b64_json(&none("None"))),
            INVALID,
        ),
        (
            "alg NONE, original signature",
            format!("{}.{p}.{s}", b64_json(&none("NONE"))),
            INVALID,
        ),
        (
            "alg none without kid or typ",
            format!("{}.{p}.", b64_json(&json!({"alg": "none"}))),
            INVALID,
        ),
        (
            "alg none, admin's sub",
            format!(
                "{}.{}.",
                b64_json(&none("none")),
                b64_json(&as_admin_claims)
            ),
            INVALID,
        ),
        // Key confusion: the public key used as an HMAC secret.
        (
            "HS256 keyed with the raw public key",
            hs256_signed(&public_key, &hs256, &v.claims),
            INVALID,
        ),
        (
            "HS256 keyed with the JWK x",
            hs256_signed(v.x.as_bytes(), &hs256, &v.claims),
            INVALID,
        ),
        (
            "HS256 keyed with the public key, admin's sub",
            hs256_signed(&public_key, &hs256, &as_admin_claims),
            INVALID,
        ),
        // Signed content changed after signing.
        (
            "payload changed to the admin's sub",
            format!("{h}.{}.{s}", b64_json(&as_admin_claims)),
            INVALID,
        ),
        (
            "payload with a later exp",
            format!("{h}.{}.{s}", b64_json(&longer_claims)),
            INVALID,
        ),
        (
            "header changed (typ), signature kept",
            format!(
                "{}.{p}.{s}",
                b64_json(&with_header(&|m| {
                    m.insert("typ".into(), json!("JWT"));
                }))
            ),
            INVALID,
        ),
        (
            "header re-encoded with whitespace",
            format!("{}.{p}.{s}", b64(format!(" {} ", v.header))),
            INVALID,
        ),
        (
            "signature of another token",
            format!("{h}.{p}.{}", segments(&second).2),
            INVALID,
        ),
        (
            "one signature bit flipped",
            format!("{h}.{p}.{flipped}"),
            INVALID,
        ),
        // Signed, but by a key identityd does not hold.
        (
            "another key, same kid",
            ed25519_signed(&attacker, &v.header, &v.claims),
            INVALID,
        ),
        (
            "another key, admin's sub",
            ed25519_signed(&attacker, &v.header, &as_admin_claims),
            INVALID,
        ),
        (
            "another key, unknown kid",
            ed25519_signed(
                &attacker,
                &with_header(&|m| {
                    m.insert("kid".into(), json!("no-such-kid"));
                }),
                &v.claims,
            ),
            INVALID,
        ),
        (
            "another key, no kid",
            ed25519_signed(
                &attacker,
                &with_header(&|m| {
                    m.remove("kid");
                }),
                &v.claims,
            ),
            INVALID,
        ),
        (
            "another key, embedded in the header (jwk)",
            ed25519_signed(
                &attacker,
                &with_header(&|m| {
                    m.insert(
                        "jwk".into(),
                        json!({
                            "kty": "OKP",
                            "crv": "Ed25519",
                            "x": b64(attacker.verifying_key().to_bytes()),
                        }),
                    );
                }),
                &v.claims,
            ),
            INVALID,
        ),
        (
            "another key, fetched from a URL (jku)",
            ed25519_signed(
                &attacker,
                &with_header(&|m| {
                    m.insert("jku".into(), json!("https://attacker.example/jwks.json"));
                }),
                &v.claims,
            ),
            INVALID,
        ),
        (
            "another key, SQL in the kid",
            ed25519_signed(
                &attacker,
                &with_header(&|m| {
                    m.insert("kid".into(), json!("x' OR '1'='1"));
                }),
                &v.claims,
            ),
            INVALID,
        ),
        (
            "another key, path in the kid",
            ed25519_signed(
                &attacker,
                &with_header(&|m| {
                    m.insert("kid".into(), json!("../../../../dev/null"));
                }),
                &v.claims,
            ),
            INVALID,
        ),
        (
            "another key, kid as a number",
            ed25519_signed(
                &attacker,
                &with_header(&|m| {
                    m.insert("kid".into(), json!(1));
                }),
                &v.claims,
            ),
            INVALID,
        ),
        (
            "another key, no typ",
            ed25519_signed(
                &attacker,
                &with_header(&|m| {
                    m.remove("typ");
                }),
                &v.claims,
            ),
            INVALID,
        ),
        (
            "another key, expired claims",
            ed25519_signed(
                &attacker,
                &v.header,
                &edited(&v.claims, |c| {
                    c.insert("exp".into(), json!(1));
                }),
            ),
            INVALID,
        ),
        // Not a compact JWS of three segments.
        ("empty signature", format!("{h}.{p}."), INVALID),
        ("two segments", format!("{h}.{p}"), INVALID),
        (
            "truncated",
            v.token[..v.token.len() - 5].to_owned(),
            INVALID,
        ),
        ("extra segment", format!("{}.{s}", v.token), INVALID),
        ("JWE shape", format!("{h}.{p}.{s}.{s}.{s}"), INVALID),
        (
            "header not JSON",
            format!("{}.{p}.{s}", b64("alg")),
            INVALID,
        ),
        (
            "payload not JSON",
            format!("{h}.{}.{s}", b64("not json")),
            INVALID,
        ),
        // `+` and `/` are token68 but not base64url.
        ("payload not base64url", format!("{h}.+/+/.{s}"), INVALID),
        // Not even token68: the header grammar refuses it first.
        ("payload not token68", format!("{h}.!!!.{s}"), MALFORMED),
        ("padded signature", format!("{}==", v.token), INVALID),
        ("dots only", "..".into(), INVALID),
        ("garbage", "abc".into(), INVALID),
        ("garbage in three parts", "a.b.c".into(), INVALID),
        (
            "very long (over 8 KiB)",
            format!("{h}.{}.{s}", "A".repeat(9 * 1024)),
            TOO_LONG,
        ),
    ];
    assert_all_refused(&server, &rows).await;
    // The victim's own token still works: nothing above damaged its session.
    assert_allowed(&server, &v.token, "orders:read", "genuine, afterwards").await;
    server.stop().await;
}

/// Tokens properly signed with the server's own key whose header or claims break the
/// rules: each is refused for exactly the one thing changed.
async fn signed_bad_claims(backend: Backend) {
    let server = TestServer::start(backend).await;
    let v = victim(&server).await;
    let now = server.clock.now();
    let admin_id = admin_user_id(&server).await;
    user_with_password(&server, "bob", &["orders:read"]).await;
    let bob_sid = login(&server, "bob", PASSWORD).await.session_id;

    // The control: alice's claims re-signed by the server's key are accepted, so each
    // refusal below is down to the mutation.
    let resigned = sign_claims(&server, &v.claims);
    assert_eq!(kid_of(&resigned), v.kid, "sign_json uses the current key");
    assert_allowed(
        &server,
        &resigned,
        "orders:read",
        "re-signed genuine claims",
    )
    .await;

    let set = |name: &'static str, value: Value| {
        edited(&v.claims, |c| {
            c.insert(name.into(), value);
        })
    };
    let without = |name: &'static str| {
        edited(&v.claims, |c| {
            c.remove(name);
        })
    };
    let exp = v.claims["exp"].as_i64().expect("exp");
    let iat = v.claims["iat"].as_i64().expect("iat");
    let signed = |claims: &Value| sign_claims(&server, claims);

    let rows: Vec<Row> = vec![
        // Header.
        ("typ JWT", sign_typ(&server, "JWT", &v.claims), INVALID),
        ("typ empty", sign_typ(&server, "", &v.claims), INVALID),
        (
            "typ id token",
            sign_typ(&server, "id_token+jwt", &v.claims),
            INVALID,
        ),
        // Issuer and audience.
        ("wrong iss", signed(&set("iss", json!("evil"))), INVALID),
        (
            "iss as an array",
            signed(&set("iss", json!(["identityd"]))),
            INVALID,
        ),
        ("iss missing", signed(&without("iss")), INVALID),
        (
            "wrong aud",
            signed(&set("aud", json!("someone-else"))),
            INVALID,
        ),
        (
            "aud as an array",
            signed(&set("aud", json!(["identityd"]))),
            INVALID,
        ),
        (
            "aud as an array with another",
            signed(&set("aud", json!(["identityd", "evil"]))),
            INVALID,
        ),
        ("aud missing", signed(&without("aud")), INVALID),
        // Claims of the wrong JSON type, or missing.
        (
            "exp as a string",
            signed(&set("exp", json!(exp.to_string()))),
            INVALID,
        ),
        (
            "exp as a float",
            signed(&set("exp", json!(exp as f64 + 0.5))),
            INVALID,
        ),
        ("exp null", signed(&set("exp", Value::Null)), INVALID),
        ("exp missing", signed(&without("exp")), INVALID),
        (
            "iat as a float string",
            signed(&set("iat", json!(format!("{iat}.5")))),
            INVALID,
        ),
        ("iat missing", signed(&without("iat")), INVALID),
        (
            "nbf as a string",
            signed(&set("nbf", json!(iat.to_string()))),
            INVALID,
        ),
        ("sub as a number", signed(&set("sub", json!(42))), INVALID),
        ("sub missing", signed(&without("sub")), INVALID),
        ("sid missing", signed(&without("sid")), INVALID),
        ("sid as a number", signed(&set("sid", json!(7))), INVALID),
        ("jti as a number", signed(&set("jti", json!(7))), INVALID),
        (
            "client_id as a number",
            signed(&set("client_id", json!(7))),
            INVALID,
        ),
        (
            "scope as an array",
            signed(&set("scope", json!(["admin"]))),
            INVALID,
        ),
        (
            "claims an array",
            signed(&json!([v.claims.clone()])),
            INVALID,
        ),
        ("claims a string", signed(&json!("alice")), INVALID),
        // Sessions that are not alice's.
        // Only the signing key could make one; the server reads a missing session as
        // one that ended (its owner was deleted, or it was purged).
        (
            "a made-up sid",
            signed(&set("sid", json!(uuid::Uuid::now_v7().to_string()))),
            REVOKED,
        ),
        ("bob's sid", signed(&set("sid", json!(bob_sid))), NOT_THEIRS),
        (
            "the admin's sub in alice's session",
            signed(&set("sub", json!(admin_id))),
            NOT_THEIRS,
        ),
        (
            "an unknown sub",
            signed(&set("sub", json!(uuid::Uuid::now_v7().to_string()))),
            NOT_THEIRS,
        ),
        // Time.
        (
            "nbf in the future",
            signed(&set("nbf", json!(now + 3600))),
            INVALID,
        ),
        (
            "iat in the future",
            signed(&set("iat", json!(now + 3600))),
            INVALID,
        ),
        (
            "exp in the past",
            signed(&edited(&v.claims, |c| {
                c.insert("iat".into(), json!(now - ACCESS_TTL - 1));
                c.insert("nbf".into(), json!(now - ACCESS_TTL - 1));
                c.insert("exp".into(), json!(now - 1));
            })),
            EXPIRED,
        ),
        // Size.
        (
            "very long (over 8 KiB)",
            signed(&set("pad", json!("x".repeat(9 * 1024)))),
            TOO_LONG,
        ),
    ];
    assert_all_refused(&server, &rows).await;
    assert_allowed(&server, &v.token, "orders:read", "genuine, afterwards").await;
    server.stop().await;
}

/// Expiry by the clock: 599 s in a token works, 601 s in it is `expired`; a forged or
/// tampered expired token is still just invalid.
async fn expiry(backend: Backend) {
    let server = TestServer::start(backend).await;
    let v = victim(&server).await;
    let (h, p, s) = segments(&v.token);

    server.clock.advance(ACCESS_TTL - 1);
    assert_allowed(&server, &v.token, "orders:read", "1 s before exp").await;
    server.clock.advance(2);

    let longer = edited(&v.claims, |c| {
        let exp = c["exp"].as_i64().expect("exp");
        c.insert("exp".into(), json!(exp + 86_400));
    });
    let now = server.clock.now();
    let rows: Vec<Row> = vec![
        ("expired by the clock", v.token.clone(), EXPIRED),
        (
            "expired, re-signed by the server's key",
            sign_claims(&server, &v.claims),
            EXPIRED,
        ),
        (
            "expired, signed by another key",
            ed25519_signed(&attacker_key(), &v.header, &v.claims),
            INVALID,
        ),
        (
            "expired, exp pushed out, signature kept",
            format!("{h}.{}.{s}", b64_json(&longer)),
            INVALID,
        ),
        (
            "expired, alg none",
            format!(
                "{}.{p}.",
                b64_json(&json!({"alg": "none", "typ": "at+jwt", "kid": v.kid}))
            ),
            INVALID,
        ),
        (
            "expired with wrong iss",
            sign_claims(
                &server,
                &edited(&v.claims, |c| {
                    c.insert("iss".into(), json!("evil"));
                }),
            ),
            EXPIRED_OR_INVALID,
        ),
    ];
    assert_all_refused(&server, &rows).await;

    // Re-signing the same claims with a fresh exp is accepted again: expiry, not the
    // session, was the reason.
    let renewed = sign_claims(
        &server,
        &edited(&v.claims, |c| {
            c.insert("iat".into(), json!(now));
            c.insert("nbf".into(), json!(now));
            c.insert("exp".into(), json!(now + ACCESS_TTL));
        }),
    );
    assert_allowed(
        &server,
        &renewed,
        "orders:read",
        "re-signed with a fresh exp",
    )
    .await;
    server.stop().await;
}

on_both_backends!(forged_tokens, signed_bad_claims, expiry);
