//! GRPO as Med-R1 ran it, its modern variants, and the SFT baseline.
//!
//! - [`rewards`]: accuracy and format rewards for Think / No-Think / Think-After.
//! - [`advantages`]: group-relative advantages, reward scaling, zero-std groups.
//! - [`loss`]: the GRPO loss family (grpo, bnpo, dapo, dr_grpo) with clipping and k3 KL, as TRL.
//! - [`optim`]: AdamW, warmup + linear / cosine schedules, global-norm clipping.
//! - [`policy`]: the trainable model (vision tower optionally frozen); [`rollout`]: sampled
//!   completions and their scoring batch; [`grpo`]: one update.

pub mod advantages;
pub mod config;
pub mod grpo;
pub mod lora;
pub mod loss;
pub mod metrics;
pub mod optim;
pub mod policy;
pub mod rewards;
pub mod rollout;
pub mod rollout_correction;
pub mod save;
pub mod stream;
pub mod trainer;
