use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    customers_api::cli::run(customers_api::cli::Cli::parse()).await
}
