//! Logins: the password check and the provider-wide throttle shared by
//! SMTP AUTH, IMAP, POP3 and the webmail.

use std::net::IpAddr;
use std::sync::Arc;

use crate::smtp::Reply;
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
        let (a, pw) = (address.clone(), password.to_string());
        let Ok(_slot) = self.ctx.password_checks.acquire().await else {
            return None;
        };
        let ok = self
            .ctx
            .store
            .read(move |c| {
                // argon2 is deliberately slow: it runs on the blocking pool.
                Ok(users::check_password(
                    users::password_hash(c, &a)?.as_deref(),
                    &pw,
                ))
            })
            .await
            .unwrap_or(false);
        ok.then_some(address)
    }

    /// [`UserAuth::verify`] behind the provider-wide login throttle shared by
    /// every protocol; `protocol` names it in the log and the metrics.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        ip: IpAddr,
        protocol: &'static str,
    ) -> Result<String, LoginError> {
        let (address, attempt) = self.password_step(user, password, ip, protocol).await?;
        attempt.succeeded();
        tracing::info!(protocol, user = %address, peer = %ip, "login");
        Ok(address)
    }

    /// The password step of a login that may need more: the address and
    /// the throttle's [`Attempt`], which still counts as a failure until the
    /// caller says every factor passed. A wrong password is logged and
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
                attempt.failed();
                self.logged(None, protocol, &address, ip);
                Err(LoginError::Invalid)
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
        let r = self.verify(user, password).await;
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
