//! Signing in with a password, as a browser does: a client that carries
//! the login cookie and the CSRF token (where `Api` carries a bearer token).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The answer to one `POST /api/login`.
#[derive(Debug)]
pub struct LoginReply {
    pub status: StatusCode,
    /// `Retry-After`, in seconds.
    pub retry_after: Option<u64>,
    pub body: Value,
    /// `shellway_session=…`, when signed in.
    pub cookie: Option<String>,
}

impl LoginReply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

/// One sign-in attempt, with extra headers (e.g. `x-forwarded-for`).
pub async fn try_login(
    base: &str,
    username: &str,
    password: &str,
    headers: &[(&str, &str)],
) -> LoginReply {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/api/login"))
        .json(&json!({"username": username, "password": password}));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("login request gets an answer");
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("shellway_session="))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned);
    let body = resp.json().await.unwrap_or(Value::Null);
    LoginReply {
        status,
        retry_after,
        body,
        cookie,
    }
}

/// A signed-in person: the login cookie and its CSRF token.
#[derive(Clone)]
pub struct CookieClient {
    pub base: String,
    pub cookie: String,
    pub csrf: String,
    http: reqwest::Client,
}

impl CookieClient {
    /// Signs in; panics if that fails.
    pub async fn sign_in(base: &str, username: &str, password: &str) -> Self {
        let reply = try_login(base, username, password, &[]).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "sign-in failed: {:?}",
            reply.body
        );
        Self {
            base: base.to_owned(),
            cookie: reply.cookie.expect("login sets the session cookie"),
            csrf: reply.body["csrf_token"]
                .as_str()
                .expect("csrf_token")
                .to_owned(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> crate::api::Reply {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> crate::api::Reply {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> crate::api::Reply {
        self.call(Method::POST, path, Some(body)).await
    }
}
