//! Bearer-token authentication of gRPC calls (`authorization: Bearer <token>`), compared in
//! constant time; refusals are logged rate-limited.

use crate::ratelimit::SharedLogLimit;
use tonic::{Request, Status};

static AUTH_LOG: SharedLogLimit = SharedLogLimit::new(10, std::time::Duration::from_secs(10));

/// The configured bearer token, kept only as its SHA-256 digest: [`check_token`] compares
/// digests in constant time, so neither the token's bytes nor its length leak through timing.
#[derive(Clone)]
pub struct Token([u8; 32]);

impl Token {
    /// The token `text`.
    pub fn new(text: &str) -> Token {
        Token(digest(text.as_bytes()))
    }

    /// Whether `given` is this token (constant time in the token).
    pub fn matches(&self, given: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        bool::from(digest(given.as_bytes()).ct_eq(&self.0))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The token of an `authorization` value `<scheme> <token>` whose scheme is `Bearer` in any case.
fn bearer(value: &str) -> Option<&str> {
    let value = value.trim_start();
    let (scheme, rest) = value.split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim_matches([' ', '\t']))
}

/// Checks `authorization: Bearer <token>` (scheme in any case) when a token is configured.
#[allow(clippy::result_large_err)]
pub fn check_token(token: Option<&Token>, req: Request<()>) -> Result<Request<()>, Status> {
    let Some(token) = token else { return Ok(req) };
    let value = req.metadata().get("authorization");
    let given = value.and_then(|v| v.to_str().ok()).and_then(bearer);
    match given {
        Some(given) if token.matches(given) => Ok(req),
        Some(_) => {
            if let Some(suppressed) = AUTH_LOG.check() {
                tracing::info!(suppressed, "gRPC call with an invalid bearer token refused");
            }
            Err(Status::unauthenticated("invalid bearer token"))
        }
        None => {
            if let Some(suppressed) = AUTH_LOG.check() {
                tracing::info!(
                    suppressed,
                    present = value.is_some(),
                    "gRPC call without a bearer token refused"
                );
            }
            Err(Status::unauthenticated(
                "missing `authorization: Bearer <token>` metadata; this server requires a token",
            ))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_is_checked() {
        let mut r = Request::new(());
        let t = Token::new("s3cret");
        let token = Some(&t);
        assert!(check_token(None, Request::new(())).is_ok());
        assert_eq!(
            check_token(token, Request::new(())).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        r.metadata_mut()
            .insert("authorization", "Bearer s3cret".parse().unwrap());
        assert!(check_token(token, r).is_ok());
        for ok in ["bearer s3cret", "BEARER  s3cret", "Bearer\ts3cret "] {
            let mut r = Request::new(());
            r.metadata_mut()
                .insert("authorization", ok.parse().unwrap());
            assert!(check_token(token, r).is_ok(), "{ok}");
        }
        for bad in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "Basic s3cret",
            "s3cret",
            "Bearer",
        ] {
            let mut r = Request::new(());
            r.metadata_mut()
                .insert("authorization", bad.parse().unwrap());
            assert!(check_token(token, r).is_err(), "{bad}");
        }
        let mut r = Request::new(());
        r.metadata_mut()
            .insert("authorization", "Bearer nope".parse().unwrap());
        assert_eq!(
            check_token(token, r).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }
}
