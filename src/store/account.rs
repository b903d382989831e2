//! Account self-service (issue 24): what a user changes from the webmail's
//! settings page. App passwords (the only passwords IMAP, POP3 and SMTP
//! take once the second factor is on), the second factor's enrolment and
//! recovery codes, a password change that keeps the session it was made
//! from. Secrets arrive here already hashed or sealed.

use super::users::{check_password, TotpOutcome};
use super::{Result, Store};
use crate::flow::notice::State as NoticeState;

/// App passwords one user may hold.
pub const MAX_APP_PASSWORDS: i64 = 50;
/// How stale an app password's recorded last use may get before a login
/// writes it again (a mail client logs in every few minutes).
pub const LAST_USE_EVERY_MS: i64 = 60_000;

/// One app password (its secret is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPassword {
    /// Its id (12 hex digits).
    pub id: String,
    /// What the user called it.
    pub label: String,
    /// When it was made (unix ms).
    pub created_at: i64,
    /// Its last successful login (unix ms, to [`LAST_USE_EVERY_MS`]).
    pub last_used: Option<i64>,
}

/// What adding an app password did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppPasswordAdded {
    /// Stored.
    Added,
    /// No such user.
    NoUser,
    /// The user has [`MAX_APP_PASSWORDS`] already.
    TooMany,
}

/// Which credential a mail protocol login (IMAP, POP3, SMTP AUTH) gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailCredential {
    /// The account password, the user having no second factor.
    Account,
    /// One of the user's app passwords.
    App(AppPassword),
    /// The account password of a user with a second factor on: refused.
    AccountWithSecondFactor,
    /// Nothing right.
    Wrong,
}

impl Store {
    /// Judge the password of a mail protocol login of `address`: the
    /// account password, unless the second factor is on, or an app password
    /// (`app_digest`: its digest). The account password's argon2 work is
    /// always done, so the time a login takes tells neither whether the
    /// user exists nor whether it has a second factor.
    pub async fn mail_credential(
        &self,
        address: &str,
        password: &str,
        app_digest: [u8; 32],
    ) -> Result<MailCredential> {
        let (a, pw) = (address.to_string(), password.to_string());
        self.read(move |db| {
            let account = check_password(db.user_password_hash(&a)?.as_deref(), &pw);
            if let Some(app) = db.app_password_find(&a, &app_digest)? {
                return Ok(MailCredential::App(app));
            }
            Ok(match (account, db.totp_secret(&a)?.is_some()) {
                (false, _) => MailCredential::Wrong,
                (true, false) => MailCredential::Account,
                (true, true) => MailCredential::AccountWithSecondFactor,
            })
        })
        .await
    }

    /// Record a login with app password `id` at `now_ms`.
    pub async fn app_password_used(&self, id: &str, now_ms: i64) -> Result<()> {
        let id = id.to_string();
        self.write(move |db| db.app_password_used(&id, now_ms))
            .await
    }

    /// Store a new app password of `address` (its digest only).
    pub async fn add_app_password(
        &self,
        address: &str,
        id: &str,
        label: &str,
        digest: [u8; 32],
        now_ms: i64,
    ) -> Result<AppPasswordAdded> {
        let (a, i, l) = (address.to_string(), id.to_string(), label.to_string());
        self.write(move |db| db.app_password_add(&a, &i, &l, &digest, now_ms))
            .await
    }

    /// The app passwords of `address`, oldest first.
    pub async fn app_passwords(&self, address: &str) -> Result<Vec<AppPassword>> {
        let a = address.to_string();
        self.read(move |db| db.app_passwords(&a)).await
    }

    /// Revoke app password `id` of `address`; false if it has none of that
    /// id. The next login with it fails: logins read the table.
    pub async fn revoke_app_password(&self, address: &str, id: &str) -> Result<bool> {
        let (a, i) = (address.to_string(), id.to_string());
        self.write(move |db| db.app_password_revoke(&a, &i)).await
    }

    /// Replace the password hash of `address`, ending every web session of
    /// the user but `keep` (the token of the session that changed it);
    /// false if there is no such user.
    pub async fn change_password(&self, address: &str, hash: &str, keep: &str) -> Result<bool> {
        let (a, h, k) = (address.to_string(), hash.to_string(), keep.to_string());
        self.write(move |db| db.user_change_password(&a, &h, &k))
            .await
    }

    /// Start (or restart) the second factor's enrolment of `address` with
    /// `secret` (sealed); false if there is no such user.
    pub async fn start_totp_enrolment(
        &self,
        address: &str,
        secret: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let (a, s) = (address.to_string(), secret.to_string());
        self.write(move |db| db.totp_pending_set(&a, &s, now_ms))
            .await
    }

    /// The enrolment in progress of `address`: (sealed secret, started at
    /// in unix ms).
    pub async fn totp_enrolment(&self, address: &str) -> Result<Option<(String, i64)>> {
        let a = address.to_string();
        self.read(move |db| db.totp_pending(&a)).await
    }

    /// Turn the second factor on with the enrolment's `secret` (sealed),
    /// whose code of time step `step` the user just gave, with recovery
    /// codes `recovery` (digests), ending the user's web sessions but
    /// `keep`; false if that enrolment is no longer the one in progress.
    pub async fn confirm_totp_enrolment(
        &self,
        address: &str,
        secret: &str,
        step: i64,
        recovery: Vec<[u8; 32]>,
        now_ms: i64,
        keep: &str,
    ) -> Result<bool> {
        let (a, s, k) = (address.to_string(), secret.to_string(), keep.to_string());
        self.write(move |db| db.totp_confirm(&a, &s, step, &recovery, now_ms, &k))
            .await
    }

    /// Turn the second factor of `address` off with its recovery codes,
    /// ending the user's web sessions but `keep`; false if it was not on.
    pub async fn disable_totp_keeping(&self, address: &str, keep: &str) -> Result<bool> {
        let (a, k) = (address.to_string(), keep.to_string());
        self.write(move |db| db.totp_disable_keeping(&a, &k)).await
    }

    /// Judge and record one recovery code (its digest) of `address` at
    /// `now_ms`: accepted once; a wrong one counts towards the second
    /// factor's lock like a wrong TOTP code.
    pub async fn totp_recovery_attempt(
        &self,
        address: &str,
        digest: [u8; 32],
        now_ms: i64,
    ) -> Result<TotpOutcome> {
        let a = address.to_string();
        self.write(move |db| db.totp_recovery_attempt(&a, &digest, now_ms))
            .await
    }

    /// How many unused recovery codes `address` has.
    pub async fn recovery_codes_left(&self, address: &str) -> Result<i64> {
        let a = address.to_string();
        self.read(move |db| db.totp_recovery_left(&a)).await
    }

    /// The ordinary address `address` wants told of each new PEC, if any.
    pub async fn notice_email(&self, address: &str) -> Result<Option<String>> {
        let a = address.to_string();
        self.read(move |db| Ok(db.notice_get(&a)?.map(|(e, _)| e)))
            .await
    }

    /// Set the ordinary address told of each new PEC of `address` (empty:
    /// none); false if there is no such user.
    pub async fn set_notice_email(&self, address: &str, email: &str) -> Result<bool> {
        let (a, e) = (address.to_string(), email.to_string());
        self.write(move |db| db.notice_set(&a, &e)).await
    }

    /// The notice address of `address` and its notices' state (the notice
    /// job's facts; a delivery asks whether there is one).
    pub fn notice_blocking(&self, address: &str) -> Result<Option<(String, NoticeState)>> {
        self.read_blocking(|db| db.notice_get(address))
    }
}
