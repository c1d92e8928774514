//! Kernel throughput at the 2B decoder's shapes (a benchmark, not a test):
//! `cargo run --release -p medr1-vlm --example kernel_speed`.
use std::time::Instant;
use vlm::kernels::bf16::{self, PackedBf16};
use vlm::kernels::int8::{matmul_two_digit, matmul_w8a8, Isa, PackedI8};

fn main() {
    let isa = Isa::detect();
    println!("isa {isa:?}, threads {}", rayon::current_num_threads());
    for (n, k) in [(8960usize, 1536usize), (1536, 8960), (2048, 1536)] {
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
        let p = PackedI8::quantize(&w, n, k);
        let wb: Vec<half::bf16> = w.iter().map(|&v| half::bf16::from_f32(v)).collect();
        let pb = PackedBf16::pack(&wb, n, k);
        for m in [258usize, 1] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 31 % 97) as f32 / 48.0) - 1.0).collect();
            let reps = if m == 1 { 200 } else { 10 };
            let f = |x: &[f32]| {
                if m > 8 {
                    matmul_w8a8(x, m, &p, None, isa)
                } else {
                    matmul_two_digit(x, m, &p, None, isa)
                }
            };
            f(&x);
            let t = Instant::now();
            for _ in 0..reps {
                std::hint::black_box(f(&x));
            }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            let bisa = bf16::Isa::detect();
            let t = Instant::now();
            for _ in 0..reps {
                std::hint::black_box(bf16::matmul(&x, m, &pb, None, bisa));
            }
            let sb = t.elapsed().as_secs_f64() / reps as f64;
            println!(
                "bf16 {bisa:?} [{m:4} x {k:5}] x [{n:5}]: {:8.3} ms  {:7.1} GFLOP/s",
                sb * 1e3,
                2.0 * (m * n * k) as f64 / sb / 1e9
            );
            println!(
                "int8 [{m:4} x {k:5}] x [{n:5}]: {:8.3} ms  {:7.1} GOP/s  {:6.1} GB/s of weights",
                s * 1e3,
                2.0 * (m * n * k) as f64 / s / 1e9,
                (n * k) as f64 / s / 1e9
            );
        }
    }
}
