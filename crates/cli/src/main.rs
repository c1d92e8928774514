//! `medr1`: Med-R1 in Rust. Thin subcommands over the library crates.

mod ask;
mod bench;
mod dump;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "medr1", version, about = "Med-R1 in Rust: medical visual question answering with Qwen2-VL")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer a question about a medical image with a Qwen2-VL checkpoint.
    Ask(ask::AskArgs),
    /// Run an oracle-format request and write what the model computes (for parity checks).
    Dump(dump::DumpArgs),
    /// Measure prefill time and decode speed at the tiny or the real 2B shape (random weights).
    Bench(bench::BenchArgs),
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Ask(a) => ask::run(a),
        Command::Dump(a) => dump::run(a),
        Command::Bench(a) => bench::run(a),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
