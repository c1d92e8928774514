//! Helpers shared by the integration tests.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;

/// `tests/fixtures/qwen2vl-tiny`: copied from `shared/oracle/public` (made by
/// `shared/oracle/make_oracle.py` with transformers 5.23 / PyTorch 2.15, CPU, float32).
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen2vl-tiny")
}

/// `tests/fixtures/qwen25vl-tiny`: copied from `shared/oracle/qwen2_5_vl/public` (made by
/// `shared/oracle/make_oracle_qwen25.py` with transformers 5.24 / PyTorch 2.15, CPU, float32).
pub fn fixtures_qwen25() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen25vl-tiny")
}

pub fn load_case(name: &str) -> (serde_json::Value, HashMap<String, Tensor>) {
    load_case_in(&fixtures(), name)
}

/// A case of the fixture rooted at `root`.
pub fn load_case_in(root: &std::path::Path, name: &str) -> (serde_json::Value, HashMap<String, Tensor>) {
    let dir = root.join("cases");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap()).unwrap();
    let t = candle_core::safetensors::load(dir.join(format!("{name}.safetensors")), &Device::Cpu).unwrap();
    (json, t)
}

pub fn i64s(t: &Tensor) -> Vec<i64> {
    t.flatten_all().unwrap().to_dtype(DType::I64).unwrap().to_vec1::<i64>().unwrap()
}

pub fn f32s(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap()
}

/// ||a - b|| / ||b|| over the entries where `keep` is true.
pub fn rel_err(a: &[f32], b: &[f32], keep: impl Fn(usize) -> bool) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let (mut num, mut den) = (0f64, 0f64);
    for i in 0..a.len() {
        if keep(i) {
            num += ((a[i] - b[i]) as f64).powi(2);
            den += (b[i] as f64).powi(2);
        }
    }
    (num / den.max(1e-30)).sqrt()
}
