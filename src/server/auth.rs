//! Logins: the password check and the provider-wide throttle shared by
//! SMTP AUTH, IMAP, POP3 and the webmail. The webmail takes the account
//! password and the second factor (a TOTP code or a recovery code); the
//! mail protocols take the account password only while the user has no
//! second factor, and the user's app passwords always.

use std::net::IpAddr;
use std::sync::Arc;

use crate::smtp::Reply;
use crate::store::account::{self, MailCredential};
use crate::store::users;
use crate::throttle::Attempt;

use super::Ctx;

/// Why a login was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginError {
    /// Wrong address or password.
    Invalid,
    /// Too many failed attempts from this address or network: try later.
    Throttled,
}

/// Why the web login's second factor did not let a user in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactorError {
    /// The user has one and sent no code.
    Required,
    /// The code is wrong.
    Wrong,
    /// The code is right but was used already.
    Replayed,
    /// Too many wrong codes in a row: locked for a while.
    Locked,
    /// The secret cannot be read or opened (logged).
    Unavailable,
}

/// Password checks shared by SMTP AUTH, IMAP LOGIN and every other protocol.
pub struct UserAuth {
    ctx: Arc<Ctx>,
}

impl UserAuth {
    /// Authenticator over the users table.
    pub fn new(ctx: Arc<Ctx>) -> UserAuth {
        UserAuth { ctx }
    }

    /// The canonical address if the password is right (no throttling).
    pub async fn verify(&self, user: &str, password: &str) -> Option<String> {
        let address = users::normalize(user);
        let Ok(_slot) = self.ctx.password_checks.acquire().await else {
            return None;
        };
        let ok = self
            .ctx
            .store
            .password_matches(&address, password)
            .await
            .unwrap_or(false);
        ok.then_some(address)
    }

    /// The canonical address if `password` opens `user`'s mailbox over a
    /// mail protocol (IMAP, POP3, SMTP AUTH; no throttling): the account
    /// password while the user has no second factor, or one of the user's
    /// app passwords. A refusal is logged with its reason.
    pub async fn verify_mail(
        &self,
        user: &str,
        password: &str,
        ip: IpAddr,
        protocol: &'static str,
    ) -> Option<String> {
        let address = users::normalize(user);
        let Ok(_slot) = self.ctx.password_checks.acquire().await else {
            return None;
        };
        let digest = crate::auth::codes::digest(password);
        let judged = self
            .ctx
            .store
            .mail_credential(&address, password, digest)
            .await;
        match judged {
            Ok(MailCredential::Account) => Some(address),
            Ok(MailCredential::App(app)) => {
                let now = self.ctx.unix_ms();
                if app
                    .last_used
                    .is_none_or(|t| now - t >= account::LAST_USE_EVERY_MS)
                {
                    if let Err(e) = self.ctx.store.app_password_used(&app.id, now).await {
                        tracing::warn!(user = %address, error = %e, "app password use not recorded");
                    }
                }
                tracing::info!(protocol, user = %address, peer = %ip, app_password = %app.id, label = %app.label, "app password used");
                Some(address)
            }
            Ok(MailCredential::AccountWithSecondFactor) => {
                tracing::warn!(
                    protocol,
                    user = %address,
                    peer = %ip,
                    "account password refused: the second factor is on, mail clients need an app password"
                );
                None
            }
            Ok(MailCredential::Wrong) => None,
            Err(e) => {
                tracing::error!(user = %address, error = %e, "login not checked");
                None
            }
        }
    }

    /// A mail protocol login ([`UserAuth::verify_mail`]) behind the
    /// provider-wide login throttle shared by every protocol: a wrong app
    /// password counts as a failure like a wrong password; `protocol` names
    /// it in the log and the metrics.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        ip: IpAddr,
        protocol: &'static str,
    ) -> Result<String, LoginError> {
        let address = users::normalize(user);
        let attempt = self
            .ctx
            .throttle
            .before_attempt(&address, ip)
            .await
            .ok_or(LoginError::Throttled)?;
        match self.verify_mail(user, password, ip, protocol).await {
            Some(a) => {
                attempt.succeeded().await;
                tracing::info!(protocol, user = %a, peer = %ip, "login");
                Ok(a)
            }
            None => {
                attempt.failed().await;
                self.logged(None, protocol, &address, ip);
                Err(LoginError::Invalid)
            }
        }
    }

    /// The password step of the webmail's login, which may need more: the
    /// address and the throttle's [`Attempt`], which still counts as a
    /// failure until the caller says every factor passed. Only the account
    /// password (never an app password). A wrong password is logged and
    /// counted here.
    pub async fn password_step(
        &self,
        user: &str,
        password: &str,
        ip: IpAddr,
        protocol: &'static str,
    ) -> Result<(String, Attempt<'_>), LoginError> {
        let address = users::normalize(user);
        let attempt = self
            .ctx
            .throttle
            .before_attempt(&address, ip)
            .await
            .ok_or(LoginError::Throttled)?;
        match self.verify(user, password).await {
            Some(a) => Ok((a, attempt)),
            None => {
                attempt.failed().await;
                self.logged(None, protocol, &address, ip);
                Err(LoginError::Invalid)
            }
        }
    }

    /// The web login's second factor for `address`, whose password was
    /// right: `Ok` when it passed or the user has none. Wrong codes count
    /// per account, whatever network they come from, and lock the second
    /// factor after [`users::TOTP_MAX_FAILURES`] in a row; a code is
    /// accepted once (its time step, and every earlier one, are then used).
    pub async fn second_factor(
        &self,
        address: &str,
        code: Option<&str>,
        ip: IpAddr,
    ) -> Result<(), SecondFactorError> {
        let stored = self.ctx.store.totp_secret(address).await.map_err(|e| {
            tracing::error!(user = address, error = %e, "second factor not readable");
            SecondFactorError::Unavailable
        })?;
        let Some(stored) = stored else {
            return Ok(());
        };
        let code = code.unwrap_or("").trim();
        if code.is_empty() {
            return Err(SecondFactorError::Required);
        }
        let now = self.ctx.unix_ms();
        if crate::auth::codes::looks_like_recovery_code(code) {
            let digest = crate::auth::codes::digest(code);
            let outcome = self
                .ctx
                .store
                .totp_recovery_attempt(address, digest, now)
                .await
                .map_err(|e| unavailable(address, "recovery code not recorded", e))?;
            if outcome == users::TotpOutcome::Accepted {
                let left = self
                    .ctx
                    .store
                    .recovery_codes_left(address)
                    .await
                    .unwrap_or(0);
                tracing::warn!(user = address, peer = %ip, left, "recovery code used in place of the second factor");
            }
            return self.second_factor_outcome(address, ip, outcome);
        }
        let secret = match &self.ctx.totp_key {
            Some(k) => k.open(address, &stored).map_err(|e| e.to_string()),
            None => Err("no web.totp_key_file loaded".to_string()),
        };
        let secret =
            secret.map_err(|e| unavailable(address, "second-factor secret cannot be opened", e))?;
        let step = super::web::totp::matching_step(&secret, code, self.ctx.now_secs());
        let outcome = self
            .ctx
            .store
            .totp_attempt(address, step, now)
            .await
            .map_err(|e| unavailable(address, "second factor not recorded", e))?;
        self.second_factor_outcome(address, ip, outcome)
    }

    /// What one judged second-factor answer means for the login, logged
    /// and counted.
    fn second_factor_outcome(
        &self,
        address: &str,
        ip: IpAddr,
        outcome: users::TotpOutcome,
    ) -> Result<(), SecondFactorError> {
        let refused = |why: &str| {
            tracing::warn!(protocol = "web", user = address, peer = %ip, why, "second factor refused");
            self.ctx.metrics.login_failure("web");
        };
        match outcome {
            users::TotpOutcome::Accepted | users::TotpOutcome::NotEnabled => Ok(()),
            users::TotpOutcome::Replayed => {
                refused("code already used");
                Err(SecondFactorError::Replayed)
            }
            users::TotpOutcome::Wrong { locked } => {
                refused("wrong code");
                if locked {
                    tracing::warn!(
                        user = address,
                        peer = %ip,
                        failures = users::TOTP_MAX_FAILURES,
                        minutes = users::TOTP_LOCK_MS / 60_000,
                        "second factor locked after too many consecutive wrong codes"
                    );
                    self.ctx.metrics.totp_lockout();
                    return Err(SecondFactorError::Locked);
                }
                Err(SecondFactorError::Wrong)
            }
            users::TotpOutcome::Locked(_) => {
                refused("locked");
                Err(SecondFactorError::Locked)
            }
        }
    }

    /// [`UserAuth::login`] for SMTP AUTH; the error is the SMTP reply.
    pub async fn check(&self, user: &str, password: &str, ip: IpAddr) -> Result<String, Reply> {
        self.login(user, password, ip, "smtp")
            .await
            .map_err(|e| match e {
                LoginError::Throttled => Reply::auth_throttled(),
                LoginError::Invalid => Reply::auth_failed(),
            })
    }

    /// Log a login's outcome (with protocol, user and peer) and count a
    /// failure in the metrics; gives the outcome back.
    fn logged(&self, r: Option<String>, protocol: &str, user: &str, ip: IpAddr) -> Option<String> {
        match &r {
            Some(u) => tracing::info!(protocol, user = %u, peer = %ip, "login"),
            None => {
                tracing::warn!(protocol, user, peer = %ip, "login failed");
                self.ctx.metrics.login_failure(protocol);
            }
        }
        r
    }
}

impl crate::imap::ImapAuth for UserAuth {
    async fn authenticate(&self, user: &str, password: &str, peer: IpAddr) -> Result<String, ()> {
        // The IMAP session applies the same shared throttle itself.
        let r = self.verify_mail(user, password, peer, "imap").await;
        self.logged(r, "imap", &users::normalize(user), peer)
            .ok_or(())
    }

    async fn quota(&self, address: &str) -> Option<u64> {
        self.ctx.quota_of(address).await
    }
}

impl crate::pop3::Pop3Auth for UserAuth {
    async fn login(
        &self,
        user: &str,
        password: &str,
        peer: IpAddr,
    ) -> Result<String, crate::pop3::LoginRefused> {
        UserAuth::login(self, user, password, peer, "pop3")
            .await
            .map_err(|e| match e {
                LoginError::Invalid => crate::pop3::LoginRefused::Invalid,
                LoginError::Throttled => crate::pop3::LoginRefused::Throttled,
            })
    }
}

/// Seal with `key` every second-factor secret still stored in the plain hex
/// of older versions; how many were sealed. Run at `serve` start: a
/// migration that needs a key kept outside the database cannot be SQL.
pub fn seal_plain_totp_secrets(
    store: &crate::store::Store,
    key: &crate::auth::totp_key::TotpKey,
) -> Result<usize, String> {
    use crate::auth::totp_key::TotpKey;
    let all = store.totp_secrets_blocking().map_err(|e| e.to_string())?;
    let mut sealed = Vec::new();
    for (address, stored) in all.into_iter().filter(|(_, s)| !TotpKey::is_sealed(s)) {
        let secret = key
            .open(&address, &stored)
            .map_err(|e| format!("{address}: {e}"))?;
        let new = key.seal(&address, &secret).map_err(|e| e.to_string())?;
        sealed.push((address, stored, new));
    }
    if sealed.is_empty() {
        return Ok(0);
    }
    store
        .reseal_totp_blocking(sealed)
        .map_err(|e| e.to_string())
}

/// A second factor that cannot be judged now (the store or the sealing
/// key failed): logged with `what`, and the login refused as unavailable.
fn unavailable(address: &str, what: &str, e: impl std::fmt::Display) -> SecondFactorError {
    tracing::error!(user = address, error = %e, "{what}");
    SecondFactorError::Unavailable
}
