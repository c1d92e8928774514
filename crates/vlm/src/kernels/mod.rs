//! The hand-written CPU kernels behind inference (candle's ops serve training, where gradients
//! are needed): bounds-checked gemm calls with fused bias and per-thread column bands (`dense`),
//! weight-streaming products for a few rows (`gemv`), quantized and bfloat16 products through
//! AVX512-VNNI / AVX512_BF16 (`int8`, `q4`, `bf16`), vectorised element-wise maths with run-time
//! AVX-512 / AVX2 dispatch (`fastmath`), fusion of linear layers that read the same input
//! (`fused`) and the vision tower's block-diagonal attention (`vision_attention`). Which of them
//! a linear layer uses is decided by its [`crate::linear::LinearKernel`], in one place.

pub mod bands;
pub mod bf16;
pub mod dense;
pub mod fastmath;
pub mod fused;
pub mod gemv;
pub mod int8;
pub mod q4;
pub mod vision_attention;
