//! Bounds-checked calls into the `gemm` crate, for the inference kernels that need what candle's
//! matmul does not offer: a strided destination, accumulation into a prefilled destination (a bias
//! added for free), and a choice of threads (one thread per attention head, say).

use candle_core::{DType, Tensor};

/// A row-major (or strided) float32 matrix inside a slice.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    /// Elements between consecutive rows and consecutive columns.
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> View<'a> {
    /// A contiguous row-major [rows, cols] matrix at the start of `data`.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        View { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// The transpose, as a view of the same memory.
    pub fn t(self) -> Self {
        View {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    fn assert_in_bounds(&self, what: &str) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
            assert!(
                last < self.data.len(),
                "{what}: [{}, {}] view overruns its {} elements",
                self.rows,
                self.cols,
                self.data.len()
            );
        }
    }
}

/// `dst = a b`, or `dst += a b` when `accumulate`; `dst` is [a.rows, b.cols] with rows
/// `dst_row_stride` apart. `threads` = 1 runs on the calling thread only; more split the output's
/// columns into that many bands, one single-threaded product each, so every thread packs and reads
/// only its own share of `b` (gemm's own threading has both threads pack the same panels: the
/// decoder's down_proj at 258 rows took 25.5 ms that way against 22.9 in two bands, best of 6;
/// no shape measured got slower).
pub fn matmul(dst: &mut [f32], dst_row_stride: usize, a: View, b: View, accumulate: bool, threads: usize) {
    // SAFETY: `dst` is a live, initialised, exclusively borrowed slice of `dst.len()` elements.
    unsafe { matmul_ptr(dst.as_mut_ptr(), dst.len(), dst_row_stride, a, b, accumulate, threads) }
}

/// A fresh row-major [a.rows, b.cols] buffer holding `a b`, written by gemm without being
/// zero-filled first (a memory pass saved: 18 MB per decoder layer for gate/up at 258 rows).
pub fn product(a: View, b: View, threads: usize) -> Vec<f32> {
    let (m, n) = (a.rows, b.cols);
    let mut dst: Vec<f32> = Vec::with_capacity(m * n);
    // SAFETY: the capacity covers m * n elements; with `accumulate` false gemm never reads the
    // destination and writes every element of the [m, n] block (row stride n), so all m * n
    // elements are initialised when it returns.
    unsafe {
        matmul_ptr(dst.spare_capacity_mut().as_mut_ptr() as *mut f32, m * n, n, a, b, false, threads);
        dst.set_len(m * n);
    }
    dst
}

/// [`matmul`] on a raw destination of `dst_len` elements.
///
/// # Safety
/// `dst` must be valid for writes of `dst_len` elements (and for reads where `accumulate`, which
/// then must be initialised) and not accessed by anything else during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul_ptr(
    dst: *mut f32,
    dst_len: usize,
    dst_row_stride: usize,
    a: View,
    b: View,
    accumulate: bool,
    threads: usize,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions differ");
    a.assert_in_bounds("lhs");
    b.assert_in_bounds("rhs");
    if m == 0 || n == 0 {
        return;
    }
    let last = (m - 1) * dst_row_stride + (n - 1);
    assert!(last < dst_len, "dst: [{m}, {n}] view overruns its {dst_len} elements");
    let bands = threads.clamp(1, n.div_ceil(64));
    if bands == 1 {
        // SAFETY: the views were checked to lie inside their buffers; the caller guarantees
        // exclusive access to `dst`.
        unsafe { gemm_raw(dst, dst_row_stride, a, b, accumulate) };
        return;
    }
    let width = n.div_ceil(bands);
    let dst_ptr = SendPtr(dst);
    rayon::scope(|scope| {
        for c0 in (0..n).step_by(width) {
            let nb = width.min(n - c0);
            let band = View { data: &b.data[c0 * b.col_stride..], cols: nb, ..b };
            let dst_ptr = &dst_ptr;
            // SAFETY: the whole destination was bounds-checked above, each task writes only
            // columns c0..c0 + nb of it (disjoint across tasks), and the caller's exclusive access
            // lasts until the scope ends.
            scope.spawn(move |_| unsafe { gemm_raw(dst_ptr.0.add(c0), dst_row_stride, a, band, accumulate) });
        }
    });
}

/// A destination pointer shared by tasks that write disjoint columns of it.
struct SendPtr(*mut f32);
unsafe impl Sync for SendPtr {}

/// One single-threaded gemm call: dst := (dst if `accumulate`) + a b.
///
/// # Safety
/// `dst` must be valid for writes at every `i * dst_row_stride + j` (i < a.rows, j < b.cols), and
/// no other thread may touch those elements meanwhile; `a` and `b` must be in bounds.
unsafe fn gemm_raw(dst: *mut f32, dst_row_stride: usize, a: View, b: View, accumulate: bool) {
    // gemm computes dst := alpha dst + beta a b, reading dst only when read_dst is set.
    gemm::gemm(
        a.rows,
        b.cols,
        a.cols,
        dst,
        1,
        dst_row_stride as isize,
        accumulate,
        a.data.as_ptr(),
        a.col_stride as isize,
        a.row_stride as isize,
        b.data.as_ptr(),
        b.col_stride as isize,
        b.row_stride as isize,
        1.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    )
}

/// Calls `f` on the contiguous float32 data of a CPU tensor, without copying it; None when the
/// tensor is of another kind or not contiguous.
pub fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    if !t.is_contiguous() {
        return None;
    }
    let (st, l) = t.storage_and_layout();
    match &*st {
        candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)) => Some(f(&v[l.start_offset()..][..t.elem_count()])),
        _ => None,
    }
}

/// The same for bfloat16 data.
pub fn with_bf16<R>(t: &Tensor, f: impl FnOnce(&[half::bf16]) -> R) -> Option<R> {
    if !t.is_contiguous() {
        return None;
    }
    let (st, l) = t.storage_and_layout();
    match &*st {
        candle_core::Storage::Cpu(candle_core::CpuStorage::BF16(v)) => {
            Some(f(&v[l.start_offset()..][..t.elem_count()]))
        }
        _ => None,
    }
}

/// `x W^T + b` for untracked float32 CPU tensors, `x` [m, k] and the weight [n, k] (or [k, n] when
/// `transposed`), with the bias written into the output before the product accumulates onto it:
/// no separate pass over the output to add it, and no zero-filled output buffer either (candle's
/// matmul zero-fills its output, then the bias add reads and writes it again). None when the
/// tensors are of another kind (the caller falls back to candle).
pub fn linear(x: &Tensor, w: &Tensor, transposed: bool, bias: Option<&Tensor>) -> candle_core::Result<Option<Tensor>> {
    let (m, k) = x.dims2()?;
    let n = w.dim(if transposed { 1 } else { 0 })?;
    if x.dtype() != DType::F32 || w.dtype() != DType::F32 || bias.is_some_and(|b| b.dtype() != DType::F32) {
        return Ok(None);
    }
    let x = x.contiguous()?;
    let mut dst: Vec<f32> = Vec::with_capacity(m * n);
    if let Some(b) = bias {
        let filled = with_f32(b, |b| {
            for _ in 0..m {
                dst.extend_from_slice(b);
            }
        });
        if filled.is_none() {
            return Ok(None);
        }
    }
    let threads = rayon::current_num_threads();
    let done = with_f32(&x, |xv| {
        with_f32(w, |wv| {
            let wv = View::rows(wv, if transposed { k } else { n }, if transposed { n } else { k });
            let wv = if transposed { wv } else { wv.t() };
            if bias.is_some() {
                matmul(&mut dst, n, View::rows(xv, m, k), wv, true, threads);
            } else {
                dst = product(View::rows(xv, m, k), wv, threads);
            }
        })
    })
    .flatten();
    if done.is_none() {
        return Ok(None);
    }
    Ok(Some(Tensor::from_vec(dst, (m, n), x.device())?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_by_hand_with_strides_and_accumulation() {
        // a = [[1, 2, 3], [4, 5, 6]], b = [[1, 0], [0, 1], [1, 1]]: a b = [[4, 5], [10, 11]].
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let mut dst = [0.0; 2 * 3];
        // Written into columns 0..2 of a [2, 3] buffer; column 2 is left alone.
        dst[2] = 7.0;
        dst[5] = 8.0;
        matmul(&mut dst, 3, View::rows(&a, 2, 3), View::rows(&b, 3, 2), false, 1);
        assert_eq!(dst, [4.0, 5.0, 7.0, 10.0, 11.0, 8.0]);
        // Accumulating, with b given as the transpose of its [2, 3] transpose.
        let bt = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0];
        matmul(&mut dst, 3, View::rows(&a, 2, 3), View::rows(&bt, 2, 3).t(), true, 2);
        assert_eq!(dst, [8.0, 10.0, 7.0, 20.0, 22.0, 8.0]);
    }

    #[test]
    fn column_bands_equal_one_product() {
        // 300 output columns in 2 and 3 bands (of 150 and 100), accumulating onto a prefill.
        let (m, k, n) = (9, 7, 300);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 - 6.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.5 - 1.0).collect();
        let mut want = vec![1.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                want[i * n + j] += (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum::<f32>();
            }
        }
        for threads in [2, 3] {
            let mut dst = vec![1.0f32; m * n];
            matmul(&mut dst, n, View::rows(&a, m, k), View::rows(&b, k, n), true, threads);
            assert_eq!(dst, want, "{threads} bands");
        }
        // A fresh product (never zero-filled) is the same less the prefill.
        for threads in [1, 2] {
            let fresh = product(View::rows(&a, m, k), View::rows(&b, k, n), threads);
            assert!(fresh.iter().zip(&want).all(|(f, w)| f + 1.0 == *w));
        }
    }

    #[test]
    fn linear_with_bias_equals_candles_matmul_plus_bias() {
        let dev = candle_core::Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (37, 19), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (23, 19), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 23, &dev).unwrap();
        let want = x.matmul(&w.t().unwrap()).unwrap().broadcast_add(&b).unwrap();
        let wt = w.t().unwrap().contiguous().unwrap();
        for (weight, transposed, bias) in [(&w, false, Some(&b)), (&wt, true, Some(&b)), (&w, false, None)] {
            let got = linear(&x, weight, transposed, bias).unwrap().unwrap();
            let want = if bias.is_some() { want.clone() } else { x.matmul(&w.t().unwrap()).unwrap() };
            let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-5, "{diff}");
        }
        // Another dtype is left to candle.
        assert!(linear(&x.to_dtype(DType::BF16).unwrap(), &w, false, None).unwrap().is_none());
    }

    #[test]
    #[should_panic(expected = "overruns")]
    fn a_view_past_its_slice_is_refused() {
        let a = [0.0; 5];
        let mut dst = [0.0; 4];
        matmul(&mut dst, 2, View::rows(&a, 2, 3), View::rows(&[0.0; 6], 3, 2), false, 1);
    }
}
