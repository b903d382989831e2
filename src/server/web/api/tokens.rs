//! `/api/v1/account/tokens`: a mailbox owner's API tokens (issue 25). These
//! are session routes: a token cannot make, list or revoke tokens
//! (`bearer::need` gives them no scope).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;

use crate::server::web::{ApiError, Auth, Web};
use crate::store::api::{check_name, ApiToken, CreateRefused, Scopes, MAX_PER_USER};

/// The token routes.
pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/api/v1/account/tokens", get(list).post(create))
        .route("/api/v1/account/tokens/{id}", delete(revoke))
}

#[derive(Deserialize)]
struct NewBody {
    name: String,
    scopes: Vec<String>,
}

/// A token as listed (never the token itself).
pub fn token_json(t: &ApiToken) -> serde_json::Value {
    serde_json::json!({
        "id": t.id,
        "name": t.name,
        "scopes": t.scopes.names(),
        "created": crate::server::web::sent::iso_ms(t.created_at),
        "last_used": t.last_used.map(crate::server::web::sent::iso_ms),
    })
}

async fn create(
    State(web): State<Arc<Web>>,
    a: Auth,
    body: Result<Json<NewBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let name =
        check_name(&b.name).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let scopes = Scopes::parse(b.scopes.iter().map(String::as_str)).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("scopes: one or both of \"send\" and \"read\" ({e})"),
        )
    })?;
    let now = web.ctx.clock.unix_ms();
    let t = match web
        .ctx
        .store
        .create_token(&a.user, &name, scopes, now)
        .await
        .map_err(ApiError::internal)?
    {
        Ok(t) => t,
        Err(CreateRefused::TooMany) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("at most {MAX_PER_USER} tokens per mailbox: revoke one first"),
            ))
        }
        Err(CreateRefused::NoUser) => return Err(ApiError::unauthorized()),
    };
    tracing::info!(user = %a.user, token = %t.id, scopes = %scopes.names().join(","), "API token created");
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "id": t.id,
            "token": t.token,
            "name": name,
            "scopes": scopes.names(),
        })),
    )
        .into_response())
}

async fn list(State(web): State<Arc<Web>>, a: Auth) -> Result<Json<serde_json::Value>, ApiError> {
    let tokens = web
        .ctx
        .store
        .tokens(Some(&a.user))
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({
        "tokens": tokens.iter().map(token_json).collect::<Vec<_>>(),
    })))
}

async fn revoke(
    State(web): State<Arc<Web>>,
    a: Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !web
        .ctx
        .store
        .revoke_token(&id, Some(&a.user))
        .await
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such token"));
    }
    tracing::info!(user = %a.user, token = %id, "API token revoked");
    Ok(StatusCode::NO_CONTENT)
}
