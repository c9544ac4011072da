//! The check cache for access tokens: the signature is verified once per distinct token,
//! repeated checks are answered from memory, and neither expiry nor revocation is
//! outrun by a cached entry.

use crate::oauth_support::*;
use crate::on_both_backends;
use crate::support::*;

async fn warm_checks_hit_the_cache(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "carol", &["orders:read"]).await;
    let token = login(&server, "carol", PASSWORD).await.access_token;

    let before = server.cache.stats();
    for _ in 0..5 {
        assert_verdict(
            &server.check(&bearer(&token), &["orders:read"]).await,
            200,
            "ok",
        );
    }
    let after = server.cache.stats();
    // One miss (verify and load), then hits only.
    assert_eq!(after.misses - before.misses, 1, "{before:?} {after:?}");
    assert_eq!(after.hits - before.hits, 4, "{before:?} {after:?}");

    // The other scheme is its own entry: the principal reports the scheme it came with.
    let as_jwt = server.check(&jwt(&token), &["orders:read"]).await;
    assert_eq!(as_jwt.principal.expect("principal").scheme, "JWT");
    let again = server.check(&bearer(&token), &["orders:read"]).await;
    assert_eq!(again.principal.expect("principal").scheme, "Bearer");
    server.stop().await;
}

async fn cached_tokens_still_expire_and_revoke(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "dave", &["orders:read"]).await;
    let first = login(&server, "dave", PASSWORD).await;
    let second = login(&server, "dave", PASSWORD).await;
    for token in [&first.access_token, &second.access_token] {
        assert_verdict(
            &server.check(&bearer(token), &["orders:read"]).await,
            200,
            "ok",
        );
    }

    // Revoking one session clears its cached token at once; the other stays warm.
    revoke_plain(&server, &first.refresh_token, "refresh_token")
        .await
        .expect("revoke");
    let revoked = server
        .check(&bearer(&first.access_token), &["orders:read"])
        .await;
    assert_verdict(&revoked, 401, "revoked");
    let hits = server.cache.stats().hits;
    assert_verdict(
        &server
            .check(&bearer(&second.access_token), &["orders:read"])
            .await,
        200,
        "ok",
    );
    assert_eq!(server.cache.stats().hits, hits + 1, "still cached");

    // A cached token is refused the moment its exp passes.
    server.clock.advance(600);
    let expired = server
        .check(&bearer(&second.access_token), &["orders:read"])
        .await;
    assert_verdict(&expired, 401, "expired");
    server.stop().await;
}

on_both_backends!(
    warm_checks_hit_the_cache,
    cached_tokens_still_expire_and_revoke
);
