use clap::Parser;

/// mimalloc rather than glibc's malloc: docs/performance.md#the-allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    customers_api::cli::run(customers_api::cli::Cli::parse()).await
}
