//! `medr1 dump`: the oracle's tensors for one request, written as safetensors.

use anyhow::{Context, Result};
use candle_core::DType;
use clap::Args;
use std::path::PathBuf;
use vlm::dump::{run_case, CaseRequest};
use vlm::Checkpoint;

#[derive(Args)]
pub struct DumpArgs {
    /// Checkpoint directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Request in the oracle's case format (conversations, completion(s), generate).
    #[arg(long)]
    pub request: PathBuf,
    /// Folder that the request's image paths are relative to.
    #[arg(long)]
    pub image_root: PathBuf,
    /// Output safetensors file.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write grad.<parameter> for every parameter (requests with completions only).
    #[arg(long)]
    pub grads: bool,
}

pub fn run(a: DumpArgs) -> Result<()> {
    let ck = Checkpoint::open(&a.model, DType::F32)?;
    let json: serde_json::Value = vlm::json::read_json(&a.request, "valid JSON")?;
    let req = CaseRequest::from_json(&json, &a.request)?;
    let out = run_case(&ck, &req, &a.image_root, a.grads)?;
    candle_core::safetensors::save(&out.into_iter().collect(), &a.out)
        .with_context(|| format!("{}: cannot write", a.out.display()))?;
    eprintln!("wrote {}", a.out.display());
    Ok(())
}
