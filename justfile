# A thin menu over cargo and xtask. `just --list` shows it; `cargo install just`
# gets just. Nothing here is needed for the README's two set-up commands.

# List the recipes
default:
    @just --list

# Run every test of the workspace, every feature on (the README's test command)
test:
    cargo test --workspace --all-features

# Run every workspace check: format, lints, features, layering, unsafe, re-exports, docs, deny
audit:
    cargo xtask audit

# Check the library for Windows, macOS, iOS and Android (cargo check --target; `just portability aarch64-apple-ios` for one)
portability *TARGETS:
    cargo xtask portability {{TARGETS}}

# Run the benchmark suite and print the summary table (`just bench --quick` for a short run)
bench *ARGS:
    cargo xtask bench {{ARGS}}

# Play a URL while it downloads, seek, replay offline from the cache (the README's demo)
demo *ARGS:
    cargo run --release --example radio --features fetch,symphonia -- {{ARGS}}

# Stream a generated 256 MiB download through an mmap resource
stream *ARGS:
    cargo run --release --example stream -- {{ARGS}}

# Build the documentation of every crate and open it
doc:
    cargo doc --no-deps --workspace --all-features --open

# Format the code
fmt:
    cargo fmt --all

# Check licenses, bans and sources against deny.toml (needs cargo-deny)
deny:
    cargo deny check bans licenses sources
