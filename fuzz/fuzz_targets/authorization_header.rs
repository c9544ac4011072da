//! `parse_authorization` on arbitrary header values (non-UTF-8 bytes become U+FFFD).
//! Invariants: no panic; a Basic credential has a non-empty username without `:` or
//! control characters and a non-empty token without control characters; a Bearer/JWT
//! token is token68; nothing over MAX_HEADER_BYTES is accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let header = String::from_utf8_lossy(data);
    let _ = identityd_fuzz::parse_checked(&header);
});
