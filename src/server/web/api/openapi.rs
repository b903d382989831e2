//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of `/api/v1`
//! (issue 25). Each operation's security comes from `bearer::need`, the
//! table the token check itself reads, so the document cannot promise a
//! scope the server does not ask for. `tests/api_tokens.rs` validates it
//! with `openapi-spec-validator` and fails when a route of the router is
//! missing from it.

use axum::http::Method;
use serde_json::{json, Value};

use crate::server::web::bearer;

fn obj(props: Value) -> Value {
    json!({"type": "object", "properties": props})
}

fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_body(schema: Value) -> Value {
    json!({"content": {"application/json": {"schema": schema}}})
}

/// One operation: method, path, summary, request body, success status and
/// its content.
struct Op {
    method: Method,
    path: &'static str,
    summary: &'static str,
    body: Option<Value>,
    status: u16,
    ok: Value,
}

fn op(
    method: Method,
    path: &'static str,
    summary: &'static str,
    body: Option<Value>,
    status: u16,
    ok: Value,
) -> Op {
    Op {
        method,
        path,
        summary,
        body,
        status,
        ok,
    }
}

fn ops() -> Vec<Op> {
    let any = json!({"type": "object"});
    let name = json_body(obj(json!({"name": {"type": "string"}})));
    let none = json!({"description": "No content"});
    let binary = |ctype: &str| json!({"content": {ctype: {"schema": {"type": "string", "contentMediaType": ctype}}}});
    let g = Method::GET;
    let p = Method::POST;
    let d = Method::DELETE;
    vec![
        op(
            p.clone(),
            "/api/v1/session",
            "Log in (web session and CSRF token)",
            Some(json_body(obj(
                json!({"username": {"type": "string"}, "password": {"type": "string"}, "totp": {"type": "string"}}),
            ))),
            200,
            json_body(obj(
                json!({"csrf": {"type": "string"}, "user": {"type": "string"}}),
            )),
        ),
        op(
            g.clone(),
            "/api/v1/session",
            "The current session",
            None,
            200,
            json_body(obj(
                json!({"csrf": {"type": "string"}, "user": {"type": "string"}}),
            )),
        ),
        op(
            d.clone(),
            "/api/v1/session",
            "Log out",
            None,
            204,
            none.clone(),
        ),
        op(
            g.clone(),
            "/api/v1/folders",
            "Folders with counts, and the quota",
            None,
            200,
            json_body(any.clone()),
        ),
        op(
            p.clone(),
            "/api/v1/folders",
            "Create a folder",
            Some(name.clone()),
            201,
            json_body(any.clone()),
        ),
        op(
            Method::PATCH,
            "/api/v1/folders/{folder}",
            "Rename a folder",
            Some(name),
            200,
            json_body(any.clone()),
        ),
        op(
            d.clone(),
            "/api/v1/folders/{folder}",
            "Delete a folder",
            None,
            204,
            none.clone(),
        ),
        op(
            g.clone(),
            "/api/v1/folders/{folder}/messages",
            "A folder's messages, newest first",
            None,
            200,
            json_body(any.clone()),
        ),
        op(
            g.clone(),
            "/api/v1/folders/{folder}/mbox",
            "The folder as mboxrd",
            None,
            200,
            binary("application/mbox"),
        ),
        op(
            p.clone(),
            "/api/v1/messages",
            "Send a PEC (JSON or the compose form; Idempotency-Key)",
            Some(json!({"content": {
                "application/json": {"schema": r("Send")},
                "multipart/form-data": {"schema": obj(json!({
                    "to": {"type": "string"}, "cc": {"type": "string"}, "subject": {"type": "string"},
                    "body": {"type": "string"}, "tipo_ricevuta": {"type": "string"},
                    "attachment": {"type": "array", "items": {"type": "string", "contentMediaType": "application/octet-stream"}}}))}}})),
            201,
            json_body(r("Sent")),
        ),
        op(
            g.clone(),
            "/api/v1/messages/{id}",
            "One message with its PEC facts and verification",
            None,
            200,
            json_body(any.clone()),
        ),
        op(
            d.clone(),
            "/api/v1/messages/{id}",
            "Move to Trash (from Trash: remove)",
            None,
            204,
            none.clone(),
        ),
        op(
            g.clone(),
            "/api/v1/messages/{id}/raw",
            "The message, byte-exact",
            None,
            200,
            binary("message/rfc822"),
        ),
        op(
            g.clone(),
            "/api/v1/messages/{id}/html",
            "The sanitised HTML body",
            None,
            200,
            binary("text/html"),
        ),
        op(
            g.clone(),
            "/api/v1/messages/{id}/parts/{part}",
            "One attachment or part",
            None,
            200,
            binary("application/octet-stream"),
        ),
        op(
            p.clone(),
            "/api/v1/messages/{id}/move",
            "Move to another folder",
            Some(json_body(obj(json!({"folder": {"type": "string"}})))),
            200,
            json_body(obj(json!({"id": {"type": "string"}}))),
        ),
        op(
            p.clone(),
            "/api/v1/messages/{id}/flags",
            "Set flags (seen, flagged, answered)",
            Some(json_body(obj(
                json!({"seen": {"type": "boolean"}, "flagged": {"type": "boolean"}, "answered": {"type": "boolean"}}),
            ))),
            200,
            json_body(any.clone()),
        ),
        op(
            g.clone(),
            "/api/v1/sent",
            "Sent PEC with each recipient's state",
            None,
            200,
            json_body(obj(
                json!({"offset": {"type": "integer"}, "sent": {"type": "array", "items": r("SentStatus")}}),
            )),
        ),
        op(
            g.clone(),
            "/api/v1/sent/{msgid}",
            "One sent PEC's recipient states",
            None,
            200,
            json_body(r("SentStatus")),
        ),
        op(
            g.clone(),
            "/api/v1/sent/{msgid}/evidence",
            "The evidence zip",
            None,
            200,
            binary("application/zip"),
        ),
        op(
            p.clone(),
            "/api/v1/verify",
            "Verify a PEC file (.eml as the body)",
            Some(binary("message/rfc822")),
            200,
            json_body(any.clone()),
        ),
        op(
            g.clone(),
            "/api/v1/account/tokens",
            "The user's API tokens",
            None,
            200,
            json_body(obj(
                json!({"tokens": {"type": "array", "items": r("Token")}}),
            )),
        ),
        op(
            p.clone(),
            "/api/v1/account/tokens",
            "Make an API token (shown once)",
            Some(json_body(
                json!({"type": "object", "required": ["name", "scopes"], "properties": {
                "name": {"type": "string"}, "scopes": {"type": "array", "items": r("Scope")}}}),
            )),
            201,
            json_body(obj(
                json!({"id": {"type": "string"}, "token": {"type": "string"},
                "name": {"type": "string"}, "scopes": {"type": "array", "items": r("Scope")}}),
            )),
        ),
        op(
            p.clone(),
            "/api/v1/account/password",
            "Change the account password (the other web sessions end)",
            Some(json_body(
                json!({"type": "object", "required": ["current", "new"], "properties": {
                "current": {"type": "string"}, "new": {"type": "string"}}}),
            )),
            204,
            none.clone(),
        ),
        op(
            p.clone(),
            "/api/v1/account/totp",
            "Start enrolling a second factor (not on until confirmed)",
            None,
            200,
            json_body(obj(
                json!({"secret": {"type": "string"}, "otpauth_uri": {"type": "string"},
                "qr": {"type": "string"}}),
            )),
        ),
        op(
            d.clone(),
            "/api/v1/account/totp",
            "Turn the second factor off (with a code)",
            Some(json_body(
                json!({"type": "object", "required": ["code"], "properties": {"code": {"type": "string"}}}),
            )),
            204,
            none.clone(),
        ),
        op(
            p.clone(),
            "/api/v1/account/totp/confirm",
            "Turn the second factor on; ten recovery codes, shown once",
            Some(json_body(
                json!({"type": "object", "required": ["code"], "properties": {"code": {"type": "string"}}}),
            )),
            200,
            json_body(obj(
                json!({"recovery_codes": {"type": "array", "items": {"type": "string"}}}),
            )),
        ),
        op(
            g.clone(),
            "/api/v1/account/app-passwords",
            "The user's app passwords for IMAP, POP3 and SMTP",
            None,
            200,
            json_body(any.clone()),
        ),
        op(
            p.clone(),
            "/api/v1/account/app-passwords",
            "Make an app password (shown once)",
            Some(json_body(
                json!({"type": "object", "required": ["label"], "properties": {"label": {"type": "string"}}}),
            )),
            201,
            json_body(obj(
                json!({"id": {"type": "string"}, "password": {"type": "string"},
                "label": {"type": "string"}, "created": {"type": "string"}}),
            )),
        ),
        op(
            d.clone(),
            "/api/v1/account/app-passwords/{id}",
            "Revoke an app password at once",
            None,
            204,
            none.clone(),
        ),
        op(
            g.clone(),
            "/api/v1/account/notify",
            "The ordinary address told of each new PEC (empty: none)",
            None,
            200,
            json_body(obj(json!({"email": {"type": "string"}}))),
        ),
        op(
            Method::PUT,
            "/api/v1/account/notify",
            "Tell this ordinary address of each new PEC (empty string: stop)",
            Some(json_body(
                json!({"type": "object", "required": ["email"], "properties": {"email": {"type": "string"}}}),
            )),
            200,
            json_body(obj(json!({"email": {"type": "string"}}))),
        ),
        op(
            d,
            "/api/v1/account/tokens/{id}",
            "Revoke an API token",
            None,
            204,
            none,
        ),
        op(
            g,
            "/api/v1/openapi.json",
            "This document",
            None,
            200,
            json_body(any),
        ),
    ]
}

fn schemas() -> Value {
    let s = json!({"type": "string"});
    let recipients =
        json!({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]});
    json!({
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details; `error` repeats the message.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string"}, "title": s, "status": {"type": "integer"},
                "detail": s, "error": s,
                "smtp_code": {"type": "string", "description": "A refused submission: the SMTP reply code"},
                "reason": {"type": ["string", "null"], "description": "A refused submission: the Italian reason of the non-accettazione"},
                "retry_after": {"type": "integer"}
            }
        },
        "Scope": {"type": "string", "enum": ["send", "read"]},
        "Send": {
            "type": "object",
            "required": ["to"],
            "additionalProperties": false,
            "properties": {
                "to": recipients, "cc": recipients, "subject": s, "body": s, "html": s,
                "attachments": {"type": "array", "items": {
                    "type": "object", "required": ["filename", "content_base64"],
                    "properties": {"filename": s, "content_type": s,
                        "content_base64": {"type": "string", "contentEncoding": "base64"}}}},
                "tipo_ricevuta": {"type": "string", "enum": ["completa", "breve", "sintetica"]}
            }
        },
        "Sent": obj(json!({"identificativo": s, "msgid": s, "sent": {"type": ["string", "null"]}})),
        "SentStatus": obj(json!({
            "identificativo": s, "msgid": s, "subject": s, "accepted_at": s, "receipt_type": s,
            "recipients": {"type": "array", "items": obj(json!({
                "address": s, "tipo": s,
                "state": {"type": "string", "enum": ["accettato", "preso-in-carico", "consegnato", "errore", "preavviso", "mancata-consegna"]},
                "at": {"type": ["string", "null"]}, "receipt": {"type": ["string", "null"]},
                "error": {"type": ["string", "null"]}}))},
            "receipts": {"type": "array", "items": obj(json!({"id": s, "tipo": s}))}
        })),
        "Token": obj(json!({
            "id": s, "name": s, "scopes": {"type": "array", "items": {"$ref": "#/components/schemas/Scope"}},
            "created": s, "last_used": {"type": ["string", "null"]}
        })),
    })
}

/// Routes anyone may call, with or without a login.
fn public(method: &Method, path: &str) -> bool {
    matches!(
        (method.as_str(), path),
        ("POST", "/api/v1/session") | ("POST", "/api/v1/verify") | ("GET", "/api/v1/openapi.json")
    )
}

/// The document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for o in ops() {
        let mut ok = json!({"description": o.summary});
        if let Some(c) = o.ok.get("content") {
            ok["content"] = c.clone();
        }
        let mut responses = serde_json::Map::new();
        responses.insert(o.status.to_string(), ok);
        responses.insert(
            "default".into(),
            json!({"$ref": "#/components/responses/Problem"}),
        );
        let mut operation = json!({
            "operationId": format!("{}{}", o.method.as_str().to_ascii_lowercase(),
                o.path.trim_start_matches("/api/v1").replace(['/', '{', '}', '.'], "_")),
            "summary": o.summary,
            "responses": responses,
        });
        let mut params: Vec<Value> = o
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|n| json!({"name": n, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if o.method == Method::POST && o.path == "/api/v1/messages" {
            params.push(json!({"name": "Idempotency-Key", "in": "header", "required": false,
                "description": "The same key and body within 24 h give the first answer and send nothing",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255}}));
        }
        if !params.is_empty() {
            operation["parameters"] = Value::Array(params);
        }
        if let Some(b) = o.body {
            operation["requestBody"] = b;
        }
        let token = bearer::need(&o.method, o.path);
        let mut security = vec![];
        if public(&o.method, o.path) {
            security.push(json!({}));
        }
        if let Some(scopes) = token {
            security.push(json!({"bearer": scopes.names()}));
        }
        if o.path != "/api/v1/openapi.json"
            && !(o.method == Method::POST && o.path == "/api/v1/session")
        {
            security.push(json!({"session": []}));
        }
        operation["security"] = Value::Array(security);
        let entry = paths.entry(o.path.to_string()).or_insert_with(|| json!({}));
        entry[o.method.as_str().to_ascii_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "pecd API",
            "version": "1",
            "description": "The webmail's JSON API, also for software with API tokens (docs/api.md). \
                A web session's state-changing requests carry X-CSRF-Token; a token's do not.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "responses": {"Problem": {
                "description": "An error (RFC 9457)",
                "content": {"application/problem+json": {"schema": r("Problem")}},
            }},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                    "description": "An API token (pecd_…); the requirement lists the scopes the route needs"},
                "session": {"type": "apiKey", "in": "cookie", "name": "pecd_session"},
            },
        },
    })
}

/// The handler.
pub(super) async fn openapi() -> axum::Json<Value> {
    axum::Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_names_its_security_and_the_scopes_the_server_checks() {
        let d = document();
        let send = &d["paths"]["/api/v1/messages"]["post"];
        assert_eq!(
            send["security"],
            json!([{"bearer": ["send"]}, {"session": []}])
        );
        let tokens = &d["paths"]["/api/v1/account/tokens"]["post"];
        assert_eq!(tokens["security"], json!([{"session": []}]));
        assert_eq!(
            d["paths"]["/api/v1/sent/{msgid}"]["get"]["parameters"][0]["name"],
            "msgid"
        );
    }
}
