//! The proxy's HTTP edge: response headers, the WebSocket origin check,
//! and bounds on connections (slow and half-open clients).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use shellway_tests::env::{ADMIN, ADMIN_PASSWORD};
use shellway_tests::{eventually, CookieClient, TestEnv, TestEnvOptions, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use uuid::Uuid;

fn addr_of(base: &str) -> SocketAddr {
    base.trim_start_matches("http://").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_the_api_carry_the_security_headers() {
    let env = TestEnv::start().await;
    let http = reqwest::Client::new();
    for path in [
        "/login",
        "/",
        "/hosts",
        "/assets/app.js",
        "/api/me",
        "/healthz",
    ] {
        let resp = http
            .get(format!("{}{path}", env.base))
            .bearer_auth(env.token())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let h = resp.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        for part in [
            "default-src 'self'",
            "script-src 'self';",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
        ] {
            assert!(csp.contains(part), "{path}: {csp}");
        }
        assert!(!csp.contains("script-src 'self' 'unsafe"), "{path}: {csp}");
    }
    let me = http
        .get(format!("{}/api/me", env.base))
        .bearer_auth(env.token())
        .send()
        .await
        .unwrap();
    assert_eq!(me.headers()["cache-control"], "no-store");
    env.finish().await;
}

/// A cookie-authenticated WebSocket upgrade to `path` on `base` sending
/// `origin` (and extra headers); the HTTP status it gets.
async fn upgrade_status(
    base: &str,
    path: &str,
    cookie: &CookieClient,
    origin: &str,
    extra: &[(&'static str, &str)],
) -> u16 {
    let mut req = format!("{}{path}", base.replacen("http", "ws", 1))
        .into_client_request()
        .unwrap();
    let h = req.headers_mut();
    h.insert("cookie", HeaderValue::from_str(&cookie.cookie).unwrap());
    h.insert("origin", HeaderValue::from_str(origin).unwrap());
    for (k, v) in extra {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((_, resp)) => resp.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("upgrade to {path}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_websocket_must_come_from_this_sites_scheme_host_and_port() {
    let mut env = TestEnv::start().await;
    let (id, _ws) = env.open_shell().await;
    let path = format!("/ws/sessions/{id}");
    let cookie = CookieClient::sign_in(&env.base, ADMIN, ADMIN_PASSWORD).await;
    let port = addr_of(&env.base).port();
    let here = format!("http://127.0.0.1:{port}");
    assert_eq!(
        upgrade_status(&env.base, &path, &cookie, &here, &[]).await,
        101
    );
    for other in [
        format!("https://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{}", port + 1),
        "http://127.0.0.1".to_owned(),
        "http://evil.example".to_owned(),
        "null".to_owned(),
    ] {
        let status = upgrade_status(&env.base, &path, &cookie, &other, &[]).await;
        assert_eq!(status, 403, "{other}");
    }
    // A forged X-Forwarded-Proto from a peer nobody trusts changes nothing.
    let https = format!("https://127.0.0.1:{port}");
    let forged = [("x-forwarded-proto", "https")];
    assert_eq!(
        upgrade_status(&env.base, &path, &cookie, &https, &forged).await,
        403
    );

    // Behind a trusted TLS-terminating proxy the page is https.
    env.opts.security.trusted_proxies = "127.0.0.1".parse().unwrap();
    let behind = env.start_extra_proxy().await;
    let port = addr_of(&behind).port();
    let https = format!("https://127.0.0.1:{port}");
    let proto = [("x-forwarded-proto", "https")];
    assert_eq!(
        upgrade_status(&behind, &path, &cookie, &https, &proto).await,
        101
    );
    let http = format!("http://127.0.0.1:{port}");
    assert_eq!(
        upgrade_status(&behind, &path, &cookie, &http, &proto).await,
        403
    );

    // With SHELLWAY_PUBLIC_URL, that origin and only it.
    env.opts.security.trusted_proxies = Default::default();
    env.opts.security.public_url = Some("https://console.example".parse().unwrap());
    let public = env.start_extra_proxy().await;
    let ok = "https://console.example";
    assert_eq!(upgrade_status(&public, &path, &cookie, ok, &[]).await, 101);
    let direct = format!("http://127.0.0.1:{}", addr_of(&public).port());
    assert_eq!(
        upgrade_status(&public, &path, &cookie, &direct, &[]).await,
        403
    );
    env.finish().await;
}

/// A TCP connection to `base` from the loopback address `from`.
async fn connect_from(from: &str, base: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(addr_of(base)).await.unwrap()
}

/// How long until the server closes `tcp` (reading and discarding), or
/// `None` if it is still open after `limit`.
async fn closed_after(tcp: &mut TcpStream, started: Instant, limit: Duration) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    let deadline = started + limit;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// When each socket was closed by the server (measured from `started`),
/// all watched at once; `None` for those still open after `limit`.
async fn closing_times(
    sockets: &mut [TcpStream],
    started: Instant,
    limit: Duration,
) -> Vec<Option<Duration>> {
    let watches = sockets
        .iter_mut()
        .map(|tcp| closed_after(tcp, started, limit));
    futures_util::future::join_all(watches).await
}

/// `GET /healthz` on a fresh connection from `from`; how long it took.
async fn healthz_from(from: &str, base: &str) -> Duration {
    let started = Instant::now();
    let mut tcp = connect_from(from, base).await;
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    tcp.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    started.elapsed()
}

fn limited(max_total: usize, per_address: usize, header_timeout: Duration) -> TestEnvOptions {
    let mut opts = TestEnvOptions::default();
    opts.security.connections.max_total = max_total;
    opts.security.connections.max_per_address = per_address;
    opts.security.connections.header_timeout = header_timeout;
    opts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_half_open_connections_leave_the_console_answering_and_are_closed() {
    let timeout = Duration::from_secs(2);
    let env = TestEnv::start_with(limited(10_000, 100, timeout)).await;
    // 300 sockets from one address send half a request line and stall.
    let started = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..300 {
        let mut tcp = connect_from("127.0.0.2", &env.base).await;
        let _ = tcp.write_all(b"GET /heal").await;
        stalled.push(tcp);
    }
    // One that sends nothing, and one idle after a complete request.
    let mut silent = connect_from("127.0.0.3", &env.base).await;
    let mut idle = connect_from("127.0.0.3", &env.base).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    idle.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");

    // The console answers meanwhile, promptly.
    let took = healthz_from("127.0.0.1", &env.base).await;
    assert!(took < Duration::from_secs(1), "healthz took {took:?}");
    let t = Instant::now();
    CookieClient::sign_in(&env.base, ADMIN, ADMIN_PASSWORD).await;
    eprintln!(
        "healthz {took:?}, sign-in {:?} beside 300 stalled sockets",
        t.elapsed()
    );

    // Over the per-address bound: closed at once. Within it: closed when
    // the header timeout runs out, not before.
    let limit = timeout + Duration::from_secs(5);
    let mut at_once = 0;
    let mut at_timeout = Vec::new();
    for after in closing_times(&mut stalled, started, limit).await {
        let after = after.expect("every stalled socket is closed");
        if after < timeout / 2 {
            at_once += 1;
        } else {
            at_timeout.push(after);
        }
    }
    eprintln!(
        "{at_once} closed at once; {} after {:?}..{:?}",
        at_timeout.len(),
        at_timeout.iter().min(),
        at_timeout.iter().max()
    );
    assert_eq!(at_once, 200, "the 200 over the per-address bound");
    assert_eq!(at_timeout.len(), 100);
    assert!(at_timeout
        .iter()
        .all(|t| *t >= timeout - Duration::from_millis(300)));
    for tcp in [&mut silent, &mut idle] {
        let after = closed_after(tcp, started, limit).await;
        assert!(after.is_some_and(|t| t >= timeout / 2), "{after:?}");
    }
    // Their slots are free again.
    healthz_from("127.0.0.2", &env.base).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_total_bound_are_closed_at_once_until_slots_free_up() {
    let timeout = Duration::from_secs(2);
    let env = TestEnv::start_with(limited(40, 1000, timeout)).await;
    // More stalled sockets than there are slots (the harness holds a few).
    let started = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..60 {
        let mut tcp = connect_from("127.0.0.2", &env.base).await;
        let _ = tcp.write_all(b"GET /heal").await;
        stalled.push(tcp);
    }
    let times = closing_times(&mut stalled, Instant::now(), Duration::from_millis(500)).await;
    let held = times.iter().filter(|t| t.is_none()).count();
    eprintln!("{held} of 60 held, {} closed at once", 60 - held);
    assert!((25..=40).contains(&held), "{held} held with 40 slots");
    let mut probe = connect_from("127.0.0.1", &env.base).await;
    let closed = closed_after(&mut probe, Instant::now(), Duration::from_millis(500)).await;
    assert!(closed.is_some(), "full: a new connection is closed at once");
    // Once the stalled ones time out, the console answers again.
    eventually("a free slot", WAIT, || async {
        let mut tcp = connect_from("127.0.0.1", &env.base).await;
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut reply = String::new();
        tcp.read_to_string(&mut reply).await.ok()?;
        reply.starts_with("HTTP/1.1 200").then_some(())
    })
    .await;
    assert!(started.elapsed() >= timeout - Duration::from_millis(300));
    env.finish().await;
}

/// A WebSocket to a session from the loopback address `from`.
async fn websocket_from(
    from: &str,
    base: &str,
    session: Uuid,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let tcp = connect_from(from, base).await;
    let url = format!("{}/ws/sessions/{session}", base.replacen("http", "ws", 1));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    tokio_tungstenite::client_async(req, tcp).await.unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_keeps_its_connection_slot_until_it_closes() {
    let mut opts = limited(10_000, 2, Duration::from_secs(10));
    // The harness's own connections (from 127.0.0.1) are not counted.
    opts.security.trusted_proxies = "127.0.0.1".parse().unwrap();
    let env = TestEnv::start_with(opts).await;
    let (id, _owner) = env.open_shell().await;
    let first = websocket_from("127.0.0.2", &env.base, id, env.token()).await;
    let _second = websocket_from("127.0.0.2", &env.base, id, env.token()).await;
    // Both slots of 127.0.0.2 are taken by the upgraded sockets.
    let mut third = connect_from("127.0.0.2", &env.base).await;
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let closed = closed_after(&mut third, Instant::now(), Duration::from_secs(2)).await;
    assert!(
        closed.is_some(),
        "a third connection from the address is refused"
    );
    drop(first);
    eventually("the closed WebSocket's slot", WAIT, || async {
        let mut tcp = connect_from("127.0.0.2", &env.base).await;
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut reply = String::new();
        tcp.read_to_string(&mut reply).await.ok()?;
        reply.starts_with("HTTP/1.1 200").then_some(())
    })
    .await;
    env.finish().await;
}
