//! Bounds-checked calls into the `gemm` crate, for the inference kernels that need what candle's
//! matmul does not offer: a strided destination, accumulation into a prefilled destination (a bias
//! added for free), and a choice of threads (one thread per attention head, say).

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
        View { data: self.data, rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride }
    }

    fn assert_in_bounds(&self, what: &str) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
            assert!(last < self.data.len(), "{what}: [{}, {}] view overruns its {} elements", self.rows, self.cols, self.data.len());
        }
    }
}

/// `dst = a b`, or `dst += a b` when `accumulate`; `dst` is [a.rows, b.cols] with rows
/// `dst_row_stride` apart. `threads` = 1 runs on the calling thread only.
pub fn matmul(dst: &mut [f32], dst_row_stride: usize, a: View, b: View, accumulate: bool, threads: usize) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions differ");
    a.assert_in_bounds("lhs");
    b.assert_in_bounds("rhs");
    View { data: dst, rows: m, cols: n, row_stride: dst_row_stride, col_stride: 1 }.assert_in_bounds("dst");
    if m == 0 || n == 0 {
        return;
    }
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: all three views were checked to lie inside their slices, `dst` is borrowed mutably
    // and so cannot alias `a` or `b`. gemm computes dst := alpha dst + beta a b (alpha is only read
    // when read_dst is set).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
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
            parallelism,
        )
    }
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
    #[should_panic(expected = "overruns")]
    fn a_view_past_its_slice_is_refused() {
        let a = [0.0; 5];
        let mut dst = [0.0; 4];
        matmul(&mut dst, 2, View::rows(&a, 2, 3), View::rows(&[0.0; 6], 3, 2), false, 1);
    }
}
