//! The SQL of the public API's state: tokens (`api_tokens`) and
//! idempotency keys (`api_idempotency`); see `store::api`.

use rusqlite::{params, OptionalExtension};

use super::Db;
use crate::pec::types::normalize_address;
use crate::store::api::{
    fresh_token, ApiToken, CreateRefused, KeyClaim, NewToken, Scopes, MAX_PER_USER,
};
use crate::store::Result;

fn scopes_of(text: &str) -> Scopes {
    Scopes::parse(text.split(',')).unwrap_or_default()
}

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiToken> {
    Ok(ApiToken {
        id: r.get(0)?,
        address: r.get(1)?,
        name: r.get(2)?,
        scopes: scopes_of(&r.get::<_, String>(3)?),
        created_at: r.get(4)?,
        last_used: r.get(5)?,
    })
}

/// An idempotency row: body hash, msgid, created_at, status, response.
type KeyRow = (Vec<u8>, String, i64, Option<i64>, Option<Vec<u8>>);

const TOKEN_COLUMNS: &str = "id, address, name, scopes, created_at, last_used";

impl Db<'_> {
    /// Make a token for an existing user with fewer than [`MAX_PER_USER`].
    pub(in crate::store) fn token_create(
        &self,
        address: &str,
        name: &str,
        scopes: Scopes,
        now_ms: i64,
    ) -> Result<std::result::Result<NewToken, CreateRefused>> {
        let c = self.sql();
        let address = normalize_address(address);
        if !self.user_exists(&address)? {
            return Ok(Err(CreateRefused::NoUser));
        }
        let n: i64 = c.query_row(
            "SELECT count(*) FROM api_tokens WHERE address = ?1",
            [&address],
            |r| r.get(0),
        )?;
        if n >= MAX_PER_USER {
            return Ok(Err(CreateRefused::TooMany));
        }
        let t = fresh_token();
        c.execute(
            "INSERT INTO api_tokens(id, token_hash, address, name, scopes, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                t.id,
                &crate::store::api::token_hash(&t.token)[..],
                address,
                name,
                scopes.names().join(","),
                now_ms
            ],
        )?;
        Ok(Ok(t))
    }

    /// The tokens of `address` (or all), oldest first.
    pub(in crate::store) fn token_list(&self, address: Option<&str>) -> Result<Vec<ApiToken>> {
        let c = self.sql();
        let rows = match address {
            Some(a) => c
                .prepare(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE address = ?1 ORDER BY created_at, id"
                ))?
                .query_map([normalize_address(a)], token_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
            None => c
                .prepare(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY address, created_at, id"
                ))?
                .query_map([], token_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
        };
        Ok(rows)
    }

    /// The token stored under `hash`.
    pub(in crate::store) fn token_find(&self, hash: &[u8; 32]) -> Result<Option<ApiToken>> {
        Ok(self
            .sql()
            .prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = ?1"
            ))?
            .query_row([&hash[..]], token_row)
            .optional()?)
    }

    /// Mark a token used.
    pub(in crate::store) fn token_touch(&self, id: &str, now_ms: i64) -> Result<()> {
        self.sql().execute(
            "UPDATE api_tokens SET last_used = max(coalesce(last_used, 0), ?2) WHERE id = ?1",
            params![id, now_ms],
        )?;
        Ok(())
    }

    /// Delete a token (of `address` only, when given).
    pub(in crate::store) fn token_revoke(&self, id: &str, address: Option<&str>) -> Result<bool> {
        let n = match address {
            Some(a) => self.sql().execute(
                "DELETE FROM api_tokens WHERE id = ?1 AND address = ?2",
                params![id, normalize_address(a)],
            )?,
            None => self
                .sql()
                .execute("DELETE FROM api_tokens WHERE id = ?1", [id])?,
        };
        Ok(n == 1)
    }

    /// Delete every token of `address` (the user goes).
    pub(in crate::store) fn tokens_revoke_all(&self, address: &str) -> Result<usize> {
        Ok(self.sql().execute(
            "DELETE FROM api_tokens WHERE address = ?1",
            [normalize_address(address)],
        )?)
    }

    /// See `Store::claim_idempotency_key`.
    pub(in crate::store) fn idempotency_claim(
        &self,
        address: &str,
        key: &str,
        body_hash: &[u8; 32],
        msgid: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<KeyClaim> {
        let c = self.sql();
        c.execute(
            "DELETE FROM api_idempotency WHERE created_at <= ?1",
            [now_ms - ttl_ms],
        )?;
        let row: Option<KeyRow> = c
            .query_row(
                "SELECT body_hash, msgid, created_at, status, response FROM api_idempotency
                 WHERE address = ?1 AND key = ?2",
                params![address, key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        Ok(match row {
            None => {
                c.execute(
                    "INSERT INTO api_idempotency(address, key, body_hash, created_at, msgid)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![address, key, &body_hash[..], now_ms, msgid],
                )?;
                KeyClaim::Fresh
            }
            Some((h, ..)) if h != body_hash[..] => KeyClaim::OtherBody,
            Some((_, _, _, Some(status), body)) => KeyClaim::Answered {
                status: u16::try_from(status).unwrap_or(500),
                body: body.unwrap_or_default(),
            },
            Some((_, msgid, started_at, None, _)) => KeyClaim::InProgress { msgid, started_at },
        })
    }

    /// See `Store::take_over_idempotency_key`.
    pub(in crate::store) fn idempotency_take_over(
        &self,
        address: &str,
        key: &str,
        old_msgid: &str,
        msgid: &str,
        now_ms: i64,
    ) -> Result<bool> {
        Ok(self.sql().execute(
            "UPDATE api_idempotency SET msgid = ?4, created_at = ?5
             WHERE address = ?1 AND key = ?2 AND msgid = ?3 AND status IS NULL",
            params![address, key, old_msgid, msgid, now_ms],
        )? == 1)
    }

    /// See `Store::answer_idempotency_key`.
    pub(in crate::store) fn idempotency_answer(
        &self,
        address: &str,
        key: &str,
        msgid: &str,
        status: u16,
        body: &[u8],
    ) -> Result<()> {
        self.sql().execute(
            "UPDATE api_idempotency SET status = ?4, response = ?5
             WHERE address = ?1 AND key = ?2 AND msgid = ?3",
            params![address, key, msgid, status, body],
        )?;
        Ok(())
    }

    /// See `Store::release_idempotency_key`.
    pub(in crate::store) fn idempotency_release(
        &self,
        address: &str,
        key: &str,
        msgid: &str,
    ) -> Result<()> {
        self.sql().execute(
            "DELETE FROM api_idempotency WHERE address = ?1 AND key = ?2 AND msgid = ?3
             AND status IS NULL",
            params![address, key, msgid],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::api::{token_hash, CreateRefused, KeyClaim, Scopes, MAX_PER_USER};
    use crate::store::sqlite::MemDb;

    #[test]
    fn tokens_are_stored_hashed_found_touched_and_revoked() {
        let m = MemDb::new();
        let db = m.db();
        let read = Scopes::parse(["read"]).unwrap();
        assert_eq!(
            db.token_create("a@x", "n", read, 1).unwrap().unwrap_err(),
            CreateRefused::NoUser
        );
        db.user_add("a@x", "h", 0).unwrap();
        let t = db.token_create("A@X", "ci", read, 1_000).unwrap().unwrap();
        let found = db.token_find(&token_hash(&t.token)).unwrap().unwrap();
        assert_eq!(
            (found.id.as_str(), found.address.as_str(), found.scopes),
            (t.id.as_str(), "a@x", read)
        );
        assert_eq!(found.last_used, None);
        let stored: Vec<u8> = db
            .sql()
            .query_row("SELECT token_hash FROM api_tokens", [], |r| r.get(0))
            .unwrap();
        assert_ne!(stored, t.token.as_bytes(), "only a hash is stored");
        db.token_touch(&t.id, 5_000).unwrap();
        db.token_touch(&t.id, 4_000).unwrap();
        assert_eq!(
            db.token_list(Some("a@x")).unwrap()[0].last_used,
            Some(5_000)
        );
        assert!(!db.token_revoke(&t.id, Some("b@x")).unwrap(), "not b's");
        assert!(db.token_revoke(&t.id, Some("a@x")).unwrap());
        assert_eq!(db.token_find(&token_hash(&t.token)).unwrap(), None);
        for i in 0..MAX_PER_USER {
            db.token_create("a@x", &format!("t{i}"), read, i)
                .unwrap()
                .unwrap();
        }
        assert_eq!(
            db.token_create("a@x", "one more", read, 0)
                .unwrap()
                .unwrap_err(),
            CreateRefused::TooMany
        );
        assert_eq!(db.tokens_revoke_all("a@x").unwrap(), MAX_PER_USER as usize);
    }

    #[test]
    fn a_key_is_answered_once_per_body_and_expires() {
        let m = MemDb::new();
        let db = m.db();
        let (h1, h2) = ([1u8; 32], [2u8; 32]);
        let day = 86_400_000;
        assert_eq!(
            db.idempotency_claim("a@x", "k", &h1, "m1", 0, day).unwrap(),
            KeyClaim::Fresh
        );
        assert_eq!(
            db.idempotency_claim("a@x", "k", &h1, "m2", 10, day)
                .unwrap(),
            KeyClaim::InProgress {
                msgid: "m1".into(),
                started_at: 0
            }
        );
        assert_eq!(
            db.idempotency_claim("a@x", "k", &h2, "m2", 10, day)
                .unwrap(),
            KeyClaim::OtherBody
        );
        // Another user's key of the same name is another key.
        assert_eq!(
            db.idempotency_claim("b@x", "k", &h2, "m3", 10, day)
                .unwrap(),
            KeyClaim::Fresh
        );
        // A take-over names the attempt it replaces: only one of two wins.
        assert!(db
            .idempotency_take_over("a@x", "k", "m1", "m4", 20)
            .unwrap());
        assert!(!db
            .idempotency_take_over("a@x", "k", "m1", "m5", 20)
            .unwrap());
        db.idempotency_answer("a@x", "k", "m4", 201, b"{}").unwrap();
        assert_eq!(
            db.idempotency_claim("a@x", "k", &h1, "m6", 30, day)
                .unwrap(),
            KeyClaim::Answered {
                status: 201,
                body: b"{}".to_vec()
            }
        );
        // An answered key is not released.
        db.idempotency_release("a@x", "k", "m4").unwrap();
        assert!(matches!(
            db.idempotency_claim("a@x", "k", &h1, "m6", 30, day)
                .unwrap(),
            KeyClaim::Answered { .. }
        ));
        // A day after it was used it is free for anything.
        assert_eq!(
            db.idempotency_claim("a@x", "k", &h2, "m7", 20 + day, day)
                .unwrap(),
            KeyClaim::Fresh
        );
        db.idempotency_release("a@x", "k", "m7").unwrap();
        assert_eq!(
            db.idempotency_claim("a@x", "k", &h1, "m8", 21 + day, day)
                .unwrap(),
            KeyClaim::Fresh
        );
    }
}
