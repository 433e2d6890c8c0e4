//! A WebSocket client speaking the console protocol, for tests.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use shellway_common::output::decode_frame;

use crate::finder::Finder;

#[derive(Debug, Clone)]
pub enum Frame {
    /// Terminal output: sequence number and bytes.
    Output(u64, Vec<u8>),
    /// A JSON event.
    Event(Value),
    /// The server closed the connection.
    Closed,
}

pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Every PTY byte received so far, in order.
    pub screen: Vec<u8>,
    /// Highest output sequence number seen.
    pub last_seq: u64,
    /// Every JSON event received so far.
    pub events: Vec<Value>,
}

impl WsClient {
    /// Connects to `path` (e.g. `/ws/sessions/<id>?after=3`) on `base`.
    pub async fn connect(base: &str, path: &str, token: &str) -> Self {
        Self::try_connect(base, path, Some(token))
            .await
            .unwrap_or_else(|e| panic!("websocket connect to {path}: {e}"))
    }

    pub async fn try_connect(
        base: &str,
        path: &str,
        token: Option<&str>,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let (stream, _) = tokio_tungstenite::connect_async(request(base, path, token)?).await?;
        Ok(Self::over(stream))
    }

    /// Like `connect`, with the socket's receive buffer fixed at `bytes`
    /// (no autotuning): a client that stops reading then holds the server
    /// up after little data, as a stalled browser does.
    pub async fn connect_small_buffer(base: &str, path: &str, token: &str, bytes: u32) -> Self {
        let addr: std::net::SocketAddr = base
            .trim_start_matches("http://")
            .parse()
            .unwrap_or_else(|e| panic!("proxy address in {base}: {e}"));
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        let tcp = socket.connect(addr).await.expect("connect to the proxy");
        let req = request(base, path, Some(token)).expect("request");
        let (stream, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp))
            .await
            .unwrap_or_else(|e| panic!("websocket connect to {path}: {e}"));
        Self::over(stream)
    }

    fn over(stream: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        Self {
            stream,
            screen: Vec::new(),
            last_seq: 0,
            events: Vec::new(),
        }
    }

    pub async fn send(&mut self, action: Value) {
        self.stream
            .send(Message::Text(action.to_string().into()))
            .await
            .expect("send action");
    }

    pub async fn send_raw(&mut self, msg: Message) {
        self.stream.send(msg).await.expect("send raw frame");
    }

    pub async fn type_text(&mut self, text: &str) {
        self.send(serde_json::json!({"action": "input", "data": text}))
            .await;
    }

    /// Next frame, or `None` if nothing arrives within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Frame> {
        loop {
            let msg = match tokio::time::timeout(timeout, self.stream.next()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => return Some(Frame::Closed),
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                Message::Binary(b) => {
                    let (seq, data) = decode_frame(&b).expect("binary frame has a seq");
                    assert!(
                        seq > self.last_seq,
                        "output seq went from {} to {seq}: duplicate or reordered",
                        self.last_seq
                    );
                    self.last_seq = seq;
                    self.screen.extend_from_slice(data);
                    return Some(Frame::Output(seq, data.to_vec()));
                }
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).expect("event is JSON");
                    if let Some(seq) = v["seq"].as_u64() {
                        self.last_seq = self.last_seq.max(seq);
                    }
                    self.events.push(v.clone());
                    return Some(Frame::Event(v));
                }
                Message::Close(_) => return Some(Frame::Closed),
                _ => continue,
            }
        }
    }

    /// Waits until the terminal output contains `needle`. Each byte is
    /// searched about once, so waiting through megabytes stays cheap.
    pub async fn wait_output(&mut self, needle: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut finder = Finder::new(needle.as_bytes());
        if finder.push(&self.screen) {
            return;
        }
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Frame::Output(_, data)) if finder.push(&data) => return,
                Some(Frame::Closed) | None => panic!(
                    "terminal never showed {needle:?}; it ends with:\n{}\nevents: {:?}",
                    String::from_utf8_lossy(&self.screen[self.screen.len().saturating_sub(4096)..]),
                    self.events
                ),
                _ => {}
            }
        }
    }

    /// Reads until nothing has arrived for `quiet`.
    pub async fn read_until_quiet(&mut self, quiet: Duration) {
        while let Some(frame) = self.next(quiet).await {
            if matches!(frame, Frame::Closed) {
                return;
            }
        }
    }

    /// Waits for the first event satisfying `pred` and returns it.
    pub async fn wait_event(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(e) = self.events.iter().find(|e| pred(e)) {
            return e.clone();
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Frame::Event(e)) if pred(&e) => return e,
                Some(Frame::Closed) | None => {
                    panic!("no {what} event within {timeout:?}; got {:?}", self.events)
                }
                _ => {}
            }
        }
    }

    /// Waits until the shell is open (a `status` event with `open`).
    pub async fn wait_open(&mut self) {
        self.wait_event("status open", crate::WAIT, |e| {
            (e["event"] == "status" || e["event"] == "connected") && e["status"] == "open"
        })
        .await;
    }
}

/// The upgrade request for `path` on `base`, with the bearer token if any.
fn request(
    base: &str,
    path: &str,
    token: Option<&str>,
) -> Result<
    tokio_tungstenite::tungstenite::handshake::client::Request,
    tokio_tungstenite::tungstenite::Error,
> {
    let url = format!("{}{path}", base.replacen("http", "ws", 1));
    let mut req = url.into_client_request()?;
    if let Some(t) = token {
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("header"),
        );
    }
    Ok(req)
}
