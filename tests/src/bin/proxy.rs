//! The real session-proxy binary, built inside the test crate so tests can
//! start it as a process and kill it.
fn main() -> std::process::ExitCode {
    session_proxy::cli_main()
}
