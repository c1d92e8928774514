//! The token embedding table: float rows picked by index, or int8 rows (per-row scale) widened to
//! float32 as they are looked up. With a tied LM head the same int8 table is the head's weight, so
//! the 2B model's 151936 x 1536 table is held once, in a quarter of float32's bytes.

use crate::kernels::int8::PackedI8;
use candle_core::{DType, Device, Result, Tensor};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub enum Embedding {
    /// Rows in the table's dtype.
    Dense(Tensor),
    /// A bfloat16 table whose rows are widened to float32 (a bf16 model computes in float32
    /// between its products).
    Bf16(Tensor),
    Int8(Arc<PackedI8>),
}

impl Embedding {
    /// Rows for the ids `ids` (1-D, u32): [len, hidden].
    pub fn lookup(&self, ids: &Tensor) -> Result<Tensor> {
        match self {
            Embedding::Dense(t) => t.index_select(ids, 0),
            Embedding::Bf16(t) => t.index_select(ids, 0)?.to_dtype(DType::F32),
            Embedding::Int8(p) => {
                let ids: Vec<u32> = ids.to_vec1()?;
                let mut out = vec![0f32; ids.len() * p.k];
                for (row, &id) in out.chunks_mut(p.k).zip(&ids) {
                    if id as usize >= p.n {
                        candle_core::bail!("token id {id} is outside the embedding table ({} rows)", p.n);
                    }
                    p.row(id as usize, row);
                }
                Tensor::from_vec(out, (ids.len(), p.k), &Device::Cpu)
            }
        }
    }

    /// The dtype lookups return.
    pub fn dtype(&self) -> DType {
        match self {
            Embedding::Dense(t) => t.dtype(),
            Embedding::Bf16(_) | Embedding::Int8(_) => DType::F32,
        }
    }

    pub fn device(&self) -> &Device {
        static CPU: Device = Device::Cpu;
        match self {
            Embedding::Dense(t) | Embedding::Bf16(t) => t.device(),
            Embedding::Int8(_) => &CPU,
        }
    }

    /// The table as a [vocab, hidden] tensor (int8 dequantized: a new float32 tensor).
    pub fn table(&self) -> Result<Tensor> {
        match self {
            Embedding::Dense(t) | Embedding::Bf16(t) => Ok(t.clone()),
            Embedding::Int8(p) => Tensor::from_vec(p.dequantize(), (p.n, p.k), &Device::Cpu),
        }
    }

    /// (rows, dim).
    pub fn table_dims(&self) -> (usize, usize) {
        match self {
            Embedding::Dense(t) | Embedding::Bf16(t) => t.dims2().unwrap_or((0, 0)),
            Embedding::Int8(p) => (p.n, p.k),
        }
    }

    /// Bytes the table occupies.
    pub fn bytes(&self) -> usize {
        match self {
            Embedding::Dense(t) | Embedding::Bf16(t) => t.elem_count() * t.dtype().size_in_bytes(),
            Embedding::Int8(p) => p.bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_lookup_matches_the_float_rows_within_half_a_step() {
        let (v, d) = (37, 10);
        let w: Vec<f32> = (0..v * d).map(|i| ((i * 13) % 23) as f32 / 7.0 - 1.5).collect();
        let dense = Embedding::Dense(Tensor::from_vec(w.clone(), (v, d), &Device::Cpu).unwrap());
        let p = Arc::new(PackedI8::quantize(&w, v, d));
        let q = Embedding::Int8(p.clone());
        let ids = Tensor::new(&[0u32, 36, 5, 5], &Device::Cpu).unwrap();
        let a = dense.lookup(&ids).unwrap().to_vec2::<f32>().unwrap();
        let b = q.lookup(&ids).unwrap().to_vec2::<f32>().unwrap();
        for (i, (ra, rb)) in a.iter().zip(&b).enumerate() {
            let id = [0, 36, 5, 5][i];
            for (x, y) in ra.iter().zip(rb) {
                assert!((x - y).abs() <= p.scales[id] * 0.5 + 1e-6);
            }
        }
        assert!(q.lookup(&Tensor::new(&[37u32], &Device::Cpu).unwrap()).is_err());
    }
}
