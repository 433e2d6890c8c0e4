//! API tokens for scripts: `Authorization: Bearer sw_…`.

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use super::AppState;
use crate::auth::{self, AuthUser};
use crate::db;
use crate::error::ApiError;

pub(crate) async fn create(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let (token, hash) = auth::new_secret(auth::TOKEN_PREFIX);
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO api_tokens (id, user_id, token_hash) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(user.id)
        .bind(hash)
        .execute(&st.db)
        .await?;
    db::audit(
        &st.db,
        user.audit_id(),
        "token.create",
        &id.to_string(),
        json!({}),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"token": token, "id": id})),
    ))
}
