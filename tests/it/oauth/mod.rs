//! OAuth2 end to end: the password, refresh_token and client_credentials grants, refresh
//! rotation and reuse detection, revocation, integrations, the JWKS and signing-key
//! rotation, and the verdicts access tokens get.

mod integrations;
mod password_grant;
mod refresh;
mod sessions;
mod signing_keys;
