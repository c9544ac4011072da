//! The audit log: every change and every login is recorded once, with who, what, to
//! what, from where and how it ended; never a secret; never a change that did not
//! happen; listed newest first with filters and paging; purged after the retention.

use crate::app_support::*;
use crate::oauth_support::*;
use crate::on_both_backends;
use crate::support::*;
use identityd::api::pb;
use identityd::domain::clock::Clock;
use serde_json::{Value, json};
use std::collections::HashSet;
use tonic::{Code, Request, Status};

/// Where every test call comes from: the gRPC peer of every call, and the source of the
/// calls whose caller is the client (Admin, RegenerateApiToken).
const LOCAL: &str = "127.0.0.1";
const BUILTIN_CATALOG: &str = include_str!("../../src/defaults/scope_catalog.txt");
/// The time every test server's manual clock starts at.
const START: i64 = 1_800_000_000;

// ---------------------------------------------------------------------------------------
// Helpers

/// Admin.ListAuditEvents with `authorization`.
async fn list_events(
    server: &TestServer,
    authorization: &str,
    request: pb::ListAuditEventsRequest,
) -> Result<pb::ListAuditEventsResponse, Status> {
    admin_call(server, authorization, request, async |a, r| {
        a.list_audit_events(r).await
    })
    .await
}

/// Every event matching `filter` (its paging fields ignored), newest first, walking
/// every page as the bootstrap admin.
async fn all_events(
    server: &TestServer,
    filter: pb::ListAuditEventsRequest,
) -> Vec<pb::AuditEvent> {
    let mut events = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListAuditEventsRequest {
            page_size: 1000,
            page_token,
            ..filter.clone()
        };
        let page = list_events(server, &server.admin_auth, request)
            .await
            .expect("ListAuditEvents");
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return events;
        }
        page_token = page.next_page_token;
    }
}

/// Every event, newest first.
async fn everything(server: &TestServer) -> Vec<pb::AuditEvent> {
    all_events(server, pb::ListAuditEventsRequest::default()).await
}

/// `request` with an `x-request-id`.
fn with_request_id<T>(mut request: Request<T>, id: &str) -> Request<T> {
    request
        .metadata_mut()
        .insert("x-request-id", id.parse().expect("ASCII metadata"));
    request
}

/// An expected event: everything but its id, time and request id.
#[derive(Debug, Clone, PartialEq)]
struct Want {
    actor: String,
    actor_name: String,
    credential: String,
    action: String,
    target: String,
    outcome: String,
    reason: String,
    source: String,
    peer: String,
    details: Value,
}

impl Want {
    /// A successful event of `actor` from the local test client, which is both the peer
    /// and the end client (as for Admin calls), action still to say.
    fn by(actor: &str, actor_name: &str, credential: &str) -> Self {
        Self {
            actor: actor.into(),
            actor_name: actor_name.into(),
            credential: credential.into(),
            action: String::new(),
            target: String::new(),
            outcome: "success".into(),
            reason: String::new(),
            source: LOCAL.into(),
            peer: LOCAL.into(),
            details: json!({}),
        }
    }

    /// The same, of an Identity RPC called from the local test client without a
    /// `client_address`: the end client is unknown, the peer is still recorded.
    fn unknown_client(self) -> Self {
        self.from("")
    }

    /// This actor doing `action` to `target`, with exactly `details`.
    fn did(&self, action: &str, target: impl Into<String>, details: Value) -> Self {
        Self {
            action: action.into(),
            target: target.into(),
            details,
            ..self.clone()
        }
    }

    /// The same, refused for `reason`.
    fn failed(self, reason: &str) -> Self {
        Self {
            outcome: "failure".into(),
            reason: reason.into(),
            ..self
        }
    }

    /// The same, refused unchecked by a guessing limit.
    fn limited(self) -> Self {
        Self {
            outcome: "limited".into(),
            reason: String::new(),
            ..self
        }
    }

    /// The same, for the end client `source`.
    fn from(self, source: &str) -> Self {
        Self {
            source: source.into(),
            ..self
        }
    }

    /// The same, with the request itself coming from `peer`.
    fn via(self, peer: &str) -> Self {
        Self {
            peer: peer.into(),
            ..self
        }
    }

    /// What `event` says, its details parsed.
    fn of(event: &pb::AuditEvent) -> Self {
        let details: Value = serde_json::from_str(&event.details)
            .unwrap_or_else(|e| panic!("details are JSON ({e}): {event:?}"));
        assert!(details.is_object(), "details are a JSON object: {event:?}");
        Self {
            actor: event.actor.clone(),
            actor_name: event.actor_name.clone(),
            credential: event.credential.clone(),
            action: event.action.clone(),
            target: event.target.clone(),
            outcome: event.outcome.clone(),
            reason: event.reason.clone(),
            source: event.source.clone(),
            peer: event.peer.clone(),
            details,
        }
    }
}

/// Follows the log: what each step added to it.
struct Log<'a> {
    server: &'a TestServer,
    /// The newest event already looked at.
    seen: i64,
}

impl<'a> Log<'a> {
    async fn new(server: &'a TestServer) -> Self {
        let seen = everything(server).await.first().map_or(0, |e| e.id);
        Self { server, seen }
    }

    /// The events since the last look, oldest first.
    async fn fresh(&mut self) -> Vec<pb::AuditEvent> {
        let seen = self.seen;
        let mut fresh: Vec<_> = everything(self.server)
            .await
            .into_iter()
            .take_while(|e| e.id > seen)
            .collect();
        fresh.reverse();
        if let Some(last) = fresh.last() {
            self.seen = last.id;
        }
        fresh
    }

    /// Asserts that exactly `want` was recorded since the last look, at the clock's
    /// time and with a request id; returns it.
    async fn one(&mut self, want: Want) -> pb::AuditEvent {
        let mut events = self.of_one_request(std::slice::from_ref(&want)).await;
        events.pop().expect("one event")
    }

    /// Asserts that exactly `wants` were recorded since the last look, in that order, at
    /// the clock's time, all with one request id (they are of one request); returns
    /// them.
    async fn of_one_request(&mut self, wants: &[Want]) -> Vec<pb::AuditEvent> {
        let fresh = self.fresh().await;
        assert_eq!(
            fresh.iter().map(Want::of).collect::<Vec<_>>(),
            wants,
            "{fresh:#?}"
        );
        for event in &fresh {
            assert_eq!(event.time, self.server.clock.now(), "{event:?}");
            assert!(!event.request_id.is_empty(), "a request id: {event:?}");
            assert_eq!(
                event.request_id, fresh[0].request_id,
                "one request: {fresh:#?}"
            );
        }
        fresh
    }

    /// Asserts nothing was recorded since the last look.
    async fn none(&mut self, what: &str) {
        let fresh = self.fresh().await;
        assert!(fresh.is_empty(), "{what} recorded {fresh:#?}");
    }
}

/// The credential id a principal reports for `authorization`.
async fn credential_id(server: &TestServer, authorization: &str) -> String {
    let answer = authenticate(server, authorization).await;
    match answer.principal {
        Some(principal) => principal.credential_id,
        None => panic!("{authorization:?} does not authenticate: {answer:?}"),
    }
}

/// The bootstrap admin as events name it.
async fn admin_actor(server: &TestServer) -> Want {
    let id = admin_user_id(server).await;
    let credential = credential_id(server, &server.admin_auth).await;
    assert!(credential.starts_with("api_token:"), "{credential}");
    Want::by(&format!("user:{id}"), "admin", &credential)
}

/// The signing keys, newest first.
async fn signing_keys(server: &TestServer) -> Vec<pb::SigningKey> {
    admin_call(
        server,
        &server.admin_auth,
        pb::ListSigningKeysRequest {},
        async |a, r| a.list_signing_keys(r).await,
    )
    .await
    .expect("ListSigningKeys")
    .keys
}

/// A RefreshToken of the public client.
fn refresh_request(refresh_token: &str, csrf_token: &str) -> pb::RefreshTokenRequest {
    pb::RefreshTokenRequest {
        refresh_token: refresh_token.into(),
        csrf_token: csrf_token.into(),
        ..Default::default()
    }
}

/// Asserts `name` is a pseudonym: `#` and 24 lower-case hex digits.
#[track_caller]
fn assert_pseudonym(name: &str) {
    let digits = name.strip_prefix('#').unwrap_or_default();
    assert!(
        digits.len() == 24
            && digits
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "a pseudonym: {name:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Every action

/// Every change and every login, driven through the gRPC API, records exactly one event
/// with the right actor, credential, action, target, outcome, reason, source, peer,
/// time, request id and details; validate-only document replacements record nothing.
/// Until a login succeeds its events are by `anonymous`; a login naming no account is
/// recorded under a pseudonym, never as typed.
async fn every_action_is_recorded_exactly(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = admin_actor(&server).await;
    // identityd by itself: no request, so neither an end client nor a peer.
    let system = Want::by("system", "", "").from("").via("");

    // Startup: the first admin, then the first signing key, both by identityd itself.
    let startup: Vec<_> = everything(&server).await.into_iter().rev().collect();
    let kid = signing_keys(&server).await[0].kid.clone();
    assert_eq!(
        startup.iter().map(Want::of).collect::<Vec<_>>(),
        [
            system.did("user.bootstrap", "user:admin", json!({"roles": ["admin"]})),
            system.did("key.create", format!("key:{kid}"), json!({})),
        ],
        "{startup:#?}"
    );
    for event in &startup {
        assert_eq!(event.time, START, "{event:?}");
        assert!(!event.request_id.is_empty(), "{event:?}");
        assert_eq!(
            (event.source.as_str(), event.peer.as_str()),
            ("", ""),
            "{event:?}"
        );
    }
    let mut log = Log::new(&server).await;
    let mut admin_api = server.admin().await;
    let mut identity = server.identity().await;

    // Users, with a request id of our own on the first call.
    server.clock.advance(1);
    let request = as_admin(
        &server,
        pb::CreateUserRequest {
            username: "Alice".into(),
            email: "Alice@Example.com".into(),
            ..Default::default()
        },
    );
    let alice = admin_api
        .create_user(with_request_id(request, "req-audit-1"))
        .await
        .expect("create alice")
        .into_inner();
    let created = log
        .one(admin.did(
            "user.create",
            "user:alice",
            json!({"email": "alice@example.com", "is_staff": false, "is_customer": true,
                   "roles": []}),
        ))
        .await;
    assert_eq!(created.request_id, "req-audit-1");
    // An Admin caller is the client: the peer is both source and peer.
    assert_eq!(
        (created.source.as_str(), created.peer.as_str()),
        (LOCAL, LOCAL)
    );

    server.clock.advance(1);
    update_user(
        &server,
        pb::UpdateUserRequest {
            username: "alice".into(),
            email: Some("alice@example.org".into()),
            is_staff: Some(true),
            ..Default::default()
        },
    )
    .await
    .expect("update alice");
    log.one(admin.did(
        "user.update",
        "user:alice",
        json!({"email": "alice@example.org", "is_staff": true}),
    ))
    .await;

    server.clock.advance(1);
    set_password(&server, "alice", PASSWORD)
        .await
        .expect("set password");
    log.one(admin.did("user.set_password", "user:alice", json!({})))
        .await;

    server.clock.advance(1);
    let alice_token = server.enable_api_access("alice").await;
    log.one(admin.did("user.api_access_on", "user:alice", json!({})))
        .await;

    // A wrong API token for alice is counted against her token's guessing limit, and
    // recorded nowhere.
    let alice_basic = basic("alice", &alice_token);
    let alice_credential = credential_id(&server, &alice_basic).await;
    let alice_id = format!("user:{}", alice.id);
    server.clock.advance(1);
    let wrong_token = format!("idt_api_{}", "w".repeat(43));
    assert!(
        authenticate(&server, &basic("alice", &wrong_token))
            .await
            .principal
            .is_none()
    );
    log.none("a wrong API token").await;
    let counted = guess_limits(&server, "api_token", "alice").await;
    assert_eq!(
        counted
            .iter()
            .map(|l| (l.source.as_str(), l.failures))
            .collect::<Vec<_>>(),
        [("", 1)],
        "{counted:?}"
    );

    // Alice regenerates her own API token: she is the actor, with her token. It also
    // clears her token's guessing limits, in the same request: one request id.
    server.clock.advance(1);
    identity
        .regenerate_api_token(authed(
            &alice_basic,
            pb::RegenerateApiTokenRequest::default(),
        ))
        .await
        .expect("regenerate own token");
    let alice_api = Want::by(&alice_id, "alice", &alice_credential);
    log.of_one_request(&[
        alice_api.did("user.api_token_regenerate", "user:alice", json!({})),
        alice_api.did("limit.clear", "api_token:alice", json!({"counters": 1})),
    ])
    .await;
    let left = guess_limits(&server, "api_token", "alice").await;
    assert!(left.is_empty(), "{left:?}");

    // Roles.
    server.clock.advance(1);
    create_role(&server, "auditors", &["orders:read", "audit:read"]).await;
    log.one(admin.did(
        "role.create",
        "role:auditors",
        json!({"permissions": ["audit:read", "orders:read"]}),
    ))
    .await;

    server.clock.advance(1);
    admin_api
        .assign_role(as_admin(
            &server,
            pb::AssignRoleRequest {
                username: "alice".into(),
                role: "auditors".into(),
            },
        ))
        .await
        .expect("assign role");
    log.one(admin.did(
        "user.assign_role",
        "user:alice",
        json!({"role": "auditors"}),
    ))
    .await;

    server.clock.advance(1);
    set_role_permissions(&server, "auditors", &["orders:write", "orders:read"]).await;
    log.one(admin.did(
        "role.set_permissions",
        "role:auditors",
        json!({"permissions": ["orders:read", "orders:write"]}),
    ))
    .await;

    server.clock.advance(1);
    unassign_role(&server, "alice", "auditors").await;
    log.one(admin.did(
        "user.unassign_role",
        "user:alice",
        json!({"role": "auditors"}),
    ))
    .await;

    server.clock.advance(1);
    admin_api
        .delete_role(as_admin(
            &server,
            pb::DeleteRoleRequest {
                name: "auditors".into(),
            },
        ))
        .await
        .expect("delete role");
    log.one(admin.did("role.delete", "role:auditors", json!({})))
        .await;

    // Logins. The first passes the end client's address and a request id; the others
    // pass none, so their end client is unknown. Until a login succeeds, it is by
    // nobody proven: anonymous, presenting a password.
    let alice_login = Want::by(&alice_id, "alice", "password").unknown_client();
    let anonymous_login = Want::by("anonymous", "", "password").unknown_client();
    server.clock.advance(1);
    let request = Request::new(pb::IssueTokenRequest {
        client_address: "192.0.2.10".into(),
        ..password_grant("alice", PASSWORD)
    });
    let first = identity
        .issue_token(with_request_id(request, "req-login-1"))
        .await
        .expect("login")
        .into_inner();
    let logged_in = log
        .one(
            alice_login
                .did(
                    "login",
                    "user:alice",
                    json!({"grant": "password", "session": first.session_id, "scope": "",
                           "client_id": "public"}),
                )
                .from("192.0.2.10"),
        )
        .await;
    assert_eq!(logged_in.request_id, "req-login-1");
    assert_eq!(
        (logged_in.source.as_str(), logged_in.peer.as_str()),
        ("192.0.2.10", LOCAL)
    );

    server.clock.advance(1);
    assert_oauth_error(
        try_login(&server, "alice", "not the password").await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    log.one(
        anonymous_login
            .did("login", "user:alice", json!({"grant": "password"}))
            .failed("wrong_password"),
    )
    .await;

    // A name that is no account's is recorded under its pseudonym, a keyed digest the
    // test cannot compute: read from the event, and found again in the counters.
    server.clock.advance(1);
    assert_oauth_error(
        try_login(&server, "Nobody", PASSWORD).await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    let fresh = log.fresh().await;
    assert_eq!(fresh.len(), 1, "{fresh:#?}");
    let pseudonym = fresh[0]
        .target
        .strip_prefix("login:")
        .unwrap_or_else(|| panic!("a login target: {fresh:#?}"))
        .to_owned();
    assert_pseudonym(&pseudonym);
    let unknown_login = anonymous_login
        .did(
            "login",
            format!("login:{pseudonym}"),
            json!({"grant": "password"}),
        )
        .failed("unknown_user");
    assert_eq!(Want::of(&fresh[0]), unknown_login, "{fresh:#?}");
    assert_eq!(fresh[0].time, server.clock.now());
    let counted = guess_limits(&server, "password", &pseudonym).await;
    assert_eq!(
        counted
            .iter()
            .map(|l| (l.subject.as_str(), l.source.as_str(), l.failures))
            .collect::<Vec<_>>(),
        [(pseudonym.as_str(), "", 1)],
        "{counted:?}"
    );
    // The same name in another case is the same login name: the same pseudonym.
    server.clock.advance(1);
    assert_oauth_error(
        try_login(&server, "NOBODY", PASSWORD).await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    log.one(unknown_login).await;

    // Refresh, then the used refresh token again: the session ends as theft. Whoever
    // presents a used token is not known to be its owner.
    let refresher = Want::by(&alice_id, "alice", "refresh_token").unknown_client();
    let session = format!("session:{}", first.session_id);
    server.clock.advance(1);
    refresh(&server, &first.refresh_token, &first.csrf_token)
        .await
        .expect("refresh");
    log.one(refresher.did(
        "token.refresh",
        &session,
        json!({"scope": "", "client_id": "public"}),
    ))
    .await;

    server.clock.advance(1);
    assert_oauth_error(
        identity
            .refresh_token(refresh_request(&first.refresh_token, ""))
            .await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    log.one(
        Want::by("anonymous", "", "refresh_token")
            .unknown_client()
            .did("token.reuse", &session, json!({}))
            .failed("refresh_token_reused"),
    )
    .await;

    // A second login, revoked with its access token by whoever holds it.
    server.clock.advance(1);
    let second = login(&server, "alice", PASSWORD).await;
    log.one(alice_login.did(
        "login",
        "user:alice",
        json!({"grant": "password", "session": second.session_id, "scope": "",
               "client_id": "public"}),
    ))
    .await;
    server.clock.advance(1);
    revoke_plain(&server, &second.access_token, "")
        .await
        .expect("revoke");
    log.one(Want::by("anonymous", "", "").unknown_client().did(
        "token.revoke",
        format!("session:{}", second.session_id),
        json!({}),
    ))
    .await;

    // Apps and their tokens; one token revoked by Admin, one by its holder.
    server.clock.advance(1);
    let app = create_app(&server, "shop", &["orders:read"], "alice").await;
    let app_target = format!("app:{}", app.id);
    log.one(admin.did(
        "app.create",
        &app_target,
        json!({"name": "shop", "permissions": ["orders:read"], "attached_user": "alice"}),
    ))
    .await;

    server.clock.advance(1);
    update_app(
        &server,
        pb::UpdateAppRequest {
            name: Some("storefront".into()),
            permissions: Some(pb::PermissionList {
                permissions: strings(&["orders:write", "orders:read"]),
            }),
            ..app_update(&app.id)
        },
    )
    .await
    .expect("update app");
    log.one(admin.did(
        "app.update",
        &app_target,
        json!({"name": "storefront", "permissions": ["orders:read", "orders:write"]}),
    ))
    .await;

    let mut app_tokens = Vec::new();
    for name in ["main", "spare", "ci"] {
        server.clock.advance(1);
        let (listing, token) = create_app_token(&server, &app.id, name).await;
        log.one(admin.did(
            "app_token.create",
            format!("app_token:{}", listing.id),
            json!({"app_id": app.id, "name": name, "last4": listing.last4}),
        ))
        .await;
        app_tokens.push((listing, token));
    }

    server.clock.advance(1);
    revoke_app_token(&server, &app.id, &app_tokens[0].0.id).await;
    log.one(admin.did(
        "app_token.revoke",
        format!("app_token:{}", app_tokens[0].0.id),
        json!({"app_id": app.id}),
    ))
    .await;

    server.clock.advance(1);
    revoke_plain(&server, &app_tokens[1].1, "")
        .await
        .expect("revoke app token");
    log.one(Want::by("anonymous", "", "").unknown_client().did(
        "app_token.revoke",
        format!("app_token:{}", app_tokens[1].0.id),
        json!({"app_id": app.id}),
    ))
    .await;

    // A non-expiring login, then everything of alice's ends at once.
    server.clock.advance(1);
    let lasting = login_with_scope(&server, "alice", "no_expiry").await;
    log.one(alice_login.did(
        "login",
        "user:alice",
        json!({"grant": "password", "session": lasting.session_id, "scope": "no_expiry",
               "client_id": "public"}),
    ))
    .await;

    server.clock.advance(1);
    let revoked = admin_api
        .revoke_user_credentials(as_admin(
            &server,
            pb::RevokeUserCredentialsRequest {
                username: "alice".into(),
            },
        ))
        .await
        .expect("revoke credentials")
        .into_inner();
    assert_eq!(
        (
            revoked.sessions_revoked,
            revoked.api_token_revoked,
            revoked.app_tokens_revoked
        ),
        (1, true, 1)
    );
    log.one(admin.did(
        "user.revoke_credentials",
        "user:alice",
        json!({"sessions_revoked": 1, "api_token_revoked": true, "app_tokens_revoked": 1}),
    ))
    .await;

    server.clock.advance(1);
    delete_app(&server, &app.id).await;
    log.one(admin.did("app.delete", &app_target, json!({})))
        .await;

    server.clock.advance(1);
    admin_api
        .set_api_access(as_admin(
            &server,
            pb::SetApiAccessRequest {
                username: "alice".into(),
                enabled: false,
            },
        ))
        .await
        .expect("API access off");
    log.one(admin.did("user.api_access_off", "user:alice", json!({})))
        .await;

    server.clock.advance(1);
    delete_user(&server, "alice").await;
    log.one(admin.did("user.delete", "user:alice", json!({})))
        .await;

    // An integration: its logins, and a change it makes through Admin itself.
    server.clock.advance(1);
    let (billing, secret) = integration(&server, "billing", &["roles:write", "orders:read"]).await;
    let client_id = billing.client_id.clone();
    let billing_target = format!("integration:{client_id}");
    log.one(admin.did(
        "integration.create",
        &billing_target,
        json!({"name": "billing", "permissions": ["orders:read", "roles:write"]}),
    ))
    .await;

    server.clock.advance(1);
    let granted = client_token(&server, &client_id, &secret)
        .await
        .expect("client_credentials");
    // The login names the integration by its name, as its Admin calls below do.
    log.one(
        Want::by(
            &format!("integration:{}", billing.id),
            "billing",
            &format!("client_secret:{client_id}"),
        )
        .unknown_client()
        .did(
            "login",
            &billing_target,
            json!({"grant": "client_credentials", "session": granted.session_id, "scope": "",
                   "client_id": client_id}),
        ),
    )
    .await;

    let billing_bearer = bearer(&granted.access_token);
    let billing_credential = credential_id(&server, &billing_bearer).await;
    server.clock.advance(1);
    admin_call(
        &server,
        &billing_bearer,
        pb::CreateRoleRequest {
            name: "ops".into(),
            description: String::new(),
            permissions: strings(&["orders:read"]),
        },
        async |a, r| a.create_role(r).await,
    )
    .await
    .expect("the integration creates a role");
    log.one(
        Want::by(
            &format!("integration:{}", billing.id),
            "billing",
            &billing_credential,
        )
        .did(
            "role.create",
            "role:ops",
            json!({"permissions": ["orders:read"]}),
        ),
    )
    .await;

    server.clock.advance(1);
    admin_api
        .rotate_integration_secret(as_admin(
            &server,
            pb::RotateIntegrationSecretRequest {
                client_id: client_id.clone(),
            },
        ))
        .await
        .expect("rotate secret");
    log.one(admin.did("integration.rotate_secret", &billing_target, json!({})))
        .await;

    server.clock.advance(1);
    assert_oauth_error(
        client_token(&server, &client_id, &secret).await,
        Code::Unauthenticated,
        "invalid_client",
    );
    log.one(
        Want::by("anonymous", "", &format!("client_secret:{client_id}"))
            .unknown_client()
            .did(
                "login",
                &billing_target,
                json!({"grant": "client_credentials"}),
            )
            .failed("wrong_client_secret"),
    )
    .await;

    for (active, action) in [(false, "integration.disable"), (true, "integration.enable")] {
        server.clock.advance(1);
        admin_api
            .set_integration_active(as_admin(
                &server,
                pb::SetIntegrationActiveRequest {
                    client_id: client_id.clone(),
                    active,
                },
            ))
            .await
            .expect("set integration active");
        log.one(admin.did(action, &billing_target, json!({}))).await;
    }

    server.clock.advance(1);
    admin_api
        .set_integration_permissions(as_admin(
            &server,
            pb::SetIntegrationPermissionsRequest {
                client_id: client_id.clone(),
                permissions: strings(&["orders:write"]),
            },
        ))
        .await
        .expect("set integration permissions");
    log.one(admin.did(
        "integration.set_permissions",
        &billing_target,
        json!({"permissions": ["orders:write"]}),
    ))
    .await;

    server.clock.advance(1);
    admin_api
        .delete_integration(as_admin(
            &server,
            pb::DeleteIntegrationRequest {
                client_id: client_id.clone(),
            },
        ))
        .await
        .expect("delete integration");
    log.one(admin.did("integration.delete", &billing_target, json!({})))
        .await;

    // Signing keys: the detail is when the retired key leaves the JWKS.
    server.clock.advance(1);
    let rotated = admin_api
        .rotate_signing_key(as_admin(&server, pb::RotateSigningKeyRequest {}))
        .await
        .expect("rotate key")
        .into_inner();
    let retired = signing_keys(&server)
        .await
        .into_iter()
        .find(|k| k.kid == kid)
        .expect("the retired key is still published");
    assert!(
        retired.published_until > server.clock.now() + ACCESS_TTL,
        "published until its last token expired: {retired:?}"
    );
    log.one(admin.did(
        "key.rotate",
        format!("key:{}", rotated.kid),
        json!({"retired_published_until": retired.published_until}),
    ))
    .await;

    // Documents: validate-only changes nothing and records nothing.
    let catalog = format!("{BUILTIN_CATALOG}\naudit_extra orders:read\n");
    let policy =
        "# replaced through Admin\ndefault authenticated\nGET /api/v1/orders/** orders:read\n";
    server.clock.advance(1);
    replace_catalog(&server, &catalog, true)
        .await
        .expect("validate catalog");
    log.none("a validate-only catalog").await;
    let replaced = replace_catalog(&server, &catalog, false)
        .await
        .expect("replace catalog");
    log.one(admin.did(
        "document.replace",
        "document:scope_catalog",
        json!({"version": replaced.version}),
    ))
    .await;

    server.clock.advance(1);
    for validate_only in [true, false] {
        let replaced = admin_api
            .replace_route_policy(as_admin(
                &server,
                pb::ReplaceRoutePolicyRequest {
                    text: policy.into(),
                    validate_only,
                },
            ))
            .await
            .expect("replace route policy")
            .into_inner();
        if validate_only {
            log.none("a validate-only route policy").await;
        } else {
            log.one(admin.did(
                "document.replace",
                "document:route_policy",
                json!({"version": replaced.version}),
            ))
            .await;
        }
    }

    // Without an x-request-id, each request got a request id of its own, shared by its
    // events: the regeneration's two events have one.
    let all = everything(&server).await;
    let generated: Vec<_> = all
        .iter()
        .map(|e| e.request_id.as_str())
        .filter(|id| !["req-audit-1", "req-login-1"].contains(id))
        .collect();
    assert_eq!(generated.len(), all.len() - 2);
    assert_eq!(
        generated.iter().collect::<HashSet<_>>().len(),
        generated.len() - 1,
        "request ids are not reused across requests: {generated:?}"
    );
    // Every event of a gRPC call names its peer; identityd's own at startup none.
    for event in &all {
        let peer = if event.actor == "system" { "" } else { LOCAL };
        assert_eq!(event.peer, peer, "{event:?}");
    }
    assert_eq!(all.iter().filter(|e| e.actor == "system").count(), 2);
    // The typed login name is in no event, in any case.
    for event in &all {
        let text = format!("{event:?}").to_lowercase();
        assert!(
            !text.contains("nobody"),
            "the typed name is stored: {event:?}"
        );
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Guessing limits

/// Admin.ClearGuessLimit as the bootstrap admin: whether there was such a counter.
async fn clear_guess_limit(server: &TestServer, secret: &str, subject: &str, source: &str) -> bool {
    let request = pb::ClearGuessLimitRequest {
        secret: secret.into(),
        subject: subject.into(),
        source: source.into(),
    };
    admin_call(server, &server.admin_auth, request, async |a, r| {
        a.clear_guess_limit(r).await
    })
    .await
    .expect("ClearGuessLimit")
    .cleared
}

/// The one counter of `secret` and `subject` at `source`.
async fn guess_limit(
    server: &TestServer,
    secret: &str,
    subject: &str,
    source: &str,
) -> pb::GuessLimit {
    let listed = guess_limits(server, secret, subject).await;
    listed
        .iter()
        .find(|l| l.source == source)
        .cloned()
        .unwrap_or_else(|| panic!("a counter of {secret}:{subject} at {source:?}: {listed:?}"))
}

/// Attempts of `secret` refused unchecked, by the metric.
async fn limited_metric(server: &TestServer, secret: &str) -> f64 {
    let metrics = crate::ops_http::scrape(server).await;
    crate::ops_http::sample(
        &metrics,
        &format!("identityd_guess_limited_total{{secret=\"{secret}\"}}"),
    )
}

/// Guessing limits in the log, each event exact: refused attempts are by `anonymous`;
/// a block is set by identityd itself (`system`) with the triggering request's source,
/// peer and request id, its target naming the secret and whose it is, the source (an
/// IPv6 client's /64) and the block's end as details; refused attempts are recorded
/// once a minute per counter while the metric counts every one, and unknown client ids
/// once a minute per address; a clear is the clearer's.
async fn limit_events_are_recorded_exactly(backend: Backend) {
    const WRONG: &str = "wrong horse battery staple";
    let server = TestServer::start_with(backend, |c| {
        c.limits.limit_source_failures = 2;
        c.limits.limit_account_failures = 3;
    })
    .await;
    for user in ["erin", "frank", "gus"] {
        user_with_password(&server, user, &["orders:read"]).await;
    }
    let (billing, secret) = integration(&server, "billing", &["orders:read"]).await;
    let client_id = billing.client_id.clone();
    let admin = admin_actor(&server).await;
    let system = Want::by("system", "", "");
    let mut log = Log::new(&server).await;
    let mut identity = server.identity().await;

    // Two wrong passwords from one address, then the right one: refused unchecked. The
    // address's counter is blocked by that third request, which records both events.
    let attacker = "203.0.113.7";
    let from = |username: &str, password: &str, address: &str| pb::IssueTokenRequest {
        client_address: address.into(),
        ..password_grant(username, password)
    };
    let erin_refused = Want::by("anonymous", "", "password").from(attacker).did(
        "login",
        "user:erin",
        json!({"grant": "password"}),
    );
    let first_failure = server.clock.now() + 1;
    for _ in 0..2 {
        server.clock.advance(1);
        assert_oauth_error(
            issue(&server, from("erin", WRONG, attacker)).await,
            Code::Unauthenticated,
            "invalid_grant",
        );
        log.one(erin_refused.clone().failed("wrong_password")).await;
    }
    server.clock.advance(1);
    let request = with_request_id(
        Request::new(from("erin", PASSWORD, attacker)),
        "req-limit-1",
    );
    assert_oauth_error(
        identity.issue_token(request).await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    let blocked = guess_limit(&server, "password", "erin", attacker).await;
    // Until the 900-second window ends: later than the first delay would.
    assert_eq!(blocked.blocked_until, first_failure + 900, "{blocked:?}");
    let tripped = log
        .of_one_request(&[
            system.clone().from(attacker).did(
                "limit.set",
                "password:erin",
                json!({"source": attacker, "blocked_until": blocked.blocked_until}),
            ),
            erin_refused.clone().limited(),
        ])
        .await;
    assert_eq!(tripped[0].request_id, "req-limit-1");
    assert_eq!(limited_metric(&server, "password").await, 1.0);

    // Refused again within the minute: counted, not recorded.
    for password in [WRONG, PASSWORD] {
        server.clock.advance(1);
        assert_oauth_error(
            issue(&server, from("erin", password, attacker)).await,
            Code::Unauthenticated,
            "invalid_grant",
        );
    }
    log.none("refusals of one counter within a minute").await;
    assert_eq!(limited_metric(&server, "password").await, 3.0);

    // The admin clears the address's counter: the admin's event, the source a detail.
    server.clock.advance(1);
    assert!(clear_guess_limit(&server, "password", "erin", attacker).await);
    log.one(admin.did("limit.clear", "password:erin", json!({"source": attacker})))
        .await;
    assert!(!clear_guess_limit(&server, "password", "erin", attacker).await);
    log.none("clearing a counter that is gone").await;

    // An IPv6 client is counted, and named, by its /64.
    let v6 = "2001:db8:1:2::10";
    let gus_refused = Want::by("anonymous", "", "password").from(v6).did(
        "login",
        "user:gus",
        json!({"grant": "password"}),
    );
    for _ in 0..2 {
        server.clock.advance(1);
        assert_oauth_error(
            issue(&server, from("gus", WRONG, v6)).await,
            Code::Unauthenticated,
            "invalid_grant",
        );
        log.one(gus_refused.clone().failed("wrong_password")).await;
    }
    server.clock.advance(1);
    assert_oauth_error(
        issue(&server, from("gus", WRONG, v6)).await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    let prefix = "2001:db8:1:2::/64";
    let blocked = guess_limit(&server, "password", "gus", prefix).await;
    log.of_one_request(&[
        system.clone().from(v6).did(
            "limit.set",
            "password:gus",
            json!({"source": prefix, "blocked_until": blocked.blocked_until}),
        ),
        gus_refused.limited(),
    ])
    .await;
    // Another address of the same /64 is refused by the same counter: not recorded again.
    server.clock.advance(1);
    assert_oauth_error(
        issue(&server, from("gus", WRONG, "2001:db8:1:2::99")).await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    log.none("a refusal by the same /64 counter within a minute")
        .await;

    // Without a client address only the account is counted: its block has no source.
    let frank_refused = Want::by("anonymous", "", "password").unknown_client().did(
        "login",
        "user:frank",
        json!({"grant": "password"}),
    );
    for _ in 0..3 {
        server.clock.advance(1);
        assert_oauth_error(
            try_login(&server, "frank", WRONG).await,
            Code::Unauthenticated,
            "invalid_grant",
        );
        log.one(frank_refused.clone().failed("wrong_password"))
            .await;
    }
    server.clock.advance(1);
    assert_oauth_error(
        try_login(&server, "frank", PASSWORD).await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    let blocked = guess_limit(&server, "password", "frank", "").await;
    assert!(blocked.blocked_until > server.clock.now(), "{blocked:?}");
    log.of_one_request(&[
        system.clone().unknown_client().did(
            "limit.set",
            "password:frank",
            json!({"blocked_until": blocked.blocked_until}),
        ),
        frank_refused.limited(),
    ])
    .await;
    assert_eq!(limited_metric(&server, "password").await, 6.0);

    // A client secret is checked first: the wrong secret reaching the limit blocks at
    // once, in its own request; the next attempt, the right secret, is refused.
    let presenter = Want::by("anonymous", "", &format!("client_secret:{client_id}"));
    let client_refused = presenter.clone().from(attacker).did(
        "login",
        format!("integration:{client_id}"),
        json!({"grant": "client_credentials"}),
    );
    let client_from = |client_secret: &str, address: &str| pb::IssueTokenRequest {
        client_address: address.into(),
        ..client_grant(&client_id, client_secret)
    };
    let wrong_secret = format!("{}x", &secret[..secret.len() - 1]);
    assert_ne!(wrong_secret, secret);
    server.clock.advance(1);
    assert_oauth_error(
        issue(&server, client_from(&wrong_secret, attacker)).await,
        Code::Unauthenticated,
        "invalid_client",
    );
    log.one(client_refused.clone().failed("wrong_client_secret"))
        .await;
    server.clock.advance(1);
    assert_oauth_error(
        issue(&server, client_from(&wrong_secret, attacker)).await,
        Code::Unauthenticated,
        "invalid_client",
    );
    let blocked = guess_limit(&server, "client_secret", &client_id, attacker).await;
    log.of_one_request(&[
        system.clone().from(attacker).did(
            "limit.set",
            format!("client_secret:{client_id}"),
            json!({"source": attacker, "blocked_until": blocked.blocked_until}),
        ),
        client_refused.clone().failed("wrong_client_secret"),
    ])
    .await;
    for _ in 0..2 {
        server.clock.advance(1);
        assert_oauth_error(
            issue(&server, client_from(&secret, attacker)).await,
            Code::Unauthenticated,
            "invalid_client",
        );
    }
    // The first refusal recorded, the second not.
    let fresh = log.fresh().await;
    assert_eq!(
        fresh.iter().map(Want::of).collect::<Vec<_>>(),
        [client_refused.limited()],
        "{fresh:#?}"
    );
    assert_eq!(fresh[0].time, server.clock.now() - 1);
    assert_eq!(limited_metric(&server, "client_secret").await, 2.0);

    // A client id no integration has: nothing to count, recorded once a minute per
    // address, whatever ids it makes up.
    let made_up = "idc_0123456789abcdef0123456789abcdef";
    let other_made_up = "idc_fedcba9876543210fedcba9876543210";
    let unknown = |client_id: &str, address: &str| {
        Want::by("anonymous", "", &format!("client_secret:{client_id}"))
            .from(address)
            .did(
                "login",
                format!("integration:{client_id}"),
                json!({"grant": "client_credentials"}),
            )
            .failed("unknown_client")
    };
    for (client_id, address, recorded) in [
        (made_up, "198.51.100.1", true),
        (made_up, "198.51.100.1", false),
        (other_made_up, "198.51.100.1", false),
        (other_made_up, "198.51.100.2", true),
        (made_up, "198.51.100.1", false),
    ] {
        server.clock.advance(1);
        assert_oauth_error(
            issue(
                &server,
                pb::IssueTokenRequest {
                    client_address: address.into(),
                    ..client_grant(client_id, "idcs_made_up_secret_0123456789")
                },
            )
            .await,
            Code::Unauthenticated,
            "invalid_client",
        );
        if recorded {
            log.one(unknown(client_id, address)).await;
        } else {
            log.none("an unknown client id from one address within a minute")
                .await;
        }
    }
    let made_up_limits = guess_limits(&server, "client_secret", made_up).await;
    assert!(made_up_limits.is_empty(), "{made_up_limits:?}");
    assert_eq!(limited_metric(&server, "client_secret").await, 2.0);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Secrets

/// No event holds any secret the test used or received: passwords (right and wrong),
/// API tokens, client secrets (current, rotated out and wrong), access, refresh, CSRF,
/// non-expiring and app tokens, or the Basic values carrying them.
async fn no_secret_in_any_event(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut secrets: Vec<String> = vec![server.admin_auth.clone()];
    let admin_token = server
        .admin_auth
        .strip_prefix("Basic ")
        .and_then(unb64)
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(_, token)| token.to_owned()))
        .expect("the admin's Basic value");
    secrets.push(admin_token);

    // A user: passwords, API tokens, sessions and their tokens.
    let first_password = "first password: Tr0ub4dor&3-audit";
    let second_password = "second password: 9f8e7d6c-audit";
    let wrong_password = "wrong password: qwertyuiop-audit";
    secrets.extend([first_password, second_password, wrong_password].map(String::from));
    user_with_password(&server, "erin", &["orders:read"]).await;
    secrets.push(PASSWORD.into());
    set_password(&server, "erin", first_password)
        .await
        .expect("set password");
    let api_token = server.enable_api_access("erin").await;
    secrets.extend([api_token.clone(), basic("erin", &api_token)]);
    let regenerated = regenerate_api_token(&server, "erin")
        .await
        .expect("regenerate")
        .api_token;
    secrets.extend([regenerated.clone(), basic("erin", &regenerated)]);

    let tokens = login(&server, "erin", first_password).await;
    let refreshed = refresh(&server, &tokens.refresh_token, &tokens.csrf_token)
        .await
        .expect("refresh");
    assert_some_oauth_error(refresh(&server, &tokens.refresh_token, &tokens.csrf_token).await);
    let lasting = issue(
        &server,
        pb::IssueTokenRequest {
            scope: "no_expiry".into(),
            ..password_grant("erin", first_password)
        },
    )
    .await
    .expect("non-expiring token");
    assert!(lasting.access_token.starts_with("idt_nx_"));
    let third = login(&server, "erin", first_password).await;
    assert!(lasting.refresh_token.is_empty() && lasting.csrf_token.is_empty());
    secrets.extend([lasting.access_token.clone(), bearer(&lasting.access_token)]);
    for issued in [&tokens, &refreshed, &third] {
        secrets.extend([
            issued.access_token.clone(),
            bearer(&issued.access_token),
            // A JWT's signature is what makes it a credential.
            segments(&issued.access_token).2,
            issued.refresh_token.clone(),
            issued.csrf_token.clone(),
        ]);
    }
    revoke_plain(&server, &third.refresh_token, "refresh_token")
        .await
        .expect("revoke refresh token");
    revoke_plain(&server, &refreshed.access_token, "access_token")
        .await
        .expect("revoke access token");
    revoke_plain(&server, &lasting.access_token, "")
        .await
        .expect("revoke non-expiring token");
    assert_some_oauth_error(try_login(&server, "erin", wrong_password).await);
    // A login name that is no account's may be a password typed into the wrong field:
    // it is not stored as typed either.
    let no_account = "nobody@example.com";
    assert!(no_account.len() >= 16);
    secrets.push(no_account.into());
    assert_some_oauth_error(try_login(&server, no_account, wrong_password).await);
    set_password(&server, "erin", second_password)
        .await
        .expect("change password");

    // An integration: its secrets, a rotated-out one presented, a made-up one.
    let (billing, secret) = integration(&server, "billing", &["orders:read"]).await;
    let granted = client_token(&server, &billing.client_id, &secret)
        .await
        .expect("client_credentials");
    let rotated = admin_call(
        &server,
        &server.admin_auth,
        pb::RotateIntegrationSecretRequest {
            client_id: billing.client_id.clone(),
        },
        async |a, r| a.rotate_integration_secret(r).await,
    )
    .await
    .expect("rotate")
    .client_secret;
    let made_up = "idcs_made_up_secret_for_the_audit_test_0123456789";
    assert_some_oauth_error(client_token(&server, &billing.client_id, &secret).await);
    assert_some_oauth_error(client_token(&server, &billing.client_id, made_up).await);
    let regranted = client_token(&server, &billing.client_id, &rotated)
        .await
        .expect("client_credentials with the new secret");
    secrets.extend([secret, rotated, made_up.into()]);
    for issued in [&granted, &regranted] {
        secrets.extend([
            issued.access_token.clone(),
            segments(&issued.access_token).2,
        ]);
    }

    // An app: its tokens, one revoked by Admin and one by its holder.
    let (app, tokens) = app_with_tokens(
        &server,
        ("shop", &["orders:read"], "erin"),
        &["a", "b", "c"],
    )
    .await;
    revoke_app_token(&server, &app.id, &tokens[0].0.id).await;
    revoke_plain(&server, &tokens[1].1, "")
        .await
        .expect("revoke app token");
    secrets.extend(tokens.iter().map(|(_, token)| token.clone()));

    let events = everything(&server).await;
    let actions: HashSet<_> = events.iter().map(|e| e.action.as_str()).collect();
    for action in [
        "user.set_password",
        "user.api_access_on",
        "user.api_token_regenerate",
        "login",
        "token.refresh",
        "token.reuse",
        "token.revoke",
        "integration.rotate_secret",
        "app_token.create",
        "app_token.revoke",
    ] {
        assert!(
            actions.contains(action),
            "{action} was recorded: {actions:?}"
        );
    }
    assert!(events.iter().any(|e| e.outcome == "failure"));
    for secret in &secrets {
        assert!(secret.len() >= 16, "a secret worth looking for: {secret:?}");
    }
    for event in &events {
        let every_field = [
            event.id.to_string(),
            event.time.to_string(),
            event.actor.clone(),
            event.actor_name.clone(),
            event.credential.clone(),
            event.action.clone(),
            event.target.clone(),
            event.outcome.clone(),
            event.reason.clone(),
            event.source.clone(),
            event.peer.clone(),
            event.request_id.clone(),
            event.details.clone(),
        ]
        .join("\n");
        let text = format!("{every_field}\n{event:?}");
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "event {} holds a secret: {event:?}",
                event.action
            );
        }
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Refusals

/// A refused change records nothing: already existing, built-in, not found, invalid,
/// unchanged, or asked by a caller lacking the permission; the log stays as it was.
async fn refused_changes_record_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    create_user(
        &server,
        pb::CreateUserRequest {
            username: "alice".into(),
            is_staff: true,
            ..Default::default()
        },
    )
    .await;
    server.enable_api_access("alice").await;
    create_role(&server, "viewers", &["users:read"]).await;
    create_role(&server, "helpers", &["users:write"]).await;
    let viewer = server.user_with_roles("viewer", &["viewers"], true).await;
    let helper = server.user_with_roles("helper", &["helpers"], true).await;
    let tokens = {
        set_password(&server, "alice", PASSWORD)
            .await
            .expect("password");
        login(&server, "alice", PASSWORD).await
    };
    revoke_plain(&server, &tokens.access_token, "")
        .await
        .expect("revoke");
    let before = everything(&server).await;
    let admin = server.admin_auth.clone();
    let mut admin_api = server.admin().await;

    assert_status(
        admin_api
            .create_user(as_admin(
                &server,
                pb::CreateUserRequest {
                    username: "ALICE".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::AlreadyExists,
        "alice",
    );
    assert_status(
        admin_call(
            &server,
            &admin,
            pb::SetRolePermissionsRequest {
                name: "admin".into(),
                permissions: strings(&["orders:read"]),
            },
            async |a, r| a.set_role_permissions(r).await,
        )
        .await,
        Code::FailedPrecondition,
        "built in",
    );
    assert_status(
        admin_call(
            &server,
            &admin,
            pb::DeleteRoleRequest {
                name: "admin".into(),
            },
            async |a, r| a.delete_role(r).await,
        )
        .await,
        Code::FailedPrecondition,
        "built in",
    );
    assert_status(
        admin_call(
            &server,
            &viewer,
            pb::CreateUserRequest {
                username: "mallory".into(),
                ..Default::default()
            },
            async |a, r| a.create_user(r).await,
        )
        .await,
        Code::PermissionDenied,
        "users:write",
    );
    // users:write alone may not take over the admin by setting its password.
    assert_status(
        admin_call(
            &server,
            &helper,
            pb::SetUserPasswordRequest {
                username: "admin".into(),
                password: "a password for the admin".into(),
            },
            async |a, r| a.set_user_password(r).await,
        )
        .await,
        Code::PermissionDenied,
        "",
    );
    assert_status(
        admin_call(
            &server,
            &admin,
            pb::SetApiAccessRequest {
                username: "alice".into(),
                enabled: true,
            },
            async |a, r| a.set_api_access(r).await,
        )
        .await,
        Code::FailedPrecondition,
        "",
    );
    assert_status(
        admin_call(
            &server,
            &admin,
            pb::DeleteUserRequest {
                username: "ghost".into(),
            },
            async |a, r| a.delete_user(r).await,
        )
        .await,
        Code::NotFound,
        "ghost",
    );
    assert_status(
        admin_call(
            &server,
            &admin,
            pb::AssignRoleRequest {
                username: "alice".into(),
                role: "ghost".into(),
            },
            async |a, r| a.assign_role(r).await,
        )
        .await,
        Code::NotFound,
        "ghost",
    );
    assert_status(
        admin_call(
            &server,
            &admin,
            pb::RevokeAppTokenRequest {
                app_id: "no-such-app".into(),
                token_id: "no-such-token".into(),
            },
            async |a, r| a.revoke_app_token(r).await,
        )
        .await,
        Code::NotFound,
        "",
    );
    assert_status(
        admin_call(
            &server,
            &admin,
            pb::ReplaceRoutePolicyRequest {
                text: "GET /x not-a-permission!\n".into(),
                validate_only: false,
            },
            async |a, r| a.replace_route_policy(r).await,
        )
        .await,
        Code::InvalidArgument,
        "",
    );
    // The built-in route policy needs the `email` scope this catalog lacks.
    assert_status(
        replace_catalog(&server, "orders orders:read\n", false).await,
        Code::FailedPrecondition,
        "route policy",
    );
    // Revoking a token already revoked, or unknown, succeeds and changes nothing.
    revoke_plain(&server, &tokens.access_token, "")
        .await
        .expect("revoke again");
    revoke_plain(&server, &tokens.refresh_token, "")
        .await
        .expect("revoke the session's refresh token");
    revoke_plain(
        &server,
        "idt_app_not-a-token-anyone-holds-0123456789abcdefghi",
        "",
    )
    .await
    .expect("revoke an unknown app token");

    let after = everything(&server).await;
    assert_eq!(
        after.len(),
        before.len(),
        "refusals added events: {:#?}",
        &after[..after.len() - before.len()]
    );
    assert_eq!(after, before);
    // And the refused changes did not happen.
    assert_eq!(get_user(&server, "alice").await.expect("alice").email, "");
    assert_status(
        get_user(&server, "mallory").await,
        Code::NotFound,
        "mallory",
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Listing

/// Asserts that listing with `filter` gives exactly the events of `all` that `keep`
/// keeps, a proper and non-empty part of them; returns those.
async fn assert_filter(
    server: &TestServer,
    all: &[pb::AuditEvent],
    filter: pb::ListAuditEventsRequest,
    keep: impl Fn(&pb::AuditEvent) -> bool,
) -> Vec<pb::AuditEvent> {
    let listed = all_events(server, filter.clone()).await;
    let expected: Vec<_> = all.iter().filter(|e| keep(e)).cloned().collect();
    assert_eq!(listed, expected, "{filter:?}");
    assert!(
        !listed.is_empty() && listed.len() < all.len(),
        "{filter:?} picks some events: {listed:#?}"
    );
    listed
}

fn actions(events: &[pb::AuditEvent]) -> Vec<&str> {
    events.iter().map(|e| e.action.as_str()).collect()
}

/// Filters by actor (id or name), target, action, outcome and time each pick exactly the
/// matching events; pages of every size walk the log newest first without gaps or
/// duplicates; malformed requests are INVALID_ARGUMENT, and a caller without
/// `audit:read` is PERMISSION_DENIED.
async fn filters_and_paging(backend: Backend) {
    let server = TestServer::start(backend).await;
    let t0 = server.clock.now();

    server.clock.advance(100);
    let t1 = server.clock.now();
    create_role(&server, "auditors", &["audit:read", "users:write"]).await;
    create_role(&server, "support", &["users:read"]).await;
    let carol_auth = server.user_with_roles("carol", &["auditors"], true).await;
    let dave_auth = server.user_with_roles("dave", &["support"], true).await;
    let carol_id = format!(
        "user:{}",
        get_user(&server, "carol").await.expect("carol").id
    );

    server.clock.advance(100);
    let t2 = server.clock.now();
    admin_call(
        &server,
        &carol_auth,
        pb::UpdateUserRequest {
            username: "dave".into(),
            email: Some("dave@example.com".into()),
            ..Default::default()
        },
        async |a, r| a.update_user(r).await,
    )
    .await
    .expect("carol updates dave");
    set_password(&server, "dave", PASSWORD)
        .await
        .expect("password");

    server.clock.advance(100);
    let t3 = server.clock.now();
    assert_some_oauth_error(try_login(&server, "dave", "not dave's password").await);
    assert_some_oauth_error(try_login(&server, "carol", "carol has no password").await);
    login(&server, "dave", PASSWORD).await;

    let all = everything(&server).await;
    assert_eq!(all.len(), 13, "{all:#?}");
    for pair in all.windows(2) {
        assert!(pair[0].id > pair[1].id, "newest first: {pair:#?}");
        assert!(pair[0].time >= pair[1].time, "newest first: {pair:#?}");
    }
    let query = pb::ListAuditEventsRequest::default;

    // Actor, by id and by name: carol's change. The failed login naming her is not hers:
    // until a login succeeds, it is by nobody proven.
    let by_id = assert_filter(
        &server,
        &all,
        pb::ListAuditEventsRequest {
            actor: carol_id.clone(),
            ..query()
        },
        |e| e.actor == carol_id,
    )
    .await;
    assert_eq!(actions(&by_id), ["user.update"]);
    let by_name = assert_filter(
        &server,
        &all,
        pb::ListAuditEventsRequest {
            actor: "carol".into(),
            ..query()
        },
        |e| e.actor_name == "carol",
    )
    .await;
    assert_eq!(by_name, by_id);
    // Dave by name: his successful login only, not the failed one naming him.
    let by_dave = assert_filter(
        &server,
        &all,
        pb::ListAuditEventsRequest {
            actor: "dave".into(),
            ..query()
        },
        |e| e.actor_name == "dave",
    )
    .await;
    assert_eq!(
        by_dave
            .iter()
            .map(|e| (e.action.as_str(), e.target.as_str(), e.outcome.as_str()))
            .collect::<Vec<_>>(),
        [("login", "user:dave", "success")]
    );
    // The failed logins are anonymous's, with no name.
    let anonymous = assert_filter(
        &server,
        &all,
        pb::ListAuditEventsRequest {
            actor: "anonymous".into(),
            ..query()
        },
        |e| e.actor == "anonymous",
    )
    .await;
    assert_eq!(
        anonymous
            .iter()
            .map(|e| (
                e.target.as_str(),
                e.reason.as_str(),
                e.actor_name.as_str(),
                e.credential.as_str()
            ))
            .collect::<Vec<_>>(),
        [
            ("user:carol", "no_password_set", "", "password"),
            ("user:dave", "wrong_password", "", "password")
        ]
    );
    let by_admin = assert_filter(
        &server,
        &all,
        pb::ListAuditEventsRequest {
            actor: "admin".into(),
            ..query()
        },
        |e| e.actor_name == "admin",
    )
    .await;
    assert_eq!(by_admin.len(), 7, "{by_admin:#?}");
    let admin_id = by_admin[0].actor.clone();
    assert_filter(
        &server,
        &all,
        pb::ListAuditEventsRequest {
            actor: admin_id.clone(),
            ..query()
        },
        |e| e.actor == admin_id,
    )
    .await;

    // Target, action and outcome.
    let dave = assert_filter(
        &server,
        &all,
        pb::ListAuditEventsRequest {
            target: "user:dave".into(),
            ..query()
        },
        |e| e.target == "user:dave",
    )
    .await;
    assert_eq!(
        actions(&dave),
        [
            "login",
            "login",
            "user.set_password",
            "user.update",
            "user.api_access_on",
            "user.create"
        ]
    );
    let created = assert_filter(
        &server,
        &all,
        pb::ListAuditEventsRequest {
            action: "user.create".into(),
            ..query()
        },
        |e| e.action == "user.create",
    )
    .await;
    assert_eq!(
        created
            .iter()
            .map(|e| e.target.as_str())
            .collect::<Vec<_>>(),
        ["user:dave", "user:carol"]
    );
    let failures = assert_filter(
        &server,
        &all,
        pb::ListAuditEventsRequest {
            outcome: "failure".into(),
            ..query()
        },
        |e| e.outcome == "failure",
    )
    .await;
    assert_eq!(
        failures
            .iter()
            .map(|e| e.reason.as_str())
            .collect::<Vec<_>>(),
        ["no_password_set", "wrong_password"]
    );
    assert_filter(
        &server,
        &all,
        pb::ListAuditEventsRequest {
            outcome: "success".into(),
            ..query()
        },
        |e| e.outcome == "success",
    )
    .await;
    let limited = all_events(
        &server,
        pb::ListAuditEventsRequest {
            outcome: "limited".into(),
            ..query()
        },
    )
    .await;
    assert!(limited.is_empty(), "{limited:#?}");
    let combined = assert_filter(
        &server,
        &all,
        pb::ListAuditEventsRequest {
            actor: "anonymous".into(),
            target: "user:dave".into(),
            ..query()
        },
        |e| e.actor == "anonymous" && e.target == "user:dave",
    )
    .await;
    assert_eq!(
        combined
            .iter()
            .map(|e| (e.action.as_str(), e.reason.as_str()))
            .collect::<Vec<_>>(),
        [("login", "wrong_password")]
    );
    let dave_succeeded = assert_filter(
        &server,
        &all,
        pb::ListAuditEventsRequest {
            target: "user:dave".into(),
            outcome: "success".into(),
            ..query()
        },
        |e| e.target == "user:dave" && e.outcome == "success",
    )
    .await;
    assert_eq!(
        actions(&dave_succeeded),
        [
            "login",
            "user.set_password",
            "user.update",
            "user.api_access_on",
            "user.create"
        ]
    );

    // Time: since is inclusive, until exclusive.
    let startup = assert_filter(
        &server,
        &all,
        pb::ListAuditEventsRequest {
            until: t1,
            ..query()
        },
        |e| e.time < t1,
    )
    .await;
    assert_eq!(actions(&startup), ["key.create", "user.bootstrap"]);
    assert!(startup.iter().all(|e| e.time == t0));
    assert_filter(
        &server,
        &all,
        pb::ListAuditEventsRequest {
            since: t1,
            ..query()
        },
        |e| e.time >= t1,
    )
    .await;
    let middle = assert_filter(
        &server,
        &all,
        pb::ListAuditEventsRequest {
            since: t2,
            until: t3,
            ..query()
        },
        |e| (t2..t3).contains(&e.time),
    )
    .await;
    assert_eq!(actions(&middle), ["user.set_password", "user.update"]);
    let last = assert_filter(
        &server,
        &all,
        pb::ListAuditEventsRequest {
            since: t3,
            ..query()
        },
        |e| e.time >= t3,
    )
    .await;
    assert_eq!(actions(&last), ["login", "login", "login"]);

    // Paging: every page size walks the whole log once, newest first.
    for page_size in 1..=all.len() as u32 + 1 {
        let mut walked = Vec::new();
        let mut page_token = String::new();
        let mut pages = 0;
        loop {
            let page = list_events(
                &server,
                &server.admin_auth,
                pb::ListAuditEventsRequest {
                    page_size,
                    page_token,
                    ..query()
                },
            )
            .await
            .expect("a page");
            pages += 1;
            assert!(page.events.len() <= page_size as usize);
            let last_page = page.next_page_token.is_empty();
            if !last_page {
                assert_eq!(
                    page.events.len(),
                    page_size as usize,
                    "only the last page is short"
                );
            }
            walked.extend(page.events);
            if last_page {
                break;
            }
            page_token = page.next_page_token;
            assert!(pages <= all.len() + 1, "paging ends");
        }
        assert_eq!(walked, all, "page_size {page_size}");
        assert!(pages >= all.len().div_ceil(page_size as usize));
    }
    // Paging within a filter.
    let mut walked = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = list_events(
            &server,
            &server.admin_auth,
            pb::ListAuditEventsRequest {
                action: "login".into(),
                page_size: 1,
                page_token,
                ..query()
            },
        )
        .await
        .expect("a page");
        walked.extend(page.events);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(actions(&walked), ["login", "login", "login"]);
    assert_eq!(walked, last);

    // Malformed requests.
    for (request, field) in [
        (
            pb::ListAuditEventsRequest {
                outcome: "bogus".into(),
                ..query()
            },
            "outcome",
        ),
        (
            pb::ListAuditEventsRequest {
                page_size: 1001,
                ..query()
            },
            "page_size",
        ),
        (
            pb::ListAuditEventsRequest {
                page_token: "x".into(),
                ..query()
            },
            "page_token",
        ),
    ] {
        assert_status(
            list_events(&server, &server.admin_auth, request).await,
            Code::InvalidArgument,
            field,
        );
    }

    // Who may read it: carol holds audit:read; dave, staff too, does not.
    let read = list_events(&server, &carol_auth, query())
        .await
        .expect("carol reads the log");
    assert_eq!(read.events, all);
    assert_status(
        list_events(&server, &dave_auth, query()).await,
        Code::PermissionDenied,
        "audit:read",
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Retention

/// An event at `at` with a target of its own, inserted as an operator would.
fn insert_event(at: i64, target: &str) -> String {
    format!(
        "INSERT INTO audit_events (at, actor, actor_name, credential, action, target, outcome, \
         reason, source, peer, request_id, details) \
         VALUES ({at}, 'system', '', '', 'test.inserted', '{target}', 'success', '', '', '', \
         'req-{target}', '{{}}')"
    )
}

/// A password counter of `subject` whose window started at `window_start`, blocking
/// until `blocked_until`, with its next block an hour (escalated), last changed a month
/// before [`START`].
fn insert_counter(subject: &str, window_start: i64, blocked_until: i64) -> String {
    format!(
        "INSERT INTO guess_limits (secret, subject, source, failures, window_start, \
         blocked_until, next_delay, updated_at) \
         VALUES ('password', '{subject}', '', 1, {window_start}, {blocked_until}, 3600, \
                 {START} - 2592000)"
    )
}

/// The password counters of `subject` stored in `db`.
async fn stored_counters(db: &TestDb, subject: &str) -> i64 {
    db.count(&format!(
        "SELECT COUNT(*) FROM guess_limits WHERE subject = '{subject}'"
    ))
    .await
}

/// Waits until `server`'s purge task has deleted the counter `witness` from `db`.
async fn await_purge(server: &TestServer, witness: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while stored_counters(&server.db, witness).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the purge task never ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Targets of the events on `server`, newest first.
async fn targets(server: &TestServer) -> Vec<String> {
    everything(server)
        .await
        .into_iter()
        .map(|e| e.target)
        .collect()
}

/// A server starting on a database purges events older than `audit_retention_days`
/// (strictly older: one exactly that old stays) and keeps the rest; with retention 0
/// nothing is ever purged.
async fn retention_purges_old_events(backend: Backend) {
    const DAY: i64 = 86_400;
    for retention in [1u32, 0] {
        // A first server makes the database, then stops, its purge task with it: only
        // the second server's purge can touch what is inserted meanwhile.
        let mut first =
            TestServer::start_with(backend, |c| c.audit_retention_days = retention).await;
        let admin_auth = first.admin_auth.clone();
        let db = std::mem::replace(&mut first.db, TestDb::new(backend).await);
        first.stop().await;
        for (age, target) in [
            (3 * DAY, "three-days"),
            (DAY + 1, "just-past"),
            (DAY, "exactly-one-day"),
            (DAY / 2, "twelve-hours"),
        ] {
            db.execute(&insert_event(START - age, target)).await;
        }
        // Guessing-limit counters, all quiet for a month: one whose window ended a day
        // ago is purged (a fresh one would replace it), and its going shows the purge
        // round has run, after the audit events. One whose hour-long block ended a
        // minute ago stays, or the next trip would forget the doubled delay; so does one
        // still blocking.
        db.execute(&insert_counter("witness", START - DAY, 0)).await;
        db.execute(&insert_counter("just-unblocked", START - 60, START - 60))
            .await;
        db.execute(&insert_counter("blocking", START - DAY, START + DAY))
            .await;

        let mut second = TestServer::start_on(db, |c| c.audit_retention_days = retention).await;
        second.admin_auth = admin_auth;
        await_purge(&second, "witness").await;
        for kept in ["just-unblocked", "blocking"] {
            assert_eq!(stored_counters(&second.db, kept).await, 1, "{kept}");
        }
        let kept: Vec<String> = targets(&second)
            .await
            .into_iter()
            .map(|t| {
                if t.starts_with("key:") {
                    "key".into()
                } else {
                    t
                }
            })
            .collect();
        let mut expected = vec!["twelve-hours", "exactly-one-day"];
        if retention == 0 {
            expected.extend(["just-past", "three-days"]);
        }
        expected.extend(["key", "user:admin"]);
        assert_eq!(kept, expected, "retention {retention}");
        second.stop().await;
    }
}

on_both_backends!(
    every_action_is_recorded_exactly,
    limit_events_are_recorded_exactly,
    no_secret_in_any_event,
    refused_changes_record_nothing,
    filters_and_paging,
    retention_purges_old_events,
);
