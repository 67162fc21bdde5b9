//! The `usersvc` binary: everything happens in `usersvc::cli`.

/// mimalloc returns large freed blocks (argon2's 19 MiB per hash) to the OS; glibc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    usersvc::cli::main()
}
