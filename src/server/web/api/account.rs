//! `/api/v1/account/`: what a user changes about the account itself
//! (issue 24, "Impostazioni"): the password, the second factor with its
//! recovery codes, app passwords for IMAP, POP3 and SMTP. Only from a web
//! session (cookie + CSRF token), never with any other credential: these
//! routes make and remove credentials.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;

use super::super::{totp, ApiError, Auth, Peer, Web};
use crate::auth::codes;
use crate::auth::policy::WeakPassword;
use crate::server::auth::{LoginError, SecondFactorError, UserAuth};
use crate::store::account::{AppPassword, AppPasswordAdded, MAX_APP_PASSWORDS};

/// How long an enrolment waits for its first code.
pub const ENROLMENT_MS: i64 = 15 * 60 * 1000;
/// Longest label of an app password, in characters.
pub const MAX_LABEL_CHARS: usize = 100;

/// A request from a logged-in web session and nothing else: a request
/// carrying an `Authorization` header is refused, whatever else it has.
pub struct WebSession(pub Auth);

impl FromRequestParts<Arc<Web>> for WebSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, ApiError> {
        if parts.headers.contains_key(header::AUTHORIZATION) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "account settings are changed from a web session (cookie and X-CSRF-Token) only",
            ));
        }
        Auth::from_request_parts(parts, web).await.map(WebSession)
    }
}

fn json_body<T>(
    body: Result<Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, ApiError> {
    body.map(|Json(b)| b)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))
}

fn wrong(what: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, what)
}

fn unprocessable(why: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, why)
}

fn conflict(why: &str) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, why)
}

// ---------------------------------------------------------------- password

#[derive(Deserialize)]
pub(super) struct PasswordBody {
    current: String,
    new: String,
}

/// `POST /api/v1/account/password`: the current password proves the
/// person at the keyboard is the user (a wrong one counts in the login
/// throttle like a failed login); the new one must pass the policy of
/// `pecd user passwd`. The user's other web sessions end.
pub(super) async fn password(
    State(web): State<Arc<Web>>,
    WebSession(a): WebSession,
    Extension(Peer(peer)): Extension<Peer>,
    body: Result<Json<PasswordBody>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let b = json_body(body)?;
    let auth = UserAuth::new(web.ctx.clone());
    let (_, attempt) = match auth
        .password_step(&a.user, &b.current, peer.ip(), "web")
        .await
    {
        Ok(x) => x,
        Err(LoginError::Throttled) => {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed logins: try again later",
            ))
        }
        Err(LoginError::Invalid) => return Err(wrong("the current password is wrong")),
    };
    attempt.succeeded().await;
    crate::auth::policy::check(&b.new).map_err(|e| {
        // `reason` lets a page say it in its own language.
        let reason = match e {
            WeakPassword::TooShort { .. } => "too_short",
            WeakPassword::Common => "common",
        };
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: serde_json::json!({"error": e.to_string(), "reason": reason}),
        }
    })?;
    let new = b.new;
    let hash = tokio::task::spawn_blocking(move || crate::store::users::hash_password(&new))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    if !web
        .ctx
        .store
        .change_password(&a.user, &hash, &a.token)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::unauthorized());
    }
    tracing::info!(user = %a.user, peer = %peer.ip(), "password changed from the webmail (the user's other web sessions are ended)");
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- second factor

fn key(web: &Web) -> Result<&crate::auth::totp_key::TotpKey, ApiError> {
    web.ctx
        .totp_key
        .as_deref()
        .ok_or_else(|| ApiError::internal("no web.totp_key_file loaded"))
}

async fn totp_on(web: &Web, user: &str) -> Result<bool, ApiError> {
    Ok(web
        .ctx
        .store
        .totp_secret(user)
        .await
        .map_err(ApiError::internal)?
        .is_some())
}

/// The QR code of `uri` as an SVG `data:` URI (for an `<img>`: the page's
/// policy allows `data:` images and no inline markup from the API).
pub fn qr_data_uri(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    Some(format!(
        "data:image/svg+xml;base64,{}",
        openssl::base64::encode_block(svg.as_bytes())
    ))
}

/// `POST /api/v1/account/totp`: a new secret, pending until a code of it
/// confirms it (`409` while a second factor is on: turn it off first).
pub(super) async fn totp_start(
    State(web): State<Arc<Web>>,
    WebSession(a): WebSession,
) -> Result<Json<serde_json::Value>, ApiError> {
    if totp_on(&web, &a.user).await? {
        return Err(conflict(
            "the second factor is on already: turn it off before enrolling a new one",
        ));
    }
    let secret = totp::new_secret();
    let sealed = key(&web)?
        .seal(&a.user, &secret)
        .map_err(ApiError::internal)?;
    let now = web.ctx.unix_ms();
    if !web
        .ctx
        .store
        .start_totp_enrolment(&a.user, &sealed, now)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::unauthorized());
    }
    let uri = totp::uri(&web.ctx.cfg().provider.name, &a.user, &secret);
    Ok(Json(serde_json::json!({
        "secret": totp::base32(&secret),
        "otpauth_uri": uri,
        "qr": qr_data_uri(&uri),
    })))
}

#[derive(Deserialize)]
pub(super) struct CodeBody {
    code: String,
}

/// `POST /api/v1/account/totp/confirm`: a code of the pending secret turns
/// the second factor on; the answer holds the ten recovery codes, shown
/// this once (only their hashes are kept).
pub(super) async fn totp_confirm(
    State(web): State<Arc<Web>>,
    WebSession(a): WebSession,
    body: Result<Json<CodeBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let b = json_body(body)?;
    if totp_on(&web, &a.user).await? {
        return Err(conflict("the second factor is on already"));
    }
    let now = web.ctx.unix_ms();
    let pending = web
        .ctx
        .store
        .totp_enrolment(&a.user)
        .await
        .map_err(ApiError::internal)?;
    let Some((sealed, started)) = pending.filter(|(_, at)| now - at < ENROLMENT_MS) else {
        return Err(conflict(
            "no enrolment in progress (or it expired after 15 minutes): start again",
        ));
    };
    let secret = key(&web)?
        .open(&a.user, &sealed)
        .map_err(ApiError::internal)?;
    let Some(step) = totp::matching_step(&secret, &b.code, web.ctx.now_secs()) else {
        return Err(wrong(
            "wrong code: check the authenticator app's time and try the code it shows now",
        ));
    };
    let mut shown = Vec::with_capacity(codes::RECOVERY_CODES);
    for _ in 0..codes::RECOVERY_CODES {
        shown.push(codes::new_recovery_code().map_err(ApiError::internal)?);
    }
    let digests = shown.iter().map(|c| codes::digest(c)).collect();
    if !web
        .ctx
        .store
        .confirm_totp_enrolment(&a.user, &sealed, step, digests, now, &a.token)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(conflict(
            "this enrolment was replaced by a newer one: confirm that one",
        ));
    }
    tracing::info!(user = %a.user, started, "second factor enabled from the webmail (the user's other web sessions are ended)");
    Ok(Json(serde_json::json!({ "recovery_codes": shown })))
}

/// `DELETE /api/v1/account/totp`: a current code (or a recovery code)
/// turns the second factor off, with its recovery codes. Wrong codes count
/// towards the second factor's lock as at the login.
pub(super) async fn totp_disable(
    State(web): State<Arc<Web>>,
    WebSession(a): WebSession,
    Extension(Peer(peer)): Extension<Peer>,
    body: Result<Json<CodeBody>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let b = json_body(body)?;
    if !totp_on(&web, &a.user).await? {
        return Err(conflict("the second factor is not on"));
    }
    let auth = UserAuth::new(web.ctx.clone());
    match auth.second_factor(&a.user, Some(&b.code), peer.ip()).await {
        Ok(()) => {}
        Err(SecondFactorError::Required) => {
            return Err(unprocessable("a code is needed to turn the second factor off"))
        }
        Err(SecondFactorError::Wrong) => return Err(wrong("wrong second-factor code")),
        Err(SecondFactorError::Replayed) => {
            return Err(wrong(
                "this second-factor code was used already: wait for the next one",
            ))
        }
        Err(SecondFactorError::Locked) => {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many wrong second-factor codes: the second factor of this account is locked, try again later",
            ))
        }
        Err(SecondFactorError::Unavailable) => return Err(ApiError::internal("second factor")),
    }
    web.ctx
        .store
        .disable_totp_keeping(&a.user, &a.token)
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(user = %a.user, peer = %peer.ip(), "second factor disabled from the webmail (the user's other web sessions are ended)");
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- app passwords

/// One app password as the API shows it.
pub fn app_password_json(p: &AppPassword) -> serde_json::Value {
    serde_json::json!({
        "id": p.id,
        "label": p.label,
        "created": crate::pec::clock::iso8601_ms(p.created_at),
        "last_used": p.last_used.map(crate::pec::clock::iso8601_ms),
    })
}

#[derive(Deserialize)]
pub(super) struct LabelBody {
    label: String,
}

/// The label as stored, or why it is refused.
fn label(typed: &str) -> Result<String, ApiError> {
    let l = typed.trim();
    if l.is_empty() {
        return Err(unprocessable(
            "give the app password a label (the program or device that will use it)",
        ));
    }
    if l.chars().count() > MAX_LABEL_CHARS {
        return Err(unprocessable(format!(
            "the label is longer than {MAX_LABEL_CHARS} characters"
        )));
    }
    if l.chars().any(char::is_control) {
        return Err(unprocessable("the label has control characters"));
    }
    Ok(l.to_string())
}

/// `POST /api/v1/account/app-passwords`: a new app password, shown this
/// once.
pub(super) async fn app_password_add(
    State(web): State<Arc<Web>>,
    WebSession(a): WebSession,
    body: Result<Json<LabelBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let b = json_body(body)?;
    let label = label(&b.label)?;
    let password = codes::new_app_password().map_err(ApiError::internal)?;
    let id = codes::new_id().map_err(ApiError::internal)?;
    let now = web.ctx.unix_ms();
    let added = web
        .ctx
        .store
        .add_app_password(&a.user, &id, &label, codes::digest(&password), now)
        .await
        .map_err(ApiError::internal)?;
    match added {
        AppPasswordAdded::Added => {}
        AppPasswordAdded::NoUser => return Err(ApiError::unauthorized()),
        AppPasswordAdded::TooMany => {
            return Err(conflict(&format!(
                "at most {MAX_APP_PASSWORDS} app passwords: revoke one first"
            )))
        }
    }
    tracing::info!(user = %a.user, app_password = %id, label = %label, "app password made");
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "id": id,
            "password": password,
            "label": label,
            "created": crate::pec::clock::iso8601_ms(now),
        })),
    )
        .into_response())
}

/// `GET /api/v1/account/app-passwords`.
pub(super) async fn app_passwords(
    State(web): State<Arc<Web>>,
    WebSession(a): WebSession,
) -> Result<Json<serde_json::Value>, ApiError> {
    let list = web
        .ctx
        .store
        .app_passwords(&a.user)
        .await
        .map_err(ApiError::internal)?;
    let list: Vec<_> = list.iter().map(app_password_json).collect();
    Ok(Json(serde_json::json!({ "app_passwords": list })))
}

/// `DELETE /api/v1/account/app-passwords/{id}`: revoked at once (`404` for
/// an id the user does not have, another user's included).
pub(super) async fn app_password_revoke(
    State(web): State<Arc<Web>>,
    WebSession(a): WebSession,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !web
        .ctx
        .store
        .revoke_app_password(&a.user, &id)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such app password"));
    }
    tracing::info!(user = %a.user, app_password = %id, "app password revoked");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_trimmed_and_bounded() {
        assert_eq!(label("  Thunderbird  ").unwrap(), "Thunderbird");
        assert!(label("   ").is_err());
        assert!(label("a\u{7}b").is_err());
        assert!(label(&"x".repeat(MAX_LABEL_CHARS)).is_ok());
        assert!(label(&"x".repeat(MAX_LABEL_CHARS + 1)).is_err());
    }

    #[test]
    fn the_qr_code_is_an_svg_data_uri() {
        let q = qr_data_uri("otpauth://totp/x:a@x?secret=ABC").unwrap();
        let b64 = q.strip_prefix("data:image/svg+xml;base64,").unwrap();
        let svg = String::from_utf8(openssl::base64::decode_block(b64).unwrap()).unwrap();
        assert!(svg.contains("<svg") && svg.contains("<path"), "{svg}");
    }
}

#[derive(Deserialize)]
pub(super) struct NotifyBody {
    email: String,
}

/// `GET /api/v1/account/notify`: the ordinary address told of each new PEC
/// (`""`: none).
pub(super) async fn notify_get(
    State(web): State<Arc<Web>>,
    WebSession(a): WebSession,
) -> Result<Json<serde_json::Value>, ApiError> {
    let email = web
        .ctx
        .store
        .notice_email(&a.user)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(
        serde_json::json!({ "email": email.unwrap_or_default() }),
    ))
}

/// `PUT /api/v1/account/notify {"email"}`: tell this ordinary address of
/// each new PEC (sender, subject, time; at most one e-mail a minute), or
/// nobody with `""`. A PEC address is refused: the notice is ordinary
/// mail, which a PEC box would take as an anomaly.
pub(super) async fn notify_set(
    State(web): State<Arc<Web>>,
    WebSession(a): WebSession,
    body: Result<Json<NotifyBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let b = json_body(body)?;
    let wanted = b.email.trim();
    let email = if wanted.is_empty() {
        String::new()
    } else {
        let e = crate::store::users::validate_new_address(wanted).map_err(unprocessable)?;
        let domain = e.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        if web.ctx.us().is_local(&e) || web.ctx.index().is_certified(domain) {
            return Err(unprocessable(format!(
                "{e} is a PEC address: the notice is ordinary e-mail, give an ordinary address"
            )));
        }
        e
    };
    if !web
        .ctx
        .store
        .set_notice_email(&a.user, &email)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::unauthorized());
    }
    tracing::info!(user = %a.user, notice = %email, "new-PEC notice address set from the webmail");
    Ok(Json(serde_json::json!({ "email": email })))
}
