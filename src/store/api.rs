//! The public API's state (issue 25): a mailbox's API tokens (`api_tokens`,
//! keyed by the SHA-256 of the token, so a copy of the database opens
//! nothing) and the `Idempotency-Key`s of its sends (`api_idempotency`).
//! Both live in the store so that every node sees a revocation or a key at
//! once.

use super::{Result, Store};

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes {
    /// `send`: submit PEC.
    pub send: bool,
    /// `read`: folders, messages, the sent status and evidence.
    pub read: bool,
}

/// A scope name that is neither `send` nor `read`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadScope(pub String);

impl std::fmt::Display for BadScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} is not a scope (send, read)", self.0)
    }
}

impl std::error::Error for BadScope {}

impl Scopes {
    /// Scopes from names (`send`, `read`; case and spaces ignored); at
    /// least one.
    pub fn parse<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> std::result::Result<Scopes, BadScope> {
        let mut s = Scopes::default();
        for n in names {
            match n.trim().to_ascii_lowercase().as_str() {
                "send" => s.send = true,
                "read" => s.read = true,
                "" => {}
                _ => return Err(BadScope(n.trim().to_string())),
            }
        }
        if s == Scopes::default() {
            return Err(BadScope(String::new()));
        }
        Ok(s)
    }

    /// The names, in a fixed order.
    pub fn names(self) -> Vec<&'static str> {
        let mut v = vec![];
        if self.read {
            v.push("read");
        }
        if self.send {
            v.push("send");
        }
        v
    }

    /// Whether every scope of `need` is here.
    pub fn covers(self, need: Scopes) -> bool {
        (self.send || !need.send) && (self.read || !need.read)
    }
}

/// One stored token (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Its public id (what `revoke` names).
    pub id: String,
    /// The mailbox it acts for.
    pub address: String,
    /// The owner's label.
    pub name: String,
    /// What it may do.
    pub scopes: Scopes,
    /// When it was made (unix ms).
    pub created_at: i64,
    /// When it was last used (unix ms, to the minute), if ever.
    pub last_used: Option<i64>,
}

/// A token just made: its id, and the token, which is shown this once.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Public id.
    pub id: String,
    /// The bearer token: [`TOKEN_PREFIX`] and 64 hex digits.
    pub token: String,
}

/// What every token starts with, so that a leaked one is recognised (by a
/// secret scanner, in a log) for what it is.
pub const TOKEN_PREFIX: &str = "pecd_";

/// Longest token name.
pub const MAX_NAME: usize = 100;

/// Tokens one mailbox may hold.
pub const MAX_PER_USER: i64 = 100;

/// A token name that is empty, too long or has control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadName;

impl std::fmt::Display for BadName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "name: 1 to {MAX_NAME} characters, no control characters")
    }
}

impl std::error::Error for BadName {}

/// A token's name, trimmed: 1 to [`MAX_NAME`] characters, no control
/// characters.
pub fn check_name(name: &str) -> std::result::Result<String, BadName> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > MAX_NAME || n.chars().any(char::is_control) {
        return Err(BadName);
    }
    Ok(n.to_string())
}

/// The key a token is stored under.
pub fn token_hash(token: &str) -> [u8; 32] {
    openssl::sha::sha256(token.as_bytes())
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    // The OpenSSL CSPRNG only fails when it cannot seed; then no token is safe.
    openssl::rand::rand_bytes(&mut b).expect("OpenSSL random generator");
    crate::pec::smime::hex_plain(&b)
}

/// A fresh id and token (32 random bytes).
pub fn fresh_token() -> NewToken {
    NewToken {
        id: random_hex(8),
        token: format!("{TOKEN_PREFIX}{}", random_hex(32)),
    }
}

/// Why a token was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateRefused {
    /// There is no such user.
    NoUser,
    /// The user holds [`MAX_PER_USER`] tokens already.
    TooMany,
}

/// What the store knew of an `Idempotency-Key` when a request came with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClaim {
    /// New (or expired): it is this request's now, in progress.
    Fresh,
    /// Answered already: give this answer again.
    Answered {
        /// HTTP status.
        status: u16,
        /// The JSON body.
        body: Vec<u8>,
    },
    /// Used with another request body.
    OtherBody,
    /// A request with it is still running (or died running).
    InProgress {
        /// The Message-ID that request submits.
        msgid: String,
        /// When it started (unix ms).
        started_at: i64,
    },
}

impl Store {
    /// Make a token for `address` (the user must exist).
    pub async fn create_token(
        &self,
        address: &str,
        name: &str,
        scopes: Scopes,
        now_ms: i64,
    ) -> Result<std::result::Result<NewToken, CreateRefused>> {
        let (a, n) = (address.to_string(), name.to_string());
        self.write(move |db| db.token_create(&a, &n, scopes, now_ms))
            .await
    }

    /// Blocking form of [`Store::create_token`] (the CLI).
    pub fn create_token_blocking(
        &self,
        address: &str,
        name: &str,
        scopes: Scopes,
        now_ms: i64,
    ) -> Result<std::result::Result<NewToken, CreateRefused>> {
        let (a, n) = (address.to_string(), name.to_string());
        self.write_blocking(move |db| db.token_create(&a, &n, scopes, now_ms))
    }

    /// The tokens of `address`, or of everyone, oldest first.
    pub async fn tokens(&self, address: Option<&str>) -> Result<Vec<ApiToken>> {
        let a = address.map(str::to_string);
        self.read(move |db| db.token_list(a.as_deref())).await
    }

    /// Blocking form of [`Store::tokens`].
    pub fn tokens_blocking(&self, address: Option<&str>) -> Result<Vec<ApiToken>> {
        self.read_blocking(|db| db.token_list(address))
    }

    /// The token `token` stands for, if it exists (not revoked).
    pub async fn token(&self, token: &str) -> Result<Option<ApiToken>> {
        let t = token_hash(token);
        self.read(move |db| db.token_find(&t)).await
    }

    /// Mark token `id` used at `now_ms`.
    pub async fn touch_token(&self, id: &str, now_ms: i64) -> Result<()> {
        let id = id.to_string();
        self.write(move |db| db.token_touch(&id, now_ms)).await
    }

    /// Revoke token `id` (only if it is `address`'s, when given); false if
    /// there was none.
    pub async fn revoke_token(&self, id: &str, address: Option<&str>) -> Result<bool> {
        let (id, a) = (id.to_string(), address.map(str::to_string));
        self.write(move |db| db.token_revoke(&id, a.as_deref()))
            .await
    }

    /// Blocking form of [`Store::revoke_token`].
    pub fn revoke_token_blocking(&self, id: &str, address: Option<&str>) -> Result<bool> {
        let (id, a) = (id.to_string(), address.map(str::to_string));
        self.write_blocking(move |db| db.token_revoke(&id, a.as_deref()))
    }

    /// Claim `key` of `address` for a request whose body hashes to
    /// `body_hash` and which will submit `msgid`, after forgetting every
    /// key older than `ttl_ms`.
    pub async fn claim_idempotency_key(
        &self,
        address: &str,
        key: &str,
        body_hash: [u8; 32],
        msgid: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<KeyClaim> {
        let (a, k, m) = (address.to_string(), key.to_string(), msgid.to_string());
        self.write(move |db| db.idempotency_claim(&a, &k, &body_hash, &m, now_ms, ttl_ms))
            .await
    }

    /// Take over `key` from a request that started it with `old_msgid` and
    /// died: true if this caller now holds it (for `msgid`, from `now_ms`).
    pub async fn take_over_idempotency_key(
        &self,
        address: &str,
        key: &str,
        old_msgid: &str,
        msgid: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let (a, k, o, m) = (
            address.to_string(),
            key.to_string(),
            old_msgid.to_string(),
            msgid.to_string(),
        );
        self.write(move |db| db.idempotency_take_over(&a, &k, &o, &m, now_ms))
            .await
    }

    /// Record the answer to the request holding `key` with `msgid`.
    pub async fn answer_idempotency_key(
        &self,
        address: &str,
        key: &str,
        msgid: &str,
        status: u16,
        body: Vec<u8>,
    ) -> Result<()> {
        let (a, k, m) = (address.to_string(), key.to_string(), msgid.to_string());
        self.write(move |db| db.idempotency_answer(&a, &k, &m, status, &body))
            .await
    }

    /// Free `key` held with `msgid` and not answered (nothing was sent).
    pub async fn release_idempotency_key(
        &self,
        address: &str,
        key: &str,
        msgid: &str,
    ) -> Result<()> {
        let (a, k, m) = (address.to_string(), key.to_string(), msgid.to_string());
        self.write(move |db| db.idempotency_release(&a, &k, &m))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_cover() {
        let both = Scopes::parse(["send", " READ "]).unwrap();
        assert_eq!(both.names(), ["read", "send"]);
        let read = Scopes::parse("read".split(',')).unwrap();
        assert!(both.covers(read) && !read.covers(both));
        assert!(read.covers(Scopes::default()));
        assert_eq!(Scopes::parse(["write"]), Err(BadScope("write".into())));
        assert!(Scopes::parse([""]).is_err(), "at least one scope");
        let t = fresh_token();
        assert!(t.token.starts_with(TOKEN_PREFIX) && t.token.len() == 69);
        assert_eq!(t.id.len(), 16);
        assert_ne!(fresh_token().token, t.token);
    }
}
