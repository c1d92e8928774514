//! `medr1`: Med-R1 in Rust. Thin subcommands over the library crates.

mod ask;
mod bench;
mod bench_grpo_shape;
mod data;
mod data_dicom;
mod dump;
mod eval;
mod lenient;
mod output;
mod protocol;
mod quantize;
mod serve;
mod train;
mod view;

use clap::{Parser, Subcommand};

// candle allocates a fresh buffer for every intermediate tensor; glibc returns large ones to the
// kernel on free, so each op paid for page faults on new memory (3.5x slower elementwise ops,
// measured). mimalloc keeps and reuses them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

extern "C" {
    fn mi_option_set(option: i32, value: std::ffi::c_long);
}

/// Keeps freed memory mapped for reuse (mimalloc's `purge_delay` = -1): otherwise every large
/// intermediate is fresh memory whose first touch page-faults (measured: vision tower 5.8 s ->
/// 5.0 s at the 2B shape). An explicit MIMALLOC_PURGE_DELAY in the environment wins.
/// While a model is built (`vlm::loading`), freed memory goes back to the system instead (0):
/// the freed originals of transposed and fused weights would otherwise stay resident (Qwen2.5-VL-3B
/// in float32: peak 18.6 -> 15.4 GB for 15.0 GB of weights).
fn configure_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        set_purge_delay(-1);
        vlm::loading::set_hook(|loading| set_purge_delay(if loading { 0 } else { -1 }));
    }
}

fn set_purge_delay(ms: std::ffi::c_long) {
    const MI_OPTION_PURGE_DELAY: i32 = 15; // position in mimalloc v2's mi_option_e
                                           // SAFETY: plain FFI call into the linked allocator; valid at any time.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, ms) };
}

#[derive(Parser)]
#[command(
    name = "medr1",
    version,
    about = "Med-R1 in Rust: medical visual question answering with Qwen2-VL and Qwen2.5-VL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Largest image medr1 decodes, in pixels (width x height; a DICOM file's frame), checked
    /// from the file's header before anything is decompressed: for every subcommand that reads
    /// images (ask, eval, train, sft, demo, protocol, data, serve).
    #[arg(long, global = true, default_value_t = imaging::DEFAULT_MAX_PIXELS)]
    max_image_pixels: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Answer a question about a medical image with a Qwen2-VL or Qwen2.5-VL checkpoint.
    Ask(ask::AskArgs),
    /// Medical VQA data: generate the phantom benchmark, split OmniMedVQA, count, show.
    Data(data::DataArgs),
    /// GRPO training (Med-R1's recipe); with no arguments, the bundled demo.
    Train(train::TrainArgs),
    /// Supervised fine-tuning on the answers (the baseline Med-R1 compares against).
    Sft(train::TrainArgs),
    /// The bundled main job: phantoms, a tiny Qwen2-VL (or Qwen2.5-VL), SFT warm start, GRPO, before/after accuracy.
    Demo(train::DemoArgs),
    /// Time GRPO updates (rollout / scoring / forward-backward / optimizer) on the tiny model.
    BenchGrpo(train::BenchGrpoArgs),
    /// Fold a LoRA adapter into its base checkpoint (a full checkpoint transformers loads).
    Merge(train::MergeArgs),
    /// Draw training curves (reward, accuracy, KL, completion length) from a metrics.jsonl.
    Plot(train::PlotArgs),
    /// Score a checkpoint or an OpenAI-compatible endpoint with Med-R1's protocol (resumable).
    Eval(eval::EvalArgs),
    /// Tables, cross-domain matrices, heatmaps and bar charts from `medr1 eval` folders.
    Report(eval::ReportArgs),
    /// A whole cross-modality or cross-task experiment: train on each domain, test on all, matrix.
    Protocol(protocol::ProtocolArgs),
    /// Serve a checkpoint over an OpenAI-compatible chat-completions API.
    Serve(serve::ServeArgs),
    /// Run an oracle-format request and write what the model computes (for parity checks).
    Dump(dump::DumpArgs),
    /// Measure prefill time and decode speed at a tiny shape or a real one: 2b (Qwen2-VL-2B), 3b (Qwen2.5-VL-3B); random weights.
    Bench(bench::BenchArgs),
    /// Write a checkpoint with its weights in int8 (loads with --dtype int8 in seconds).
    Quantize(quantize::QuantizeArgs),
}

/// `medr1 data stats ... | head` should end quietly, as Unix tools do, not panic on a closed pipe
/// (Rust ignores SIGPIPE by default, turning it into a write error that println! panics on).
fn restore_sigpipe() {
    // SAFETY: resetting a signal to its default disposition at start-up, before any threads.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

fn main() {
    restore_sigpipe();
    configure_allocator();
    let cli = Cli::parse();
    imaging::set_max_pixels(cli.max_image_pixels);
    let r = match cli.command {
        Command::Ask(a) => ask::run(a),
        Command::Data(a) => data::run(a),
        Command::Dump(a) => dump::run(a),
        Command::Serve(a) => serve::run(a, cli.max_image_pixels),
        Command::Eval(a) => eval::eval(a),
        Command::Report(a) => eval::report(a),
        Command::Protocol(a) => protocol::run(a),
        Command::Train(a) => train::train(a),
        Command::Sft(a) => train::sft(a),
        Command::Demo(a) => train::demo(a),
        Command::Plot(a) => train::plot(a),
        Command::Merge(a) => train::merge(a),
        Command::BenchGrpo(a) => train::bench_grpo(a),
        Command::Bench(a) => bench::run(a),
        Command::Quantize(a) => quantize::run(a),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
