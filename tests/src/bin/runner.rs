//! The real ssh-runner binary, built inside the test crate so tests can
//! start it as a process and kill it.
fn main() -> std::process::ExitCode {
    ssh_runner::cli_main()
}
