//! A small JSON client for the proxy's HTTP API, authenticated by a bearer
//! token (or not at all).

use reqwest::{Method, StatusCode};
use serde_json::Value;
use shellway_common::api::login::{LoginRequest, LoginResponse};
use shellway_common::api::sessions::{OpenSession, OpenedSession};
use shellway_common::api::tokens::{CreatedToken, NewToken};
use uuid::Uuid;

#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: Option<String>,
    http: reqwest::Client,
}

/// Status and JSON body (Null when the body is empty or not JSON).
pub type Reply = (StatusCode, Value);

impl Api {
    pub fn new(base: impl Into<String>, token: Option<String>) -> Self {
        Self {
            base: base.into(),
            token,
            http: reqwest::Client::new(),
        }
    }

    /// Logs in with a password and mints an API token.
    pub async fn login(base: &str, username: &str, password: &str) -> Self {
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{base}/api/login"))
            .json(&LoginRequest {
                username: username.to_owned(),
                password: password.to_owned(),
            })
            .send()
            .await
            .expect("login request");
        assert_eq!(resp.status(), StatusCode::OK, "login failed");
        let cookie = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("shellway_session="))
            .and_then(|c| c.split(';').next())
            .expect("login sets the session cookie")
            .to_owned();
        let body: LoginResponse = resp.json().await.expect("login json");
        let csrf = body.csrf_token;
        let resp = http
            .post(format!("{base}/api/tokens"))
            .header("cookie", cookie)
            .header("x-csrf-token", csrf)
            .json(&NewToken::default())
            .send()
            .await
            .expect("token request");
        assert!(
            resp.status().is_success(),
            "token mint failed: {}",
            resp.status()
        );
        let body: CreatedToken = resp.json().await.expect("token json");
        Self::new(base, Some(body.token))
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None).await
    }

    /// Creates a host and returns its id, failing the test on refusal.
    pub async fn create_host(&self, host: Value) -> Uuid {
        let (status, body) = self.post("/api/hosts", host).await;
        assert_eq!(status, StatusCode::CREATED, "create host: {body}");
        id_of(&body)
    }

    /// Opens a session and returns its id.
    pub async fn open_session(&self, host: Uuid) -> Uuid {
        let open = OpenSession {
            host_id: host,
            cols: Some(80),
            rows: Some(24),
            shell: None,
            account: None,
        };
        let body = serde_json::to_value(open).unwrap_or_default();
        let (status, body) = self.post("/api/sessions", body).await;
        assert_eq!(status, StatusCode::CREATED, "open session: {body}");
        let opened: OpenedSession = serde_json::from_value(body).expect("an opened session");
        opened.id
    }

    pub async fn session(&self, id: Uuid) -> Value {
        let (status, body) = self.get(&format!("/api/sessions/{id}")).await;
        assert_eq!(status, StatusCode::OK, "session detail: {body}");
        body
    }
}

pub fn id_of(body: &Value) -> Uuid {
    body["id"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .unwrap_or_else(|| panic!("no id in {body}"))
}
