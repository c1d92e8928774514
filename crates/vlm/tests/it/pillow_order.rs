//! Pillow 13's pass order in the bicubic resize: every combination of growing, shrinking and
//! keeping the width and the height (RGB and L), and `Qwen2VLImageProcessorPil`'s pixel values for
//! images whose width grows while the height shrinks under `smart_resize` (where Pillow 13 runs the
//! vertical pass first). Reference: fixtures/pillow_order (made by make_pillow_order.py there with
//! Pillow 13.0.0 and transformers 5.24).

use crate::common;

use candle_core::{DType, Device, Tensor};
use imaging::resample::{horizontal_first, resize_bicubic};
use std::collections::HashMap;
use vlm::image_processor::{ImageProcessor, RgbImage};
use vlm::PreprocessorConfig;

fn reference() -> HashMap<String, Tensor> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pillow_order");
    candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap()
}

fn bytes(t: &Tensor) -> Vec<u8> {
    t.flatten_all().unwrap().to_dtype(DType::U8).unwrap().to_vec1::<u8>().unwrap()
}

#[test]
fn resize_matches_pillow_13_for_every_direction() {
    let refs = reference();
    let mut keys: Vec<&String> = refs.keys().filter(|k| k.ends_with(".src") && !k.starts_with("processor.")).collect();
    keys.sort();
    assert_eq!(keys.len(), 22, "11 size changes x 2 modes");
    let mut vertical_first = 0;
    for key in keys {
        let case = key.trim_end_matches(".src");
        let src = &refs[key];
        let out = &refs[&format!("{case}.out")];
        let (h, w, c) = src.dims3().unwrap();
        let (oh, ow, _) = out.dims3().unwrap();
        let ours = resize_bicubic(&bytes(src), w, h, c, ow, oh);
        let want = bytes(out);
        let off = ours.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(off, 0, "{case}: {w}x{h} -> {ow}x{oh}: {off} of {} values differ from Pillow 13", want.len());
        if !horizontal_first(w, h, ow, oh) {
            vertical_first += 1;
        }
    }
    // w+h- (131x97 -> 140x84), w-h-- and w=h- (no horizontal pass) in both modes.
    assert_eq!(vertical_first, 6, "the fixtures must exercise the vertical-first order");
    // The old order (horizontal always first) is off by a level in many values of the case.
    let src = &refs["w+h-.RGB.src"];
    let old = imaging::resample::resize_bicubic_ordered(&bytes(src), 131, 97, 3, 140, 84, true);
    let off = old.iter().zip(bytes(&refs["w+h-.RGB.out"])).filter(|(a, b)| **a != *b).count();
    eprintln!("horizontal-first order: {off} of {} values differ", old.len());
    assert!(off > old.len() / 20, "the fixture does not tell the two orders apart ({off} values)");
}

#[test]
fn processor_matches_transformers_where_width_grows_and_height_shrinks() {
    let refs = reference();
    let proc = ImageProcessor::new(PreprocessorConfig {
        min_pixels: 56 * 56,
        max_pixels: 28 * 28 * 1280,
        ..Default::default()
    });
    for (w, h) in [(131, 97), (161, 125), (75, 69)] {
        let key = format!("processor.{w}x{h}");
        let img = RgbImage { width: w, height: h, data: bytes(&refs[&format!("{key}.src")]) };
        let p = proc.process(&img).unwrap();
        let grid = common::i64s(&refs[&format!("{key}.image_grid_thw")]);
        assert_eq!(grid, p.grid_thw.iter().map(|&x| x as i64).collect::<Vec<_>>(), "{key}: grid");
        let (rh, rw) = p.resized_hw;
        assert!(rw > w && rh < h, "{key}: expected a wider, shorter resize, got {rw}x{rh}");
        let want = common::f32s(&refs[&format!("{key}.pixel_values")]);
        assert_eq!(want.len(), p.patches.len(), "{key}: size");
        let max = want.iter().zip(&p.patches).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(max < 1e-5, "{key}: pixel values differ by up to {max}");
    }
}
