//! One interactive terminal, four ways in: Shellway's WebSocket, webssh's
//! WebSocket, a direct `ssh -tt` process, and russh in this process (the
//! SSH leg of Shellway's path alone, as the runner makes it). The
//! measurements drive them all the same way.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use shellway_tests::finder::Finder;
use shellway_tests::Sshd;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(crate) enum Term {
    /// `last_seq`: the highest output seq received.
    Shellway {
        ws: Ws,
        last_seq: u64,
    },
    Webssh(Ws),
    Direct {
        child: Child,
        stdin: ChildStdin,
        stdout: ChildStdout,
    },
    Russh {
        channel: russh::Channel<russh::client::Msg>,
        _handle: russh::client::Handle<PinnedKey>,
    },
}

/// Accepts only the benchmark sshd's host key.
pub(crate) struct PinnedKey(String);

impl russh::client::Handler for PinnedKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => {
                key.to_openssh().is_ok_and(|k| {
                    k.split_whitespace()
                        .take(2)
                        .eq(self.0.split_whitespace().take(2))
                })
            }
            _ => false,
        })
    }
}

/// What a read brought.
pub(crate) enum Got {
    Bytes(Vec<u8>),
    /// A JSON event (Shellway only).
    Event(serde_json::Value),
    Nothing,
    Closed,
}

pub(crate) async fn ws_connect(
    url: &str,
    headers: &[(&'static str, String)],
) -> anyhow::Result<Ws> {
    let mut req = url.into_client_request()?;
    for (k, v) in headers {
        req.headers_mut().insert(*k, v.parse()?);
    }
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .with_context(|| format!("websocket {url}"))?;
    Ok(ws)
}

/// `ssh` arguments that reach the benchmark's sshd with its keys.
pub(crate) fn ssh_args(sshd: &Sshd) -> Vec<String> {
    let known = sshd.dir.join("known_hosts");
    let _ = std::fs::write(
        &known,
        format!("[127.0.0.1]:{} {}\n", sshd.port, sshd.host_key),
    );
    vec![
        "-p".into(),
        sshd.port.to_string(),
        "-i".into(),
        sshd.user_key.display().to_string(),
        "-o".into(),
        format!("UserKnownHostsFile={}", known.display()),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        "ControlMaster=no".into(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "LogLevel=ERROR".into(),
        format!("{}@127.0.0.1", sshd.username),
    ]
}

impl Term {
    /// A direct interactive shell: `ssh -tt host`.
    pub(crate) fn direct(sshd: &Sshd) -> anyhow::Result<Self> {
        let mut child = Command::new("ssh")
            .arg("-tt")
            .args(ssh_args(sshd))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start ssh")?;
        let stdin = child.stdin.take().context("ssh stdin")?;
        let stdout = child.stdout.take().context("ssh stdout")?;
        Ok(Self::Direct {
            child,
            stdin,
            stdout,
        })
    }

    /// A shell with a PTY through russh, configured as the runner's
    /// connections are (Nagle off).
    pub(crate) async fn russh(sshd: &Sshd) -> anyhow::Result<Self> {
        let config = std::sync::Arc::new(russh::client::Config {
            nodelay: true,
            ..Default::default()
        });
        let mut handle = russh::client::connect(
            config,
            ("127.0.0.1", sshd.port),
            PinnedKey(sshd.host_key.clone()),
        )
        .await?;
        let key = russh::keys::load_secret_key(&sshd.user_key, None)?;
        let key = russh::keys::PrivateKeyWithHashAlg::new(std::sync::Arc::new(key), None);
        let auth = handle.authenticate_publickey(&sshd.username, key).await?;
        anyhow::ensure!(auth.success(), "russh: the benchmark sshd refused the key");
        let channel = handle.channel_open_session().await?;
        channel
            .request_pty(false, "xterm", 120, 40, 0, 0, &[])
            .await?;
        channel.request_shell(false).await?;
        Ok(Self::Russh {
            channel,
            _handle: handle,
        })
    }

    pub(crate) async fn send(&mut self, text: &str) -> anyhow::Result<()> {
        match self {
            Self::Shellway { ws, .. } => {
                let msg = json!({"action": "input", "data": text}).to_string();
                ws.send(Message::Text(msg.into())).await?;
            }
            Self::Webssh(ws) => {
                let msg = json!({"data": text}).to_string();
                ws.send(Message::Text(msg.into())).await?;
            }
            Self::Direct { stdin, .. } => {
                stdin.write_all(text.as_bytes()).await?;
                stdin.flush().await?;
            }
            Self::Russh { channel, .. } => channel.data(text.as_bytes()).await?,
        }
        Ok(())
    }

    pub(crate) async fn send_json(&mut self, value: serde_json::Value) -> anyhow::Result<()> {
        match self {
            Self::Shellway { ws, .. } | Self::Webssh(ws) => {
                ws.send(Message::Text(value.to_string().into())).await?
            }
            Self::Direct { .. } | Self::Russh { .. } => bail!("an SSH terminal takes no JSON"),
        }
        Ok(())
    }

    /// The next piece of output or event, waiting at most `timeout`.
    pub(crate) async fn recv(&mut self, timeout: Duration) -> Got {
        let (ws, mut last_seq) = match self {
            Self::Shellway { ws, last_seq } => (ws, Some(last_seq)),
            Self::Webssh(ws) => (ws, None),
            Self::Direct { stdout, .. } => {
                let mut buf = vec![0u8; 64 * 1024];
                return match tokio::time::timeout(timeout, stdout.read(&mut buf)).await {
                    Err(_) => Got::Nothing,
                    Ok(Ok(0)) | Ok(Err(_)) => Got::Closed,
                    Ok(Ok(n)) => {
                        buf.truncate(n);
                        Got::Bytes(buf)
                    }
                };
            }
            Self::Russh { channel, .. } => {
                // Window adjustments and the like are not output.
                let deadline = tokio::time::Instant::now() + timeout;
                loop {
                    return match tokio::time::timeout_at(deadline, channel.wait()).await {
                        Err(_) => Got::Nothing,
                        Ok(Some(russh::ChannelMsg::Data { data })) => Got::Bytes(data.to_vec()),
                        Ok(None | Some(russh::ChannelMsg::Eof | russh::ChannelMsg::Close)) => {
                            Got::Closed
                        }
                        Ok(Some(_)) => continue,
                    };
                }
            }
        };
        loop {
            let msg = match tokio::time::timeout(timeout, ws.next()).await {
                Err(_) => return Got::Nothing,
                Ok(None) | Ok(Some(Err(_))) => return Got::Closed,
                Ok(Some(Ok(msg))) => msg,
            };
            let shellway = last_seq.is_some();
            return match msg {
                // Shellway frames start with an 8-byte sequence number.
                Message::Binary(b) if shellway => {
                    if let (Some(last), Some(head)) =
                        (last_seq.as_deref_mut(), b.first_chunk::<8>())
                    {
                        *last = (*last).max(u64::from_be_bytes(*head));
                    }
                    Got::Bytes(b.get(8..).unwrap_or_default().to_vec())
                }
                Message::Binary(b) => Got::Bytes(b.to_vec()),
                Message::Text(t) if shellway => match serde_json::from_str::<serde_json::Value>(&t)
                {
                    Ok(v) => {
                        if let (Some(last), Some(seq)) =
                            (last_seq.as_deref_mut(), v["seq"].as_u64())
                        {
                            if v["event"] == "chunk" {
                                *last = (*last).max(seq);
                            }
                        }
                        Got::Event(v)
                    }
                    Err(_) => Got::Nothing,
                },
                Message::Text(t) => Got::Bytes(t.as_bytes().to_vec()),
                Message::Close(_) => Got::Closed,
                _ => continue,
            };
        }
    }

    /// One WebSocket ping → pong with the server at the other end (the
    /// frames in and out and the server's socket task, nothing behind it).
    /// For an idle terminal: what else arrives meanwhile is dropped.
    pub(crate) async fn ws_round_trip(&mut self) -> anyhow::Result<Duration> {
        let (Self::Shellway { ws, .. } | Self::Webssh(ws)) = self else {
            bail!("not a WebSocket terminal");
        };
        let t = std::time::Instant::now();
        ws.send(Message::Ping(b"bench".to_vec().into())).await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                Ok(Some(Ok(Message::Pong(p)))) if &p[..] == b"bench" => return Ok(t.elapsed()),
                Ok(Some(Ok(_))) => continue,
                _ => bail!("no pong within 5 s"),
            }
        }
    }

    /// The highest output seq a Shellway terminal has received (0 otherwise).
    pub(crate) fn last_seq(&self) -> u64 {
        match self {
            Self::Shellway { last_seq, .. } => *last_seq,
            _ => 0,
        }
    }

    /// Reads until nothing arrives for `quiet`.
    pub(crate) async fn drain(&mut self, quiet: Duration) {
        loop {
            match self.recv(quiet).await {
                Got::Nothing | Got::Closed => return,
                _ => {}
            }
        }
    }

    /// Reads output until it contains `needle`; returns the output bytes
    /// counted on the way.
    pub(crate) async fn until(&mut self, needle: &[u8], timeout: Duration) -> anyhow::Result<u64> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut finder = Finder::new(needle);
        let mut total = 0u64;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                bail!(
                    "no {:?} within {timeout:?}",
                    String::from_utf8_lossy(needle)
                );
            }
            match self.recv(left).await {
                Got::Bytes(b) => {
                    total += b.len() as u64;
                    if finder.push(&b) {
                        return Ok(total);
                    }
                }
                Got::Closed => bail!("terminal closed while waiting"),
                Got::Event(_) | Got::Nothing => {}
            }
        }
    }

    pub(crate) async fn close(self) {
        match self {
            Self::Shellway { mut ws, .. } | Self::Webssh(mut ws) => {
                let _ = ws.close(None).await;
            }
            Self::Direct { mut child, .. } => {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
            Self::Russh { channel, .. } => {
                let _ = channel.close().await;
            }
        }
    }
}
