use std::process::ExitCode;

fn main() -> ExitCode {
    session_proxy::cli_main()
}
