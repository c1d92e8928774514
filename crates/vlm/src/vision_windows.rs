//! Qwen2.5-VL's attention windows (transformers' `Qwen2_5_VisionTransformerPretrainedModel.
//! get_window_index`): each image frame's merged-token grid is tiled from the top-left corner by
//! windows of `window` x `window` merged tokens (partial at the right and bottom edges); the tower
//! works in window order — the merged tokens window by window, raster order inside each window —
//! from the first block to the merger, and the merger's output is put back in raster order.

/// Where the patches go: the permutation into window order and the attention spans in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowLayout {
    /// Merged tokens (numbered over all frames of all images) in window order.
    pub window_index: Vec<usize>,
    /// Each non-empty window as (first patch row, patch rows), in window order.
    pub windows: Vec<(usize, usize)>,
    /// Each image frame as (first patch row, patch rows): full-attention blocks' spans. Windows
    /// never cross frames, so the frames' ranges are the same before and after the permutation.
    pub frames: Vec<(usize, usize)>,
    /// Patch rows per merged token (`spatial_merge_size`²).
    pub unit: usize,
}

impl WindowLayout {
    /// `grids` in patches (t, h, w) per image, `merge` the spatial merge size, `window` the window
    /// side in merged tokens.
    pub fn new(grids: &[[usize; 3]], merge: usize, window: usize) -> WindowLayout {
        let unit = merge * merge;
        let (mut window_index, mut windows, mut frames) = (Vec::new(), Vec::new(), Vec::new());
        let (mut token0, mut row) = (0usize, 0usize);
        for &[t, h, w] in grids {
            let (gh, gw) = (h / merge, w / merge);
            for _ in 0..t {
                frames.push((row, gh * gw * unit));
                for wy in (0..gh).step_by(window) {
                    for wx in (0..gw).step_by(window) {
                        let start = window_index.len();
                        for y in wy..(wy + window).min(gh) {
                            for x in wx..(wx + window).min(gw) {
                                window_index.push(token0 + y * gw + x);
                            }
                        }
                        let n = window_index.len() - start;
                        windows.push((row, n * unit));
                        row += n * unit;
                    }
                }
                token0 += gh * gw;
            }
        }
        WindowLayout { window_index, windows, frames, unit }
    }

    /// Patch rows in window order: for each merged token in window order, its `unit` rows.
    pub fn patch_order(&self) -> Vec<u32> {
        let u = self.unit;
        self.window_index.iter().flat_map(|&k| (k * u..(k + 1) * u).map(|r| r as u32)).collect()
    }

    /// Where each merged token (in raster order) sits in window order (`argsort(window_index)`).
    pub fn reverse(&self) -> Vec<u32> {
        let mut rev = vec![0u32; self.window_index.len()];
        for (pos, &k) in self.window_index.iter().enumerate() {
            rev[k] = pos as u32;
        }
        rev
    }

    /// Whether the permutation changes nothing (every frame at most one window wide and high).
    pub fn is_identity(&self) -> bool {
        self.window_index.iter().enumerate().all(|(i, &k)| i == k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Worked by hand: a 3x3 merged grid (6x6 patches) in windows of 2x2 merged tokens.
    #[test]
    fn three_by_three_grid_in_two_by_two_windows() {
        let l = WindowLayout::new(&[[1, 6, 6]], 2, 2);
        assert_eq!(l.window_index, vec![0, 1, 3, 4, 2, 5, 6, 7, 8]);
        assert_eq!(l.windows, vec![(0, 16), (16, 8), (24, 8), (32, 4)]);
        assert_eq!(l.frames, vec![(0, 36)]);
        assert_eq!(&l.patch_order()[..8], &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(&l.patch_order()[8..12], &[12, 13, 14, 15]);
        let rev = l.reverse();
        for (k, &p) in rev.iter().enumerate() {
            assert_eq!(l.window_index[p as usize], k);
        }
        assert!(!l.is_identity());
    }

    /// Two images: the second's tokens are numbered after the first's, and a grid no wider than
    /// one window keeps raster order.
    #[test]
    fn images_are_numbered_in_turn() {
        let l = WindowLayout::new(&[[1, 4, 6], [1, 6, 4]], 2, 2);
        // First: 2x3 merged tokens -> windows {0,1,3,4}, {2,5}; second: 3x2 -> {6,7,8,9}, {10,11}.
        assert_eq!(l.window_index, vec![0, 1, 3, 4, 2, 5, 6, 7, 8, 9, 10, 11]);
        assert_eq!(l.windows, vec![(0, 16), (16, 8), (24, 16), (40, 8)]);
        assert_eq!(l.frames, vec![(0, 24), (24, 24)]);
        assert!(WindowLayout::new(&[[1, 6, 4]], 2, 2).is_identity());
    }
}
