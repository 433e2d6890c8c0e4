//! `TestEnv`: one isolated Shellway deployment per test.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use shellway_common::amqp::DurableQueueOptions;
use shellway_common::Topology;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{sshd::free_port, Api, Sshd, WsClient, WAIT};
use shellway_common::vault::secrecy as age_secrecy;

pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

#[derive(Debug, Clone)]
pub struct TestEnvOptions {
    /// Runners started in-process with the environment.
    pub runners: usize,
    pub runner_capacity: u32,
    pub request_ttl: Duration,
    pub heartbeat: Duration,
    pub connect_timeout: Duration,
    /// Run the proxy as a process (so a test can kill it) instead of
    /// in-process.
    pub proxy_process: bool,
    pub sharing: session_proxy::Sharing,
    pub recording: session_proxy::RecordingPolicy,
    /// Connection, sign-in and token bounds of the proxies.
    pub security: session_proxy::Security,
    pub session_idle_timeout: Duration,
    /// RabbitMQ to use instead of the shared one (a test's own node).
    pub amqp_url: Option<String>,
    /// Postgres server to use instead of the shared one: any URL of it (the
    /// database name is replaced).
    pub database_server: Option<String>,
    /// Start the proxy with the environment (and wait until it is ready).
    pub start_proxy: bool,
    /// Let the test sshd accept passwords (of system users) too.
    pub sshd_password_auth: bool,
    /// How often the proxies poll service panels' status by themselves.
    pub service_status_every: Duration,
}

/// The proxy's security defaults, but room for many connections: every
/// test client comes from 127.0.0.1.
fn test_security() -> session_proxy::Security {
    let mut security = session_proxy::Security::default();
    security.connections.max_per_address = 4096;
    security
}

impl Default for TestEnvOptions {
    fn default() -> Self {
        Self {
            runners: 1,
            runner_capacity: 50,
            request_ttl: Duration::from_secs(8),
            heartbeat: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(5),
            proxy_process: false,
            sharing: session_proxy::Sharing::default(),
            recording: session_proxy::RecordingPolicy::default(),
            security: test_security(),
            session_idle_timeout: Duration::from_secs(1800),
            amqp_url: None,
            database_server: None,
            start_proxy: true,
            sshd_password_auth: false,
            service_status_every: Duration::from_secs(30),
        }
    }
}

/// A service running inside the test process.
struct InProcess {
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl InProcess {
    async fn stop(self) {
        self.shutdown.cancel();
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("service ended with an error: {e:#}"),
            Ok(Err(e)) => panic!("service task panicked: {e}"),
            Err(_) => panic!("service did not shut down within 10 s"),
        }
    }
}

pub struct TestEnv {
    pub opts: TestEnvOptions,
    pub prefix: String,
    pub amqp_url: String,
    pub db_name: String,
    pub db_url: String,
    /// Any URL of the Postgres server (to create and drop the database).
    server_url: String,
    pub sshd: Sshd,
    /// Base URL of the in-process proxy, e.g. `http://127.0.0.1:41234`.
    pub base: String,
    /// Admin API client (bearer token).
    pub api: Api,
    /// The credential vault's key: its recipient goes to the proxies
    /// (`SHELLWAY_VAULT_RECIPIENTS`), the identity to the runners only.
    pub vault: shellway_common::vault::Identity,
    proxy: Option<InProcess>,
    proxy_child: Option<Child>,
    extra_proxies: Vec<InProcess>,
    runners: Vec<InProcess>,
}

fn base_database_url() -> String {
    std::env::var("SHELLWAY_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn amqp_url() -> String {
    std::env::var("SHELLWAY_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn with_database(url: &str, db: &str) -> String {
    match url.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{db}"),
        None => format!("{url}/{db}"),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Path of one of this package's binaries. Cargo builds them before it runs
/// the integration tests and puts them one level above the test executable
/// (`target/<profile>/deps/<test>` → `target/<profile>/<bin>`).
pub fn test_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let mut dir = exe.parent().expect("test executable has a directory");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("deps has a parent");
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built; run the tests with `cargo test -p shellway-tests`",
        path.display()
    );
    path
}

/// Drops test databases left behind by runs that crashed hours ago.
async fn drop_stale_databases(conn: &mut PgConnection) {
    let names: Vec<(String,)> =
        sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE 'sw_t_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    for (name,) in names {
        let born = name
            .split('_')
            .nth(2)
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(u64::MAX);
        if born.saturating_add(3 * 3600) < now_secs() {
            let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
                .execute(&mut *conn)
                .await;
        }
    }
}

impl TestEnv {
    pub async fn start() -> Self {
        Self::start_with(TestEnvOptions::default()).await
    }

    pub async fn start_with(opts: TestEnvOptions) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .with_test_writer()
            .try_init();
        let prefix = crate::unique("swt-");
        let db_name = format!(
            "sw_t_{}_{}",
            now_secs(),
            hex::encode(rand::random::<[u8; 4]>())
        );
        let base_url = opts
            .database_server
            .clone()
            .unwrap_or_else(base_database_url);
        if let Ok(mut conn) = PgConnection::connect(&base_url).await {
            drop_stale_databases(&mut conn).await;
        }
        let db_url = with_database(&base_url, &db_name);
        let amqp = opts.amqp_url.clone().unwrap_or_else(amqp_url);
        let sshd = Sshd::start_with(opts.sshd_password_auth).await;

        let mut env = Self {
            opts,
            prefix,
            amqp_url: amqp,
            db_name,
            db_url,
            server_url: base_url,
            sshd,
            base: String::new(),
            api: Api::new("", None),
            vault: shellway_common::vault::Identity::generate(),
            proxy: None,
            proxy_child: None,
            extra_proxies: Vec::new(),
            runners: Vec::new(),
        };
        if env.opts.start_proxy {
            env.start_proxy().await;
        }
        for _ in 0..env.opts.runners {
            env.start_runner().await;
        }
        env
    }

    pub fn topology(&self) -> Topology {
        Topology::new(self.prefix.clone())
    }

    fn durable(&self) -> DurableQueueOptions {
        DurableQueueOptions {
            expires: Some(Duration::from_secs(120)),
        }
    }

    pub fn proxy_config(&self, proxy_id: &str) -> session_proxy::Config {
        session_proxy::Config {
            database_url: self.db_url.clone(),
            amqp_url: self.amqp_url.clone(),
            topology: self.topology(),
            proxy_id: proxy_id.to_owned(),
            request_ttl: self.opts.request_ttl,
            heartbeat: self.opts.heartbeat,
            durable: self.durable(),
            bootstrap_admin: Some((ADMIN.into(), ADMIN_PASSWORD.into())),
            cookie_secure: false,
            with_runner: None,
            sharing: self.opts.sharing.clone(),
            recording: self.opts.recording.clone(),
            security: self.opts.security.clone(),
            session_idle_timeout: self.opts.session_idle_timeout,
            vault_recipients: vec![self.vault.to_public()],
            service_status_every: self.opts.service_status_every,
        }
    }

    pub fn runner_config(&self, runner_id: &str) -> ssh_runner::Config {
        ssh_runner::Config {
            amqp_url: self.amqp_url.clone(),
            topology: self.topology(),
            runner_id: runner_id.to_owned(),
            capacity: self.opts.runner_capacity,
            heartbeat: self.opts.heartbeat,
            connect_timeout: self.opts.connect_timeout,
            key_dir: self.key_dir(),
            durable: self.durable(),
            vault: shellway_common::vault::Identities::new(vec![self.vault.clone()]),
            ..ssh_runner::Config::default()
        }
    }

    /// The runners' key directory: sshd's scratch directory, which holds
    /// the keys the tests use.
    pub fn key_dir(&self) -> std::path::PathBuf {
        self.sshd.dir.to_path_buf()
    }

    /// Starts the proxy (in-process on port 0, or as a process) and logs in
    /// as the admin.
    pub async fn start_proxy(&mut self) {
        if self.opts.proxy_process {
            let (child, base) = self.spawn_proxy_process(&crate::unique("p")).await;
            self.proxy_child = Some(child);
            self.base = base;
            self.api = Api::login(&self.base, ADMIN, ADMIN_PASSWORD).await;
            return;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let config = self.proxy_config(&crate::unique("p"));
        let task = tokio::spawn(session_proxy::run(config, listener, shutdown.clone()));
        self.proxy = Some(InProcess { shutdown, task });
        self.wait_healthy(&self.base.clone()).await;
        self.api = Api::login(&self.base, ADMIN, ADMIN_PASSWORD).await;
    }

    /// Starts another in-process proxy of the same deployment (same broker
    /// prefix and database) and returns its base URL.
    pub async fn start_extra_proxy(&mut self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let config = self.proxy_config(&crate::unique("p"));
        let task = tokio::spawn(session_proxy::run(config, listener, shutdown.clone()));
        self.extra_proxies.push(InProcess { shutdown, task });
        self.wait_healthy(&base).await;
        base
    }

    /// Creates a non-admin user (as the admin) and returns an API client
    /// signed in as them on the main proxy.
    pub async fn add_user(&self, username: &str) -> Api {
        let password = format!("{username}-password");
        let (status, body) = self
            .api
            .post(
                "/api/users",
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::CREATED, "create user: {body}");
        Api::login(&self.base, username, &password).await
    }

    /// Grants the user signed in as `user` `actions` on every account of
    /// `host` (as the admin); returns the grant's id. Without a grant a
    /// user does not even see a host.
    pub async fn grant(&self, user: &Api, host: Uuid, actions: &[&str]) -> Uuid {
        self.grant_account(user, host, "*", actions).await
    }

    /// Grants `actions` on one `account` of `host` (`*`: every account).
    pub async fn grant_account(
        &self,
        user: &Api,
        host: Uuid,
        account: &str,
        actions: &[&str],
    ) -> Uuid {
        let (_, me) = user.get("/api/me").await;
        let (status, body) = self
            .api
            .post(
                "/api/grants",
                json!({
                    "subject": {"user": me["user"]["id"]},
                    "target": {"host": host},
                    "account": account,
                    "actions": actions,
                }),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::CREATED, "grant: {body}");
        crate::api::id_of(&body)
    }

    /// A shell on the test sshd for `user`, who is granted what a session's
    /// owner usually does there (shell, run, share); waits until it is open.
    pub async fn open_shell_as(&self, user: &Api, base: &str) -> (Uuid, WsClient) {
        let host = self.add_host().await;
        self.grant(user, host, &["shell", "run", "share"]).await;
        let id = user.open_session(host).await;
        let token = user.token.as_deref().unwrap_or_default();
        let mut ws = WsClient::connect(base, &format!("/ws/sessions/{id}"), token).await;
        ws.wait_open().await;
        (id, ws)
    }

    pub async fn wait_healthy(&self, base: &str) {
        let http = reqwest::Client::new();
        crate::eventually("the proxy to be ready", WAIT, || {
            let http = http.clone();
            async move {
                let r = http.get(format!("{base}/readyz")).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
    }

    /// Starts one more in-process runner and returns its id.
    pub async fn start_runner(&mut self) -> String {
        let id = crate::unique("r");
        self.start_runner_with(self.runner_config(&id));
        id
    }

    /// Starts an in-process runner with `config`.
    pub fn start_runner_with(&mut self, config: ssh_runner::Config) {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(ssh_runner::run(config, shutdown.clone()));
        self.runners.push(InProcess { shutdown, task });
    }

    /// Environment for the proxy and runner binaries run as processes.
    fn process_env(&self, cmd: &mut Command) {
        let recording = &self.opts.recording;
        cmd.env("SHELLWAY_AMQP_URL", &self.amqp_url)
            .env("SHELLWAY_AMQP_PREFIX", &self.prefix)
            .env("SHELLWAY_DATABASE_URL", &self.db_url)
            .env(
                "SHELLWAY_HEARTBEAT_MS",
                self.opts.heartbeat.as_millis().to_string(),
            )
            .env(
                "SHELLWAY_REQUEST_TTL_MS",
                self.opts.request_ttl.as_millis().to_string(),
            )
            .env(
                "SHELLWAY_CONNECT_TIMEOUT_MS",
                self.opts.connect_timeout.as_millis().to_string(),
            )
            .env(
                "SHELLWAY_RUNNER_CAPACITY",
                self.opts.runner_capacity.to_string(),
            )
            .env("SHELLWAY_QUEUE_EXPIRES_MS", "120000")
            .env("SHELLWAY_RUNNER_KEY_DIR", self.key_dir())
            .env(
                "SHELLWAY_MAX_VIEWERS",
                self.opts.sharing.max_viewers.to_string(),
            )
            .env(
                "SHELLWAY_RECORDING_RETENTION_DAYS",
                recording
                    .retention
                    .map_or(0, |d| d.as_secs().div_ceil(86_400))
                    .to_string(),
            )
            .env(
                "SHELLWAY_RECORDING_MAX_BYTES",
                recording.max_bytes.unwrap_or(0).to_string(),
            )
            .env(
                "SHELLWAY_RECORDING_SWEEP_S",
                recording.sweep_every.as_secs().max(1).to_string(),
            )
            .env(
                "SHELLWAY_SESSION_IDLE_TIMEOUT_S",
                self.opts.session_idle_timeout.as_secs().to_string(),
            )
            .env("SHELLWAY_ADMIN_USERNAME", ADMIN)
            .env("SHELLWAY_COOKIE_SECURE", "false")
            .env(
                "SHELLWAY_TRUSTED_PROXIES",
                self.opts.security.trusted_proxies.to_string(),
            )
            .env(
                "SHELLWAY_HASH_CONCURRENCY",
                self.opts.security.hash_concurrency.to_string(),
            )
            .env(
                "SHELLWAY_HASH_WAIT_MS",
                self.opts.security.hash_wait.as_millis().to_string(),
            )
            .env(
                "SHELLWAY_TOKEN_MAX_EXPIRY_S",
                self.opts.security.token_max_expiry.as_secs().to_string(),
            )
            .env(
                "SHELLWAY_MAX_CONNECTIONS",
                self.opts.security.connections.max_total.to_string(),
            )
            .env(
                "SHELLWAY_MAX_CONNECTIONS_PER_ADDRESS",
                self.opts.security.connections.max_per_address.to_string(),
            )
            .env(
                "SHELLWAY_HEADER_TIMEOUT_MS",
                self.opts
                    .security
                    .connections
                    .header_timeout
                    .as_millis()
                    .to_string(),
            )
            .env(
                "SHELLWAY_SERVICE_STATUS_S",
                self.opts.service_status_every.as_secs().to_string(),
            )
            .env("SHELLWAY_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(url) = &self.opts.security.public_url {
            cmd.env("SHELLWAY_PUBLIC_URL", url.to_string());
        }
    }

    /// Starts the runner binary as a process (so a test can kill it).
    pub fn spawn_runner_process(&self, runner_id: &str) -> Child {
        self.runner_command(runner_id)
            .spawn()
            .expect("start runner process")
    }

    /// The runner binary's command line, to add to before spawning.
    pub fn runner_command(&self, runner_id: &str) -> Command {
        use age_secrecy::ExposeSecret;
        let mut cmd = Command::new(test_binary("shellway-test-runner"));
        self.process_env(&mut cmd);
        cmd.env("SHELLWAY_RUNNER_ID", runner_id).env(
            "SHELLWAY_VAULT_IDENTITY",
            self.vault.to_string().expose_secret(),
        );
        cmd
    }

    /// Starts the proxy binary as a process on a free port; returns its base URL.
    pub async fn spawn_proxy_process(&self, proxy_id: &str) -> (Child, String) {
        let (child, base) = self.proxy_command(proxy_id);
        let child = { child }.spawn().expect("start proxy process");
        self.wait_healthy(&base).await;
        (child, base)
    }

    /// The proxy binary's command line on a free port, and its base URL.
    pub fn proxy_command(&self, proxy_id: &str) -> (Command, String) {
        let port = free_port();
        let mut cmd = Command::new(test_binary("shellway-test-proxy"));
        self.process_env(&mut cmd);
        cmd.env("SHELLWAY_PROXY_ID", proxy_id)
            .env("SHELLWAY_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "SHELLWAY_VAULT_RECIPIENTS",
                shellway_common::vault::recipient_of(&self.vault),
            );
        (cmd, format!("http://127.0.0.1:{port}"))
    }

    /// Host JSON for the test sshd, authenticating with the accepted key and
    /// pinning the real host key.
    pub fn host_json(&self, name: &str) -> Value {
        self.host_json_with(name, &self.sshd.user_key, "strict", &[&self.sshd.host_key])
    }

    pub fn host_json_with(&self, name: &str, key: &Path, policy: &str, pinned: &[&str]) -> Value {
        json!({
            "name": name,
            "hostname": "127.0.0.1",
            "port": self.sshd.port,
            "username": self.sshd.username,
            "auth_method": "key_path",
            "key_path": key.display().to_string(),
            "host_key_policy": policy,
            "host_keys": pinned,
        })
    }

    pub async fn add_host(&self) -> Uuid {
        self.api
            .create_host(self.host_json(&crate::unique("h")))
            .await
    }

    /// Adds an account `login` to `host` through the runner's agent (an
    /// account to be granted or not; never used to connect here).
    pub async fn add_agent_account(&self, host: Uuid, login: &str) {
        let (status, body) = self
            .api
            .post(
                &format!("/api/hosts/{host}/accounts"),
                json!({"login": login, "auth_method": "agent"}),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::CREATED, "add account: {body}");
    }

    pub async fn attach(&self, session: Uuid) -> WsClient {
        WsClient::connect(&self.base, &format!("/ws/sessions/{session}"), self.token()).await
    }

    pub fn token(&self) -> &str {
        self.api.token.as_deref().unwrap_or_default()
    }

    /// Opens an interactive shell on the test sshd and waits until it is open.
    pub async fn open_shell(&self) -> (Uuid, WsClient) {
        let host = self.add_host().await;
        let id = self.api.open_session(host).await;
        let mut ws = self.attach(id).await;
        ws.wait_open().await;
        (id, ws)
    }

    pub async fn db(&self) -> PgPool {
        PgPool::connect(&self.db_url)
            .await
            .expect("connect to the test database")
    }

    /// Every recorded output chunk of a session: (seq, stream, bytes).
    pub async fn recording(&self, session: Uuid) -> Vec<(i64, String, Vec<u8>)> {
        let pool = self.db().await;
        let rows: Vec<(i64, String, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, stream, data FROM output_chunks WHERE session_id = $1 ORDER BY seq",
        )
        .bind(session)
        .fetch_all(&pool)
        .await
        .expect("read output_chunks");
        pool.close().await;
        rows
    }

    /// The recorded PTY text of a session, checking that its seqs run
    /// 1..n with no gap or duplicate.
    pub async fn recorded_pty(&self, session: Uuid) -> String {
        let chunks = self.recording(session).await;
        for (i, (seq, _, _)) in chunks.iter().enumerate() {
            assert_eq!(*seq, i as i64 + 1, "recorded output has a gap or duplicate");
        }
        let bytes: Vec<u8> = chunks
            .into_iter()
            .filter(|(_, stream, _)| stream == "pty")
            .flat_map(|(_, _, d)| d)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Waits until the recorded PTY text contains `marker`; returns it.
    pub async fn wait_recorded(&self, session: Uuid, marker: &str) -> String {
        crate::eventually("the recorder to have everything", WAIT, || async {
            let text = self.recorded_pty(session).await;
            text.contains(marker).then_some(text)
        })
        .await
    }

    /// Process id of the proxy when it runs as a process.
    pub fn proxy_pid(&self) -> Option<u32> {
        self.proxy_child.as_ref().and_then(Child::id)
    }

    /// Sends the proxy process SIGTERM (as a service manager stops it) and
    /// waits up to `limit` for it to exit; whether it did.
    pub async fn terminate_proxy_process(&mut self, limit: Duration) -> bool {
        let pid = self.proxy_pid().expect("the proxy runs as a process");
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM to the proxy");
        let child = self.proxy_child.as_mut().expect("the proxy process");
        let exited = tokio::time::timeout(limit, child.wait()).await.is_ok();
        if exited {
            self.proxy_child = None;
        }
        exited
    }

    /// Kills the proxy process with SIGKILL: no graceful shutdown at all.
    pub async fn kill_proxy_process(&mut self) {
        let mut child = self
            .proxy_child
            .take()
            .expect("the proxy runs as a process");
        child.start_kill().expect("kill proxy");
        child.wait().await.expect("reap proxy");
    }

    /// Stops everything and drops the test database.
    pub async fn finish(mut self) {
        if let Some(mut child) = self.proxy_child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        for r in std::mem::take(&mut self.runners) {
            r.stop().await;
        }
        for p in std::mem::take(&mut self.extra_proxies) {
            p.stop().await;
        }
        if let Some(p) = self.proxy.take() {
            p.stop().await;
        }
        if let Ok(mut conn) = PgConnection::connect(&self.server_url).await {
            let drop = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.db_name);
            let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
                .execute(&mut conn)
                .await;
        }
    }
}
