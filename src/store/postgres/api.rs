//! The SQL of the public API's state on PostgreSQL (see `store::api` and
//! `sqlite/api.rs`, whose statements these translate).
//!
//! One send per `Idempotency-Key` across nodes: the key is the primary key
//! of `api_idempotency` and a claim is `INSERT … ON CONFLICT DO NOTHING`.
//! A second claim of a key whose first claim is not committed yet waits for
//! that transaction (the unique index), then inserts nothing and reads the
//! first's row, which READ COMMITTED shows to its next statement: it gets
//! `InProgress` (or the answer), never `Fresh`.

use ::postgres::Row;

use super::PgDb;
use crate::pec::types::normalize_address;
use crate::store::api::{
    fresh_token, token_hash, ApiToken, CreateRefused, KeyClaim, NewToken, Scopes, MAX_PER_USER,
};
use crate::store::{Result, StoreError};

fn token_of(r: &Row) -> ApiToken {
    ApiToken {
        id: r.get(0),
        address: r.get(1),
        name: r.get(2),
        scopes: Scopes::parse(r.get::<_, &str>(3).split(',')).unwrap_or_default(),
        created_at: r.get(4),
        last_used: r.get(5),
    }
}

/// A claim that found the key taken, then the row gone (released by its
/// holder in between), this many times in a row gives up.
const CLAIM_TRIES: usize = 3;

/// The key kept changing hands while a claim looked at it.
#[derive(Debug)]
struct KeyChurn;

impl std::fmt::Display for KeyChurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the Idempotency-Key was taken and freed {CLAIM_TRIES} times while this request claimed it"
        )
    }
}

impl std::error::Error for KeyChurn {}

impl PgDb<'_> {
    pub(in crate::store) fn token_create(
        &self,
        address: &str,
        name: &str,
        scopes: Scopes,
        now_ms: i64,
    ) -> Result<std::result::Result<NewToken, CreateRefused>> {
        let address = normalize_address(address);
        if !self.user_exists(&address)? {
            return Ok(Err(CreateRefused::NoUser));
        }
        let n: i64 = self
            .one(
                "SELECT count(*) FROM api_tokens WHERE address = $1",
                &[&address],
            )?
            .get(0);
        if n >= MAX_PER_USER {
            return Ok(Err(CreateRefused::TooMany));
        }
        let t = fresh_token();
        self.exec(
            "INSERT INTO api_tokens(id, token_hash, address, name, scopes, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &t.id,
                &&token_hash(&t.token)[..],
                &address,
                &name,
                &scopes.names().join(","),
                &now_ms,
            ],
        )?;
        Ok(Ok(t))
    }

    pub(in crate::store) fn token_list(&self, address: Option<&str>) -> Result<Vec<ApiToken>> {
        let rows = match address {
            Some(a) => self.rows(
                "SELECT id, address, name, scopes, created_at, last_used FROM api_tokens
                 WHERE address = $1 ORDER BY created_at, id",
                &[&normalize_address(a)],
            )?,
            None => self.rows(
                "SELECT id, address, name, scopes, created_at, last_used FROM api_tokens
                 ORDER BY address, created_at, id",
                &[],
            )?,
        };
        Ok(rows.iter().map(token_of).collect())
    }

    pub(in crate::store) fn token_find(&self, hash: &[u8; 32]) -> Result<Option<ApiToken>> {
        Ok(self
            .opt(
                "SELECT id, address, name, scopes, created_at, last_used FROM api_tokens
                 WHERE token_hash = $1",
                &[&&hash[..]],
            )?
            .as_ref()
            .map(token_of))
    }

    pub(in crate::store) fn token_touch(&self, id: &str, now_ms: i64) -> Result<()> {
        self.exec(
            "UPDATE api_tokens SET last_used = greatest(coalesce(last_used, 0), $2) WHERE id = $1",
            &[&id, &now_ms],
        )?;
        Ok(())
    }

    pub(in crate::store) fn token_revoke(&self, id: &str, address: Option<&str>) -> Result<bool> {
        let n = match address {
            Some(a) => self.exec(
                "DELETE FROM api_tokens WHERE id = $1 AND address = $2",
                &[&id, &normalize_address(a)],
            )?,
            None => self.exec("DELETE FROM api_tokens WHERE id = $1", &[&id])?,
        };
        Ok(n == 1)
    }

    pub(in crate::store) fn tokens_revoke_all(&self, address: &str) -> Result<usize> {
        let n = self.exec(
            "DELETE FROM api_tokens WHERE address = $1",
            &[&normalize_address(address)],
        )?;
        Ok(n as usize)
    }

    pub(in crate::store) fn idempotency_claim(
        &self,
        address: &str,
        key: &str,
        body_hash: &[u8; 32],
        msgid: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<KeyClaim> {
        self.exec(
            "DELETE FROM api_idempotency WHERE created_at <= $1",
            &[&(now_ms - ttl_ms)],
        )?;
        for _ in 0..CLAIM_TRIES {
            let n = self.exec(
                "INSERT INTO api_idempotency(address, key, body_hash, created_at, msgid)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (address, key) DO NOTHING",
                &[&address, &key, &&body_hash[..], &now_ms, &msgid],
            )?;
            if n == 1 {
                return Ok(KeyClaim::Fresh);
            }
            let Some(row) = self.opt(
                "SELECT body_hash, msgid, created_at, status, response FROM api_idempotency
                 WHERE address = $1 AND key = $2",
                &[&address, &key],
            )?
            else {
                continue;
            };
            let (h, held_by, started_at): (&[u8], String, i64) =
                (row.get(0), row.get(1), row.get(2));
            let (status, body): (Option<i32>, Option<Vec<u8>>) = (row.get(3), row.get(4));
            return Ok(if h != &body_hash[..] {
                KeyClaim::OtherBody
            } else if let Some(status) = status {
                KeyClaim::Answered {
                    status: u16::try_from(status).unwrap_or(500),
                    body: body.unwrap_or_default(),
                }
            } else {
                KeyClaim::InProgress {
                    msgid: held_by,
                    started_at,
                }
            });
        }
        Err(StoreError::Database(Box::new(KeyChurn)))
    }

    pub(in crate::store) fn idempotency_take_over(
        &self,
        address: &str,
        key: &str,
        old_msgid: &str,
        msgid: &str,
        now_ms: i64,
    ) -> Result<bool> {
        Ok(self.exec(
            "UPDATE api_idempotency SET msgid = $4, created_at = $5
             WHERE address = $1 AND key = $2 AND msgid = $3 AND status IS NULL",
            &[&address, &key, &old_msgid, &msgid, &now_ms],
        )? == 1)
    }

    pub(in crate::store) fn idempotency_answer(
        &self,
        address: &str,
        key: &str,
        msgid: &str,
        status: u16,
        body: &[u8],
    ) -> Result<()> {
        self.exec(
            "UPDATE api_idempotency SET status = $4, response = $5
             WHERE address = $1 AND key = $2 AND msgid = $3",
            &[&address, &key, &msgid, &i32::from(status), &body],
        )?;
        Ok(())
    }

    pub(in crate::store) fn idempotency_release(
        &self,
        address: &str,
        key: &str,
        msgid: &str,
    ) -> Result<()> {
        self.exec(
            "DELETE FROM api_idempotency WHERE address = $1 AND key = $2 AND msgid = $3
             AND status IS NULL",
            &[&address, &key, &msgid],
        )?;
        Ok(())
    }
}
