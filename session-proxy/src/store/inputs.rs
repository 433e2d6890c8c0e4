//! Who typed what into a session (`session_input`), written in batches.

use sqlx::PgPool;

use crate::inputs::Typed;

pub(crate) async fn insert(db: &PgPool, batch: &[Typed]) -> Result<(), sqlx::Error> {
    let mut sessions = Vec::with_capacity(batch.len());
    let mut users = Vec::with_capacity(batch.len());
    let mut names = Vec::with_capacity(batch.len());
    let mut shares = Vec::with_capacity(batch.len());
    let mut data = Vec::with_capacity(batch.len());
    for t in batch {
        sessions.push(t.session);
        users.push(t.user);
        names.push(t.username.clone());
        shares.push(t.share);
        data.push(t.data.clone());
    }
    sqlx::query(
        "INSERT INTO session_input (session_id, user_id, username, share_id, data) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::bytea[])",
    )
    .bind(sessions)
    .bind(users)
    .bind(names)
    .bind(shares)
    .bind(data)
    .execute(db)
    .await?;
    Ok(())
}
