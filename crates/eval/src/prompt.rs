//! One record as the model sees it: its image (optionally pre-resized as Med-R1 does, 384x384 with
//! PIL's bicubic) and the user-turn text in a prompt variant's words. Local scoring, endpoint
//! scoring and training all build the question here, so they ask the same thing.

use anyhow::Result;
use data::prompts::PromptVariant;
use data::Record;
use serde_json::json;
use vlm::image_processor::RgbImage;
use vlm::prompt::{Processor, Prompt};

/// How a record's image is prepared: DICOM shown through `view` (window, frame), then resized
/// to `resize` if given.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ImagePrep {
    pub resize: Option<(u32, u32)>,
    pub view: data::image::ImageOptions,
}

impl From<Option<(u32, u32)>> for ImagePrep {
    fn from(resize: Option<(u32, u32)>) -> Self {
        ImagePrep { resize, ..Default::default() }
    }
}

/// The record's image, decoded (PNG, JPEG, DICOM, a series folder, ...) and resized if asked.
pub fn record_image(r: &Record, prep: ImagePrep) -> Result<RgbImage> {
    let view = data::image::ImageOptions { slices: None, ..prep.view };
    let mut img = data::image::open_with(&r.image_path, &view)?.swap_remove(0);
    if let Some((w, h)) = prep.resize {
        let data = imaging::resample::resize_bicubic(&img.data, img.width, img.height, 3, w as usize, h as usize);
        img = RgbImage { width: w as usize, height: h as usize, data };
    }
    Ok(img)
}

/// The chat messages: one user turn, the image first, then the text (Med-R1's order).
pub fn user_messages(text: &str) -> serde_json::Value {
    json!([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}])
}

/// The model-ready prompt for a record.
pub fn record_prompt(processor: &Processor, r: &Record, variant: PromptVariant, prep: ImagePrep) -> Result<Prompt> {
    let img = record_image(r, prep)?;
    Ok(processor.prompt_with_images(&user_messages(&variant.for_record(r)), &[img])?)
}
