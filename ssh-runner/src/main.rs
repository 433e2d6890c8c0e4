use std::process::ExitCode;

fn main() -> ExitCode {
    ssh_runner::cli_main()
}
