//! `medr1 quantize`: a checkpoint written with its weights already in int8, which `ask`, `eval`,
//! `serve` and `bench` load with `--dtype int8` in seconds (the format: `vlm::quantized`).

use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;
use vlm::precision::Precision;
use vlm::Checkpoint;

#[derive(Args)]
pub struct QuantizeArgs {
    /// The checkpoint to quantize (float32, bfloat16 or float16 safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Where to write the quantized checkpoint (created; must not be --model).
    #[arg(long)]
    pub out: PathBuf,
    /// Target precision: int8 (symmetric, per output channel; linear layers and the embedding).
    #[arg(long, value_enum, default_value_t = Precision::Int8)]
    pub dtype: Precision,
}

pub fn run(a: QuantizeArgs) -> Result<()> {
    if a.dtype != Precision::Int8 {
        bail!("--dtype {}: only int8 checkpoints can be written (f32 and bf16 load from any checkpoint)", a.dtype);
    }
    if std::fs::canonicalize(&a.out).ok().is_some_and(|o| Some(o) == std::fs::canonicalize(&a.model).ok()) {
        bail!("--out {} is the source checkpoint: write the quantized one elsewhere", a.out.display());
    }
    crate::output::ensure_writable(&a.out, "output")?;
    let t = Instant::now();
    let ck = Checkpoint::open_as(&a.model, Precision::Int8)?;
    rl::save::copy_side_files(&a.out, &a.model, true)?;
    vlm::quantized::save_int8(&ck.model, ck.layout, &a.out)?;
    let f = ck.model.footprint()?;
    println!(
        "wrote {} ({:.3} B parameters in {:.2} GB, int8) in {:.1}s",
        a.out.display(),
        f.params as f64 / 1e9,
        f.bytes as f64 / 1e9,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
