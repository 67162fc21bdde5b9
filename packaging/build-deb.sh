#!/usr/bin/env bash
# Builds the Debian package: target/debian/usersvc_<version>-1_<arch>.deb
#
#   packaging/build-deb.sh [extra cargo-deb flags, e.g. --fast]
#
# cargo-deb cannot run code, so this script builds the release binary, runs it to generate the
# shell completions and man pages from the clap definitions into target/deb-assets/, and then
# runs `cargo deb --no-build`, which packs them (see [package.metadata.deb] in Cargo.toml).
# Needs cargo-deb: `cargo install cargo-deb`.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-deb >/dev/null || {
    echo "build-deb.sh: cargo-deb is not installed; run: cargo install cargo-deb" >&2
    exit 1
}

cargo build --release --locked
bin="${CARGO_TARGET_DIR:-target}/release/usersvc"

assets=target/deb-assets
rm -rf "$assets"
mkdir -p "$assets/completions" "$assets/man"
"$bin" completions bash >"$assets/completions/usersvc.bash"
"$bin" completions zsh >"$assets/completions/_usersvc"
"$bin" completions fish >"$assets/completions/usersvc.fish"
"$bin" man --out-dir "$assets/man"

cargo deb --no-build --locked "$@"
