//! Which database the store of a configuration uses: `[store]` read into
//! `store::Database` (its password read), for `serve` and the commands.

use crate::config::{Config, StoreBackend, StoreConfigError, DEFAULT_STORE_POOL};
use crate::store::{Database, PgSettings};

/// The database `[store]` names, its password read (`password_file`, else
/// `PGPASSWORD`).
pub fn database(cfg: &Config) -> Result<Database, StoreConfigError> {
    let s = &cfg.store;
    if s.backend != StoreBackend::Postgresql {
        return Ok(Database::Sqlite);
    }
    Ok(Database::Postgres(PgSettings {
        url: s.url.clone().ok_or(StoreConfigError::NoUrl)?,
        password: cfg.store_password()?,
        pool: s.pool.unwrap_or(DEFAULT_STORE_POOL),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_sections_become_databases_without_showing_the_password() {
        use std::os::unix::fs::PermissionsExt;
        let base = "[provider]\nname = \"A\"\ndomains = [\"a.test\"]\nhostname = \"mx.a.test\"\n\
                    [signing]\ncertificate = \"s.pem\"\nkey = \"s.key\"\n\
                    [tls]\ncertificate = \"t.pem\"\nkey = \"t.key\"\n";
        let dir = tempfile::tempdir().unwrap();
        let c = Config::from_str_at(base, dir.path()).unwrap();
        assert_eq!(database(&c).unwrap(), Database::Sqlite);
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cr3t\n").unwrap();
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = Config::from_str_at(
            &format!(
                "{base}[store]\nbackend = \"postgresql\"\nurl = \"postgresql://pecd@/pecd?host=/run/postgresql\"\npassword_file = \"pw\"\n"
            ),
            dir.path(),
        )
        .unwrap();
        match database(&c).unwrap() {
            Database::Postgres(s) => {
                assert_eq!(s.url, "postgresql://pecd@/pecd?host=/run/postgresql");
                assert_eq!(s.password.as_deref(), Some("s3cr3t"));
                assert_eq!(s.pool, DEFAULT_STORE_POOL);
                assert!(!format!("{s:?}").contains("s3cr3t"), "no password in logs");
            }
            other => panic!("{other:?}"),
        }
    }
}
