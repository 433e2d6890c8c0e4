//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers'
//! annotations and the DTOs in `shellway_common::api`. Served at
//! `GET /api/openapi.json`; a copy is committed as `docs/openapi.json`.

use std::sync::LazyLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use shellway_common::api::errors::ErrorBody;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Response};
use utoipa::{Modify, OpenApi};

use super::{
    access, account, credentials, host_groups, hosts, jobs, library, login, recording, runs,
    services, sessions, shares, throttles, tokens, users,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Shellway",
        description = "The session proxy's HTTP API. The WebSocket protocol \
                       (`/ws/sessions/{id}`, `/ws/join/{token}`) is in docs/protocol.md.",
        license(name = "Apache-2.0")
    ),
    modifiers(&Conventions),
    security(("cookie" = []), ("bearer" = [])),
    paths(
        login::login, login::logout, login::me, account::change_password,
        tokens::list, tokens::create, tokens::revoke,
        credentials::list, credentials::create, credentials::remove, credentials::rotate,
        hosts::list, hosts::create, hosts::scan, hosts::get_one, hosts::update, hosts::remove,
        sessions::list, sessions::open, sessions::detail, sessions::end, runs::create,
        shares::list, shares::create, shares::revoke, shares::describe,
        users::list, users::create, users::update, users::remove,
        hosts::accounts, hosts::add_account, hosts::remove_account,
        access::list_groups, access::create_group, access::update_group, access::delete_group,
        access::list_grants, access::create_grant, access::delete_grant, access::mine,
        throttles::list, throttles::clear,
        recording::asciicast, recording::events,
        jobs::create, jobs::preview, jobs::list, jobs::detail, jobs::cancel, jobs::cancel_host,
        jobs::rerun, jobs::output,
        host_groups::list, host_groups::create, host_groups::remove,
        library::list_tasks, library::create_task, library::get_task,
        library::update_task, library::delete_task,
        library::list_scripts, library::create_script, library::get_script,
        library::update_script, library::delete_script,
        services::list, services::create, services::get_one, services::update, services::remove,
        services::status, services::logs, services::act, services::action_result,
        crate::health::healthz, crate::health::readyz, document,
    ),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

/// What every operation shares: the two ways to sign in, and errors in
/// one format.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::COOKIE_NAME,
                "Set by POST /api/login; requests that change something also \
                 send its csrf_token in X-CSRF-Token",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token, `sw_…` (POST /api/tokens)"))
                    .build(),
            ),
        );
        let error = Response::builder()
            .description(
                "An error: `{\"error\": {\"code\", \"message\", \"field\"?, \"fields\"?}}`",
            )
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        "ErrorBody",
                    ))))
                    .build(),
            )
            .build();
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                op.responses
                    .responses
                    .entry("default".to_owned())
                    .or_insert_with(|| RefOr::T(error.clone()));
            }
        }
    }
}

/// The document as served and committed.
pub(crate) fn json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

/// This document.
#[utoipa::path(get, operation_id = "openapi", path = "/api/openapi.json", tag = "health", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document")))]
pub(crate) async fn document() -> impl IntoResponse {
    static DOCUMENT: LazyLock<String> = LazyLock::new(json);
    ([(CONTENT_TYPE, "application/json")], DOCUMENT.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: &str = "../docs/openapi.json";

    /// `docs/openapi.json` is the document the code generates. To update
    /// it: `SHELLWAY_UPDATE_OPENAPI=1 cargo test -p session-proxy --lib openapi`.
    #[test]
    fn the_committed_openapi_document_is_the_generated_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED);
        let generated = json();
        if std::env::var_os("SHELLWAY_UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).unwrap_or_else(|e| panic!("{e}"));
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json differs from the API's types; regenerate it with \
             `SHELLWAY_UPDATE_OPENAPI=1 cargo test -p session-proxy --lib openapi` and commit it"
        );
    }

    #[test]
    fn every_operation_has_its_own_id_and_documents_its_errors() {
        let doc: serde_json::Value =
            serde_json::from_str(&json()).unwrap_or_else(|e| panic!("{e}"));
        assert!(doc["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.1"));
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        let mut operations = std::collections::HashSet::new();
        for (path, item) in paths {
            for (method, op) in item.as_object().cloned().unwrap_or_default() {
                let id = op["operationId"].as_str().unwrap_or_default().to_owned();
                assert!(
                    operations.insert(id),
                    "{method} {path}: operationId used twice"
                );
                assert!(
                    op["responses"]["default"].is_object(),
                    "{method} {path} has no error response"
                );
            }
        }
        // Every route of the router but the WebSockets and the console's pages.
        assert_eq!(operations.len(), 78);
    }
}
