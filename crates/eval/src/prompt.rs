//! One record as the model sees it: its image (optionally pre-resized as Med-R1 does, 384x384 with
//! PIL's bicubic) and the user-turn text in a prompt variant's words. Local scoring, endpoint
//! scoring and training all build the question here, so they ask the same thing.

use anyhow::Result;
use data::prompts::PromptVariant;
use data::Record;
use serde_json::json;
use vlm::image_processor::RgbImage;
use vlm::prompt::{Processor, Prompt};

/// The record's image, decoded (PNG, JPEG, DICOM, ...) and resized to `resize` if given.
pub fn record_image(r: &Record, resize: Option<(u32, u32)>) -> Result<RgbImage> {
    let mut img = data::image::open(&r.image_path)?;
    if let Some((w, h)) = resize {
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
pub fn record_prompt(
    processor: &Processor,
    r: &Record,
    variant: PromptVariant,
    resize: Option<(u32, u32)>,
) -> Result<Prompt> {
    let img = record_image(r, resize)?;
    Ok(processor.prompt_with_images(&user_messages(&variant.for_record(r)), &[img])?)
}
