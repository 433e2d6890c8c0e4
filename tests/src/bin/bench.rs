//! Shellway against direct OpenSSH and webssh; see docs/benchmarks.md.

fn main() -> std::process::ExitCode {
    shellway_tests::bench::main()
}
