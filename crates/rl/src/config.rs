//! Training settings: a TOML file whose every key is optional (defaults are Med-R1's), overridable
//! on the command line with `--set key=value`. `medr1 train --print-config` prints them all.

use crate::advantages::ScaleRewards;
use crate::loss::{ImportanceSamplingLevel, LossConfig, LossType};
use crate::optim::Schedule;
use anyhow::{Context, Result};
use data::prompts::PromptVariant;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Starting checkpoint directory (transformers layout).
    pub model: PathBuf,
    /// Training data: an OmniMedVQA root, a QA file, a Med-R1 split file or a folder of them.
    pub data: PathBuf,
    /// OmniMedVQA root for split files' relative image paths (default: their manifest).
    pub images: Option<PathBuf>,
    /// Output folder: checkpoint, metrics.jsonl, trainer state.
    pub out: PathBuf,
    /// Prompt and format reward: think (Med-R1), nothink, thinkafter.
    pub prompt: PromptVariant,

    // Rollout (GRPO).
    /// Completions per prompt (G).
    pub num_generations: usize,
    pub temperature: f64,
    pub top_p: f64,
    /// 0 = off.
    pub top_k: usize,
    pub max_completion_length: usize,

    // Loss.
    /// KL coefficient; 0 loads no reference model.
    pub beta: f64,
    /// grpo (Med-R1), bnpo, dapo, dr_grpo, cispo, sapo, luspo, vespo (see `rl::loss`).
    pub loss_type: LossType,
    pub epsilon_low: f64,
    /// Upper clip; for cispo the cap on the ratio (ScaleRL: 5.0).
    pub epsilon_high: f64,
    /// token (PPO, GRPO) or sequence (GSPO, Zheng et al. 2025; its paper's eps 3e-4 / 4e-4).
    pub importance_sampling_level: ImportanceSamplingLevel,
    /// Two-sided clipping (INTELLECT-2): the ratio capped at delta before PPO's min; absent = off.
    pub delta: Option<f64>,
    /// Multiply the per-token KL by the ratio. TRL 1.16 defaults to true; false is the TRL
    /// Med-R1 trained with (same loss on-policy, another gradient when beta != 0).
    pub use_bias_correction_kl: bool,
    /// DeepSeek-V3.2's off-policy sequence mask: drop sequences with A < 0 whose mean drift from
    /// the sampler exceeds this; absent = off.
    pub off_policy_mask_threshold: Option<f64>,
    /// Only the top rho entropy tokens keep their policy term ("Beyond the 80/20 rule", Wang et
    /// al. 2025: 0.2); 1 = all.
    pub top_entropy_quantile: f64,
    /// SAPO's gate temperatures for A > 0 and A <= 0 (Qwen 2025).
    pub sapo_temperature_pos: f64,
    pub sapo_temperature_neg: f64,
    /// VESPO's gamma weight (k, lambda) for A >= 0 and A < 0.
    pub vespo_k_pos: f64,
    pub vespo_lambda_pos: f64,
    pub vespo_k_neg: f64,
    pub vespo_lambda_neg: f64,
    /// Entropy bonus: minus this times the mean token entropy (0 = off).
    pub entropy_coef: f64,
    /// Optimizer updates per rollout (mu).
    pub num_iterations: usize,
    /// group (Med-R1), batch, none.
    pub scale_rewards: ScaleRewards,
    /// DAPO dynamic sampling: drop groups whose rewards are all equal.
    pub drop_zero_std_groups: bool,
    /// Leave completions that hit max_completion_length without an EOS out of the loss.
    pub mask_truncated_completions: bool,
    /// Weights of the accuracy and format rewards.
    pub accuracy_weight: f32,
    pub format_weight: f32,

    // Optimizer.
    pub learning_rate: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_epsilon: f64,
    pub weight_decay: f64,
    /// constant, linear (Med-R1), cosine.
    pub lr_scheduler: Schedule,
    /// Fraction of the updates spent warming up.
    pub warmup_ratio: f64,
    /// 0 = no clipping.
    pub max_grad_norm: f64,
    /// Prompts per optimizer update (Med-R1: 2 GPUs x 1 prompt x 2 accumulation steps = 4).
    pub prompts_per_step: usize,
    pub epochs: usize,
    /// Completions (GRPO) or examples (SFT) per forward/backward pass; gradients of the
    /// micro-batches are accumulated into one update (0 = the whole update at once).
    pub micro_batch_size: usize,
    /// Recompute each vision block and decoder layer in the backward pass instead of keeping its
    /// activations (TRL's `gradient_checkpointing`): less memory, about a third more compute.
    pub gradient_checkpointing: bool,
    /// Stop after this many updates (0: run the epochs).
    pub max_steps: usize,
    pub freeze_vision: bool,

    // LoRA (off when lora_r = 0): the base stays frozen and shared with the reference model
    // (the adapter disabled); checkpoints are PEFT adapter folders (`medr1 merge` folds them in).
    pub lora_r: usize,
    pub lora_alpha: f64,
    /// Dropout on the adapters' input in training forwards (PEFT's `lora_dropout`).
    pub lora_dropout: f64,
    /// Layer names that get adapters (PEFT's `target_modules`).
    pub lora_target_modules: Vec<String>,
    /// Adapt the vision tower's matching layers too.
    pub lora_vision: bool,
    /// Storage of the frozen base's linear weights under LoRA: "f32" (reference) or "bf16"
    /// (half the memory; widened one layer at a time, activations and adapters stay float32).
    pub lora_base_dtype: vlm::precision::Precision,

    // Images.
    /// Upper bound of the image processor's pixel budget (Med-R1: 401408).
    pub max_pixels: usize,
    /// Resize every image to [width, height] first (Med-R1: [384, 384]); empty = no.
    pub image_resize: Vec<u32>,
    /// DICOM window replacing the file's: a CT preset (lung, mediastinum, bone, brain, abdomen,
    /// liver, soft-tissue) or "C,W"; empty = the file's own window.
    pub window: String,
    /// Frame of multi-frame DICOM files / slice of series folders (0-based); absent = the middle.
    pub dicom_frame: Option<usize>,

    // Bookkeeping.
    pub seed: u64,
    /// Print sample completions every this many updates (0 = never).
    pub sample_every: usize,
    /// Save a checkpoint every this many updates (0 = only at the end).
    pub save_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: PathBuf::new(),
            data: PathBuf::new(),
            images: None,
            out: PathBuf::from("runs/train"),
            prompt: PromptVariant::Think,
            num_generations: 4,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            max_completion_length: 256,
            beta: 0.04,
            loss_type: LossType::Grpo,
            epsilon_low: 0.2,
            epsilon_high: 0.2,
            num_iterations: 1,
            importance_sampling_level: ImportanceSamplingLevel::Token,
            delta: None,
            use_bias_correction_kl: false,
            off_policy_mask_threshold: None,
            top_entropy_quantile: 1.0,
            sapo_temperature_pos: 1.0,
            sapo_temperature_neg: 1.05,
            vespo_k_pos: 2.0,
            vespo_lambda_pos: 3.0,
            vespo_k_neg: 3.0,
            vespo_lambda_neg: 2.0,
            entropy_coef: 0.0,
            scale_rewards: ScaleRewards::Group,
            drop_zero_std_groups: false,
            mask_truncated_completions: false,
            accuracy_weight: 1.0,
            format_weight: 1.0,
            learning_rate: 1e-6,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            weight_decay: 0.0,
            lr_scheduler: Schedule::Linear,
            warmup_ratio: 0.0,
            max_grad_norm: 1.0,
            prompts_per_step: 4,
            epochs: 2,
            micro_batch_size: 0,
            gradient_checkpointing: false,
            max_steps: 0,
            freeze_vision: false,
            lora_r: 0,
            lora_alpha: 16.0,
            lora_dropout: 0.0,
            lora_target_modules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
                .map(String::from)
                .to_vec(),
            lora_vision: false,
            lora_base_dtype: vlm::precision::Precision::F32,
            max_pixels: 401_408,
            image_resize: vec![],
            window: String::new(),
            dicom_frame: None,
            seed: 42,
            sample_every: 10,
            save_every: 0,
        }
    }
}

impl TrainConfig {
    /// Med-R1's rewards for this run's prompt format, with the configured weights: accuracy
    /// (`accuracy_weight`) and format (`format_weight`). Add your own [`crate::rewards::Reward`]s
    /// to the returned set before passing it to [`crate::trainer::train_grpo`].
    pub fn rewards(&self) -> crate::rewards::RewardSet {
        use crate::rewards::{Accuracy, Format, RewardSet};
        RewardSet {
            rewards: vec![
                (Box::new(Accuracy), self.accuracy_weight),
                (Box::new(Format::new(self.prompt)), self.format_weight),
            ],
        }
    }

    /// The LoRA settings when LoRA is on.
    pub fn lora(&self) -> Option<crate::lora::LoraSettings> {
        (self.lora_r > 0).then(|| crate::lora::LoraSettings {
            r: self.lora_r,
            alpha: self.lora_alpha,
            dropout: self.lora_dropout,
            target_modules: self.lora_target_modules.clone(),
            vision: self.lora_vision,
            base_bf16: self.lora_base_dtype == vlm::precision::Precision::Bf16,
        })
    }

    /// Reads an optional TOML file, then applies `key=value` overrides (values are TOML; a bare
    /// word is taken as a string).
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<TrainConfig> {
        Self::load_over(&TrainConfig::default(), file, overrides)
    }

    /// As `load`, with `base` supplying the values the file and overrides leave out (SFT has its
    /// own defaults).
    pub fn load_over(base: &TrainConfig, file: Option<&Path>, overrides: &[String]) -> Result<TrainConfig> {
        let mut table: toml::Table = toml::from_str(&base.to_toml())?;
        if let Some(f) = file {
            let text = std::fs::read_to_string(f).with_context(|| format!("{}: cannot read", f.display()))?;
            let from_file: toml::Table =
                toml::from_str(&text).with_context(|| format!("{}: not valid TOML", f.display()))?;
            table.extend(from_file);
        }
        for o in overrides {
            let (k, v) = o.split_once('=').with_context(|| format!("--set {o}: expected key=value"))?;
            let (k, v) = (k.trim(), v.trim());
            let value: toml::Value = match toml::from_str::<toml::Table>(&format!("x = {v}")) {
                Ok(mut t) => t.remove("x").unwrap(),
                Err(_) => toml::Value::String(v.to_string()),
            };
            table.insert(k.to_string(), value);
        }
        let what = file.map(|f| f.display().to_string()).unwrap_or_else(|| "--set".into());
        let cfg: TrainConfig =
            toml::Value::Table(table).try_into().with_context(|| format!("{what}: invalid training settings"))?;
        cfg.check()?;
        Ok(cfg)
    }

    pub fn check(&self) -> Result<()> {
        anyhow::ensure!(
            !self.lora_base_dtype.quantized(),
            "lora_base_dtype = \"{}\" is not supported yet: the frozen base is f32 or bf16 (int8 and q4 run `ask`, `eval`, `serve` and `bench`)",
            self.lora_base_dtype
        );
        anyhow::ensure!(
            self.num_generations >= 2,
            "num_generations must be at least 2 (advantages compare completions of one prompt)"
        );
        anyhow::ensure!(self.prompts_per_step >= 1, "prompts_per_step must be at least 1");
        anyhow::ensure!(self.max_completion_length >= 1, "max_completion_length must be at least 1");
        anyhow::ensure!(
            self.image_resize.is_empty() || self.image_resize.len() == 2,
            "image_resize is [width, height] or empty"
        );
        anyhow::ensure!(self.num_iterations >= 1, "num_iterations must be at least 1");
        self.image_prep().context("window")?;
        anyhow::ensure!(
            self.top_entropy_quantile > 0.0 && self.top_entropy_quantile <= 1.0,
            "top_entropy_quantile must be in (0, 1]"
        );
        anyhow::ensure!(self.delta.is_none_or(|d| d > 1.0), "delta must be above 1 (it caps the ratio from above)");
        anyhow::ensure!(
            self.sapo_temperature_pos > 0.0 && self.sapo_temperature_neg > 0.0,
            "sapo_temperature_pos and sapo_temperature_neg must be positive"
        );
        Ok(())
    }

    /// The loss's settings.
    pub fn loss_config(&self) -> LossConfig {
        LossConfig {
            loss_type: self.loss_type,
            beta: self.beta,
            epsilon_low: self.epsilon_low,
            epsilon_high: self.epsilon_high,
            max_completion_length: self.max_completion_length,
            importance_sampling_level: self.importance_sampling_level,
            delta: self.delta,
            use_bias_correction_kl: self.use_bias_correction_kl,
            off_policy_mask_threshold: self.off_policy_mask_threshold,
            top_entropy_quantile: self.top_entropy_quantile,
            sapo_temperature_pos: self.sapo_temperature_pos,
            sapo_temperature_neg: self.sapo_temperature_neg,
            vespo_k_pos: self.vespo_k_pos,
            vespo_lambda_pos: self.vespo_lambda_pos,
            vespo_k_neg: self.vespo_k_neg,
            vespo_lambda_neg: self.vespo_lambda_neg,
            entropy_coef: self.entropy_coef,
        }
    }

    /// How every record's image is prepared (resize, DICOM window and frame).
    pub fn image_prep(&self) -> Result<eval::prompt::ImagePrep> {
        let window = if self.window.trim().is_empty() { None } else { Some(data::dicom::Window::parse(&self.window)?) };
        Ok(eval::prompt::ImagePrep {
            resize: (self.image_resize.len() == 2).then(|| (self.image_resize[0], self.image_resize[1])),
            view: data::image::ImageOptions { window, frame: self.dicom_frame, slices: None },
        })
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_sets_are_typed_and_unknown_values_name_the_key() {
        let c = TrainConfig::load(None, &["lora_base_dtype=bfloat16".into()]).unwrap();
        assert_eq!(c.lora_base_dtype, vlm::precision::Precision::Bf16);
        for bad in ["lora_base_dtype=half", "prompt=nothinking", "loss_type=ppo", "lr_scheduler=step"] {
            let err = format!("{:#}", TrainConfig::load(None, &[bad.into()]).unwrap_err());
            let key = bad.split('=').next().unwrap();
            assert!(err.contains(key), "{bad}: {err}");
        }
    }

    #[test]
    fn dicom_window_and_frame_settings() {
        let c = TrainConfig::load(None, &["window=lung".into(), "dicom_frame=2".into(), "image_resize=[8, 8]".into()])
            .unwrap();
        let prep = c.image_prep().unwrap();
        assert_eq!(prep.view.window, Some(data::dicom::Window::linear(-600.0, 1500.0)));
        assert_eq!((prep.view.frame, prep.resize), (Some(2), Some((8, 8))));
        assert_eq!(TrainConfig::default().image_prep().unwrap().view, data::image::ImageOptions::default());
        let custom = TrainConfig::load(None, &["window=\"40,400\"".into()]).unwrap();
        assert_eq!(custom.image_prep().unwrap().view.window, Some(data::dicom::Window::linear(40.0, 400.0)));
        let err = format!("{:#}", TrainConfig::load(None, &["window=lungs".into()]).unwrap_err());
        assert!(err.contains("window") && err.contains("lungs"), "{err}");
    }

    #[test]
    fn defaults_are_med_r1s_and_overrides_apply() {
        let c = TrainConfig::default();
        assert_eq!(
            (c.num_generations, c.temperature, c.max_completion_length, c.beta, c.learning_rate),
            (4, 1.0, 256, 0.04, 1e-6)
        );
        assert_eq!(
            (c.lr_scheduler, c.max_grad_norm, c.prompts_per_step, c.epochs, c.max_pixels),
            (Schedule::Linear, 1.0, 4, 2, 401_408)
        );
        let c = TrainConfig::load(
            None,
            &[
                "learning_rate=1e-4".into(),
                "prompt=nothink".into(),
                "image_resize=[384, 384]".into(),
                "loss_type=dapo".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            (c.learning_rate, c.prompt, c.image_resize.clone(), c.loss_type),
            (1e-4, PromptVariant::NoThink, vec![384, 384], LossType::Dapo)
        );
        assert!(TrainConfig::load(None, &["lerning_rate=1".into()]).unwrap_err().to_string().contains("invalid"));
        assert!(TrainConfig::load(None, &["num_generations=1".into()]).is_err());
        // Round trip through the printed form.
        let again: TrainConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(again, c);
    }
}
