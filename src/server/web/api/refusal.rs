//! A refused web send as a problem: the one place a [`Refusal`] becomes an
//! HTTP status, and the refusals the form and JSON readers make themselves
//! (size, Bcc) in the same shape.

use axum::http::StatusCode;

use crate::flow::refusal::Refusal;
use crate::server::submission;
use crate::server::web::ApiError;

/// The HTTP answer to a refusal: the one place a [`Refusal`] becomes a
/// status (SMTP's reply is `submission::reply_for`, whose code the body
/// repeats).
pub(super) fn refusal(r: Refusal) -> ApiError {
    let status = if r.is_temporary() {
        StatusCode::SERVICE_UNAVAILABLE
    } else if r.is_size() {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let reply = submission::reply_for(&r);
    let code = reply.code;
    refused(
        status,
        if r.is_temporary() {
            "temporary failure: try again"
        } else {
            "not accepted"
        },
        &match reply.enhanced {
            Some((a, b, c)) => format!("{code} {a}.{b}.{c}"),
            None => code.to_string(),
        },
        r.italian(),
        &reply.text,
    )
}

/// A refused submission as a problem: the SMTP reply's code, the Italian
/// reason of the non-accettazione where there is one (`reason`), and the
/// text shown to the user (`detail`: the Italian reason, else the reply's).
pub(super) fn refused(
    status: StatusCode,
    error: &str,
    smtp_code: &str,
    italian: Option<String>,
    text: &str,
) -> ApiError {
    let detail = italian.clone().unwrap_or_else(|| text.to_string());
    ApiError {
        status,
        body: serde_json::json!({
            "type": crate::server::web::problem::REFUSED,
            "error": error,
            "smtp_code": smtp_code,
            "reason": italian,
            "detail": detail,
        }),
    }
}

/// The refusal of a message over `max` bytes (SMTP's `552 5.3.4`).
pub(super) fn too_big(max: usize) -> ApiError {
    let it = format!("il messaggio supera la dimensione massima consentita ({max} byte)");
    refused(
        StatusCode::PAYLOAD_TOO_LARGE,
        "not accepted",
        "552 5.3.4",
        Some(it.clone()),
        &it,
    )
}

/// The refusal of hidden recipients (SMTP's `550 5.7.1`).
pub(super) fn no_bcc() -> ApiError {
    let it = "la PEC non ammette destinatari nascosti (Bcc)".to_string();
    refused(
        StatusCode::UNPROCESSABLE_ENTITY,
        "not accepted",
        "550 5.7.1",
        Some(it.clone()),
        &it,
    )
}

/// A `tipo_ricevuta` value, checked.
pub(super) fn tipo_ricevuta(v: &str) -> Result<String, ApiError> {
    let t = v.trim().to_ascii_lowercase();
    if !["completa", "breve", "sintetica"].contains(&t.as_str()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "tipo_ricevuta: completa, breve or sintetica",
        ));
    }
    Ok(t)
}
