//! The `usersvc` binary: everything happens in `usersvc::cli`.

fn main() -> std::process::ExitCode {
    usersvc::cli::main()
}
