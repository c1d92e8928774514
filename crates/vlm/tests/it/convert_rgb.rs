//! transformers' convert_to_rgb + Qwen2VLImageProcessorPil on every image mode: transparency
//! (RGBA, LA, a palette with a transparent index) composited onto white, L and palettes converted
//! as PIL's convert("RGB"), BMP decoded. Reference: fixtures/convert_rgb (made by
//! make_convert_rgb.py there with transformers 5.23 and Pillow).

use crate::common;

use candle_core::Device;
use vlm::image_processor::{ImageProcessor, RgbImage};
use vlm::PreprocessorConfig;

#[test]
fn every_mode_converts_and_processes_as_transformers() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/convert_rgb");
    let refs = candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap();
    let proc = ImageProcessor::new(PreprocessorConfig { min_pixels: 3136, max_pixels: 12544, ..Default::default() });
    for name in ["rgba.png", "la.png", "p_transparent.png", "p_opaque.png", "l.png", "rgb.bmp"] {
        let key = name.replace('.', "_");
        let img = RgbImage::open(&dir.join(name)).unwrap();
        let p = proc.process(&img).unwrap();
        let grid: Vec<i64> = common::i64s(&refs[&format!("{key}_grid")]);
        assert_eq!(grid, p.grid_thw.iter().map(|&x| x as i64).collect::<Vec<_>>(), "{name}: grid");
        let want = common::f32s(&refs[&format!("{key}_pixel_values")]);
        assert_eq!(want.len(), p.patches.len(), "{name}: size");
        let max = want.iter().zip(&p.patches).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(max < 1e-5, "{name}: pixel values differ by up to {max}");
    }
}
