//! Starting the references and opening terminals on each system.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::process::{Child, Command};
use uuid::Uuid;

use super::term::{ws_connect, Term};
use shellway_tests::sshd::free_port;
use shellway_tests::{Api, Sshd};

/// The webssh peer (`pip install webssh`), on loopback.
pub(crate) struct Webssh {
    pub(crate) base: String,
    port: u16,
    _child: Child,
}

impl Webssh {
    /// Starts `wssh`, or says why not (then its columns read n/a).
    pub(crate) async fn start() -> anyhow::Result<Self> {
        let port = free_port();
        let child = Command::new("wssh")
            .args([
                "--address=127.0.0.1",
                &format!("--port={port}"),
                "--policy=autoadd",
                "--xsrf=False",
                "--maxconn=1000",
                "--logging=error",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("`wssh` not found: install the peer with `pip install webssh`")?;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(Self {
                    base: format!("http://127.0.0.1:{port}"),
                    port,
                    _child: child,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("wssh did not start listening on port {port}")
    }

    /// Opens a shell through webssh: its login form, then its WebSocket.
    pub(crate) async fn open(&self, sshd: &Sshd) -> anyhow::Result<Term> {
        let key = std::fs::read_to_string(&sshd.user_key)?;
        let form = [
            ("hostname", "127.0.0.1".to_owned()),
            ("port", sshd.port.to_string()),
            ("username", sshd.username.clone()),
            ("privatekey", key),
            ("term", "xterm-256color".to_owned()),
        ];
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect();
        let reply: Value = reqwest::Client::new()
            .post(format!("{}/", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.join("&"))
            .send()
            .await?
            .json()
            .await?;
        let Some(id) = reply["id"].as_str() else {
            bail!("webssh refused the connection: {reply}");
        };
        let url = format!("ws://127.0.0.1:{}/ws?id={id}", self.port);
        let origin = vec![("origin", self.base.clone())];
        Ok(Term::Webssh(ws_connect(&url, &origin).await?))
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Opens a Shellway shell session and attaches a terminal to it.
pub(crate) async fn shellway_open(api: &Api, host: Uuid) -> anyhow::Result<(Uuid, Term)> {
    let id = api.open_session(host).await;
    let term = shellway_attach(api, id, "").await?;
    Ok((id, term))
}

/// One more viewer of a Shellway session (`query` like `?after=5`).
pub(crate) async fn shellway_attach(api: &Api, id: Uuid, query: &str) -> anyhow::Result<Term> {
    let url = format!(
        "{}/ws/sessions/{id}{query}",
        api.base.replacen("http", "ws", 1)
    );
    let token = api.token.clone().unwrap_or_default();
    let auth = vec![("authorization", format!("Bearer {token}"))];
    Ok(Term::Shellway {
        ws: ws_connect(&url, &auth).await?,
        last_seq: 0,
    })
}
