//! Signing keys: the JWKS verifying issued tokens, and key rotation.

use crate::oauth_support::*;
use crate::on_both_backends;
use crate::support::*;
use identityd::api::pb;
use identityd::domain::clock::Clock;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

/// The JWKS publishes the key that verifies issued tokens, and a standard JWT library
/// accepts them with it.
async fn jwks_verifies_tokens(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "alice", &["orders:read"]).await;
    let (billing, secret) = integration(&server, "billing", &["orders:read"]).await;
    let user_token = login(&server, "alice", PASSWORD).await.access_token;
    let client = client_token(&server, &billing.client_id, &secret)
        .await
        .expect("token")
        .access_token;

    let keys = jwks(&server).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = &keys[0];
    assert_eq!(
        (
            key.kty.as_str(),
            key.crv.as_str(),
            key.alg.as_str(),
            key.r#use.as_str()
        ),
        ("OKP", "Ed25519", "EdDSA", "sig")
    );
    assert_eq!(
        unb64(&key.x).map(|b| b.len()),
        Some(32),
        "an Ed25519 public key in base64url"
    );
    for token in [&user_token, &client] {
        assert_eq!(kid_of(token), key.kid);
        assert!(verifies(token, &key.x), "the JWKS key verifies the token");
    }
    let (h, p, s) = segments(&user_token);
    let mut tampered_sig = s.into_bytes();
    tampered_sig[0] = if tampered_sig[0] == b'A' { b'B' } else { b'A' };
    let tampered = format!(
        "{h}.{p}.{}",
        String::from_utf8(tampered_sig).expect("ascii")
    );
    assert!(!verifies(&tampered, &key.x), "the helper really verifies");

    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["identityd"]);
    validation.set_issuer(&["identityd"]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    // The server's clock is not the wall clock.
    validation.validate_exp = false;
    let decoded = jsonwebtoken::decode::<Value>(
        &user_token,
        &DecodingKey::from_ed_components(&key.x).expect("x"),
        &validation,
    )
    .expect("a standard JWT library accepts the token");
    assert_eq!(decoded.header.kid.as_deref(), Some(key.kid.as_str()));
    server.stop().await;
}

/// A rotated key signs new tokens; the old one keeps verifying until its tokens expire.
async fn signing_key_rotation(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "alice", &["orders:read"]).await;
    let mut admin = server.admin().await;
    let before = login(&server, "alice", PASSWORD).await.access_token;
    let old_kid = kid_of(&before);

    let listed = admin
        .list_signing_keys(as_admin(&server, pb::ListSigningKeysRequest {}))
        .await
        .expect("list keys")
        .into_inner()
        .keys;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (
            listed[0].kid.as_str(),
            listed[0].algorithm.as_str(),
            listed[0].signing,
            listed[0].retired_at,
            listed[0].published_until
        ),
        (old_kid.as_str(), "EdDSA", true, 0, 0)
    );

    server.clock.advance(10);
    let rotated_at = server.clock.now();
    let new_key = admin
        .rotate_signing_key(as_admin(&server, pb::RotateSigningKeyRequest {}))
        .await
        .expect("rotate")
        .into_inner();
    assert_ne!(new_key.kid, old_kid);
    assert_eq!(
        (
            new_key.algorithm.as_str(),
            new_key.signing,
            new_key.created_at
        ),
        ("EdDSA", true, rotated_at)
    );

    let after = login(&server, "alice", PASSWORD).await.access_token;
    assert_eq!(kid_of(&after), new_key.kid);
    let (billing, secret) = integration(&server, "billing", &["orders:read"]).await;
    let client = client_token(&server, &billing.client_id, &secret)
        .await
        .expect("token")
        .access_token;
    assert_eq!(kid_of(&client), new_key.kid);
    assert_allowed(&server, &before, "orders:read", "signed by the old key").await;
    assert_allowed(&server, &after, "orders:read", "signed by the new key").await;

    let keys = jwks(&server).await;
    let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(
        kids,
        [new_key.kid.as_str(), old_kid.as_str()],
        "newest first"
    );
    assert!(verifies(&before, &keys[1].x) && !verifies(&before, &keys[0].x));
    assert!(verifies(&after, &keys[0].x) && !verifies(&after, &keys[1].x));

    let listed = admin
        .list_signing_keys(as_admin(&server, pb::ListSigningKeysRequest {}))
        .await
        .expect("list keys")
        .into_inner()
        .keys;
    let signing: Vec<&str> = listed
        .iter()
        .filter(|k| k.signing)
        .map(|k| k.kid.as_str())
        .collect();
    assert_eq!(signing, [new_key.kid.as_str()], "{listed:?}");
    let old = listed
        .iter()
        .find(|k| k.kid == old_kid)
        .expect("the old key is still listed");
    assert_eq!(old.retired_at, rotated_at, "{old:?}");
    let before_exp = claims_of(&before)["exp"].as_i64().expect("exp");
    assert!(old.published_until >= before_exp, "{old:?}");

    // Once the last token the old key signed has expired, the key is no longer
    // published. (GetJwks serves a key set reloaded every 30 s of wall-clock time, so it
    // cannot follow the test's manual clock; ListSigningKeys reads storage.)
    server
        .clock
        .advance(old.published_until - server.clock.now() + 1);
    let listed = admin
        .list_signing_keys(as_admin(&server, pb::ListSigningKeysRequest {}))
        .await
        .expect("list keys")
        .into_inner()
        .keys;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let later = login(&server, "alice", PASSWORD).await.access_token;
    assert_allowed(&server, &later, "orders:read", "the new key still signs").await;
    server.stop().await;
}

on_both_backends!(jwks_verifies_tokens, signing_key_rotation,);
