//! The `walcast` command: everything lives in the library.

fn main() -> std::process::ExitCode {
    walcast::cli_main()
}
