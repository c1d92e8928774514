//! The integration tests of this crate, gathered into one test binary (one link instead of one per file).

mod calibration;
mod common;
mod grpo_step;
mod lora;
mod qwen2_5_vl;
mod train_loop;
mod trl_loss;
mod trl_loss_2026;
