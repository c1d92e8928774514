//! Sequential-DCT JPEG with Huffman coding at 8 or 12 bits per sample (ITU T.81 processes 1, 2
//! and 4: DICOM's JPEG Baseline and JPEG Extended). libjpeg-turbo as built here (mozjpeg-sys) and
//! jpeg-decoder decode 8-bit DCT only, so 12-bit JPEG Extended — common in nuclear medicine and
//! older CT/MR archives — is decoded here.
//!
//! Any number of components, interleaved or one per scan, restart intervals; components must not
//! be subsampled (every sampling factor 1: grey and DICOM's 12-bit files are). The inverse DCT is
//! computed exactly (in f64, T.81 A.3.3) and rounded, so it may differ from libjpeg's integer
//! IDCT by one level, as T.81's conformance tolerance allows. Progressive and arithmetic-coded
//! JPEG are refused.

use crate::error::{ImageError, Result};

/// Decoded samples: (width, height, components, interleaved samples).
pub type Decoded = (usize, usize, usize, Vec<u16>);

struct Huffman {
    /// (code length, code) -> value, as a lookup by length: codes of length l start at
    /// `first[l]` with values from `values[index[l]..]`.
    first: [i32; 17],
    count: [i32; 17],
    index: [usize; 17],
    values: Vec<u8>,
}

impl Huffman {
    fn new(counts: &[u8; 16], values: Vec<u8>) -> Huffman {
        let (mut first, mut count, mut index) = ([0i32; 17], [0i32; 17], [0usize; 17]);
        let (mut code, mut k) = (0i32, 0usize);
        for l in 1..=16 {
            first[l] = code;
            count[l] = counts[l - 1] as i32;
            index[l] = k;
            code = (code + count[l]) << 1;
            k += counts[l - 1] as usize;
        }
        Huffman { first, count, index, values }
    }
}

struct Component {
    id: u8,
    tq: usize,
    dc: usize,
    ac: usize,
    pred: i32,
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u32,
    n: u32,
    /// A marker was met: only zero bits follow.
    marker: bool,
    /// Bits were asked for past the end of the data.
    ran_out: bool,
}

impl<'a> Bits<'a> {
    fn bit(&mut self) -> u32 {
        if self.n == 0 {
            let mut byte = 0u32;
            if !self.marker && self.pos < self.data.len() {
                let b = self.data[self.pos];
                if b == 0xFF {
                    match self.data.get(self.pos + 1) {
                        Some(0x00) => {
                            byte = 0xFF;
                            self.pos += 2;
                        }
                        _ => self.marker = true,
                    }
                } else {
                    byte = b as u32;
                    self.pos += 1;
                }
            } else if self.pos >= self.data.len() {
                self.ran_out = true;
            }
            self.acc = byte;
            self.n = 8;
        }
        self.n -= 1;
        (self.acc >> self.n) & 1
    }

    fn bits(&mut self, n: u32) -> i32 {
        let mut v = 0i32;
        for _ in 0..n {
            v = (v << 1) | self.bit() as i32;
        }
        v
    }

    fn decode(&mut self, t: &Huffman) -> Result<u8> {
        let mut code = 0i32;
        for l in 1..=16 {
            code = (code << 1) | self.bit() as i32;
            if code - t.first[l] < t.count[l] {
                return Ok(t.values[t.index[l] + (code - t.first[l]) as usize]);
            }
        }
        Err(ImageError::input("JPEG: invalid Huffman code"))
    }

    /// Skips to the restart marker after the current byte.
    fn restart(&mut self) -> Result<()> {
        self.n = 0;
        self.marker = false;
        match (self.data.get(self.pos), self.data.get(self.pos + 1)) {
            (Some(0xFF), Some(m)) if (0xD0..=0xD7).contains(m) => {
                self.pos += 2;
                Ok(())
            }
            _ => Err(ImageError::input("JPEG: restart marker missing")),
        }
    }
}

fn extend(v: i32, n: u32) -> i32 {
    if n == 0 {
        0
    } else if v < 1 << (n - 1) {
        v - (1 << n) + 1
    } else {
        v
    }
}

const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
    28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54,
    47, 55, 62, 63,
];

/// The exact 2-D inverse DCT of one dequantized block (natural order), level-shifted, rounded and
/// clamped to the sample range.
fn idct(block: &[i32; 64], precision: u32, out: &mut [u16; 64]) {
    let mut cos = [[0f64; 8]; 8];
    for (x, row) in cos.iter_mut().enumerate() {
        for (u, c) in row.iter_mut().enumerate() {
            let cu = if u == 0 { std::f64::consts::FRAC_1_SQRT_2 } else { 1.0 };
            *c = cu * (((2 * x + 1) * u) as f64 * std::f64::consts::PI / 16.0).cos();
        }
    }
    // Rows then columns: tmp[v][x] = sum_u C(u) F(v,u) cos(...x...).
    let mut tmp = [[0f64; 8]; 8];
    for v in 0..8 {
        for x in 0..8 {
            tmp[v][x] = (0..8).map(|u| cos[x][u] * block[v * 8 + u] as f64).sum();
        }
    }
    let shift = (1i32 << (precision - 1)) as f64;
    let top = ((1i32 << precision) - 1) as f64;
    for y in 0..8 {
        for x in 0..8 {
            let s: f64 = (0..8).map(|v| cos[y][v] * tmp[v][x]).sum::<f64>() / 4.0;
            out[y * 8 + x] = (s + shift).round().clamp(0.0, top) as u16;
        }
    }
}

/// Decodes a sequential-DCT Huffman JPEG stream (SOF0 or SOF1) of 8 or 12 bits.
pub fn decode(bytes: &[u8], what: &str) -> Result<Decoded> {
    let bad = |m: &str| ImageError::input(format!("{what}: {m}"));
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return Err(bad("not a JPEG stream (no SOI marker)"));
    }
    let mut qt = [[0i32; 64]; 4];
    let mut dc_tables: [Option<Huffman>; 4] = Default::default();
    let mut ac_tables: [Option<Huffman>; 4] = Default::default();
    let mut comps: Vec<Component> = Vec::new();
    let (mut width, mut height, mut precision) = (0usize, 0usize, 8u32);
    let mut restart_interval = 0usize;
    let mut planes: Vec<Vec<u16>> = Vec::new();
    let mut p = 2;
    loop {
        // Next marker (fill bytes 0xFF may precede it).
        while p < bytes.len() && bytes[p] != 0xFF {
            p += 1;
        }
        while p < bytes.len() && bytes[p] == 0xFF {
            p += 1;
        }
        let Some(&marker) = bytes.get(p) else {
            return Err(bad("JPEG stream ends before its EOI marker (truncated)"));
        };
        p += 1;
        if marker == 0xD9 {
            break;
        }
        if (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            continue;
        }
        let len = match bytes.get(p..p + 2) {
            Some(l) => u16::from_be_bytes([l[0], l[1]]) as usize,
            None => return Err(bad("JPEG stream truncated in a segment header")),
        };
        let seg = bytes.get(p + 2..p + len).ok_or_else(|| bad("JPEG segment runs past the end (truncated)"))?;
        p += len;
        match marker {
            0xC0 | 0xC1 => {
                precision = seg[0] as u32;
                if precision != 8 && precision != 12 {
                    return Err(bad(&format!("{precision}-bit DCT JPEG (8 or 12 expected)")));
                }
                height = u16::from_be_bytes([seg[1], seg[2]]) as usize;
                width = u16::from_be_bytes([seg[3], seg[4]]) as usize;
                let n = seg[5] as usize;
                for c in seg.get(6..6 + 3 * n).ok_or_else(|| bad("short frame header"))?.chunks_exact(3) {
                    let (h, v) = ((c[1] >> 4) as usize, (c[1] & 15) as usize);
                    if (h, v) != (1, 1) {
                        return Err(bad("subsampled components are not supported by the 12-bit decoder"));
                    }
                    comps.push(Component { id: c[0], tq: (c[2] & 3) as usize, dc: 0, ac: 0, pred: 0 });
                }
                if width == 0 || height == 0 {
                    return Err(bad("JPEG frame of zero size (DNL marker not supported)"));
                }
                planes = vec![vec![0u16; width * height]; comps.len()];
            }
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err(bad(&format!("JPEG process of marker FF{marker:02X} is not a sequential Huffman DCT")));
            }
            0xC4 => {
                let mut q = 0;
                while q < seg.len() {
                    let (class, id) = (seg[q] >> 4, (seg[q] & 3) as usize);
                    let counts: [u8; 16] = seg.get(q + 1..q + 17).ok_or_else(|| bad("short DHT"))?.try_into().unwrap();
                    let total: usize = counts.iter().map(|&c| c as usize).sum();
                    let values = seg.get(q + 17..q + 17 + total).ok_or_else(|| bad("short DHT"))?.to_vec();
                    let t = Some(Huffman::new(&counts, values));
                    if class == 0 {
                        dc_tables[id] = t;
                    } else {
                        ac_tables[id] = t;
                    }
                    q += 17 + total;
                }
            }
            0xDB => {
                let mut q = 0;
                while q < seg.len() {
                    let (pq, id) = (seg[q] >> 4, (seg[q] & 3) as usize);
                    let size = if pq == 0 { 1 } else { 2 };
                    let t = seg.get(q + 1..q + 1 + 64 * size).ok_or_else(|| bad("short DQT"))?;
                    for k in 0..64 {
                        qt[id][ZIGZAG[k]] =
                            if pq == 0 { t[k] as i32 } else { u16::from_be_bytes([t[2 * k], t[2 * k + 1]]) as i32 };
                    }
                    q += 1 + 64 * size;
                }
            }
            0xDD => restart_interval = u16::from_be_bytes([seg[0], seg[1]]) as usize,
            0xDA => {
                if comps.is_empty() {
                    return Err(bad("scan before the frame header"));
                }
                let ns = seg[0] as usize;
                let mut scan = Vec::new();
                for s in seg.get(1..1 + 2 * ns).ok_or_else(|| bad("short scan header"))?.chunks_exact(2) {
                    let k = comps
                        .iter()
                        .position(|c| c.id == s[0])
                        .ok_or_else(|| bad("scan names an unknown component"))?;
                    comps[k].dc = (s[1] >> 4) as usize & 3;
                    comps[k].ac = (s[1] & 15) as usize & 3;
                    comps[k].pred = 0;
                    scan.push(k);
                }
                p = decode_scan(
                    bytes,
                    p,
                    &mut comps,
                    &scan,
                    &dc_tables,
                    &ac_tables,
                    &qt,
                    width,
                    height,
                    precision,
                    restart_interval,
                    &mut planes,
                    what,
                )?;
            }
            _ => {}
        }
    }
    if planes.is_empty() {
        return Err(bad("JPEG stream without a frame"));
    }
    let nc = planes.len();
    let mut out = vec![0u16; width * height * nc];
    for (c, plane) in planes.iter().enumerate() {
        for (i, &v) in plane.iter().enumerate() {
            out[i * nc + c] = v;
        }
    }
    Ok((width, height, nc, out))
}

#[allow(clippy::too_many_arguments)]
fn decode_scan(
    bytes: &[u8],
    start: usize,
    comps: &mut [Component],
    scan: &[usize],
    dc_tables: &[Option<Huffman>; 4],
    ac_tables: &[Option<Huffman>; 4],
    qt: &[[i32; 64]; 4],
    width: usize,
    height: usize,
    precision: u32,
    restart_interval: usize,
    planes: &mut [Vec<u16>],
    what: &str,
) -> Result<usize> {
    let bad = |m: &str| ImageError::input(format!("{what}: {m}"));
    let (bw, bh) = (width.div_ceil(8), height.div_ceil(8));
    let mut bits = Bits { data: bytes, pos: start, acc: 0, n: 0, marker: false, ran_out: false };
    let mut coef = [0i32; 64];
    let mut px = [0u16; 64];
    // Every sampling factor is 1, so an MCU is one block of each scan component at (bx, by).
    for mcu in 0..bw * bh {
        if restart_interval > 0 && mcu > 0 && mcu % restart_interval == 0 {
            bits.restart().map_err(|e| bad(&e.to_string()))?;
            for &k in scan {
                comps[k].pred = 0;
            }
        }
        let (bx, by) = (mcu % bw, mcu / bw);
        for &ci in scan {
            let c = &mut comps[ci];
            let dc = dc_tables[c.dc].as_ref().ok_or_else(|| bad("scan uses an undefined DC table"))?;
            let ac = ac_tables[c.ac].as_ref().ok_or_else(|| bad("scan uses an undefined AC table"))?;
            coef.fill(0);
            let t = bits.decode(dc)? as u32;
            if t > 16 {
                return Err(bad("invalid DC difference size"));
            }
            c.pred += extend(bits.bits(t), t);
            let q = &qt[c.tq];
            coef[0] = c.pred * q[0];
            let mut k = 1;
            while k < 64 {
                let rs = bits.decode(ac)?;
                let (r, s) = ((rs >> 4) as usize, (rs & 15) as u32);
                if s == 0 {
                    if r != 15 {
                        break;
                    }
                    k += 16;
                    continue;
                }
                k += r;
                if k > 63 {
                    return Err(bad("AC coefficients run past the block"));
                }
                coef[ZIGZAG[k]] = extend(bits.bits(s), s) * q[ZIGZAG[k]];
                k += 1;
            }
            idct(&coef, precision, &mut px);
            for y in 0..8 {
                let row = by * 8 + y;
                if row >= height {
                    break;
                }
                for x in 0..8 {
                    let col = bx * 8 + x;
                    if col < width {
                        planes[ci][row * width + col] = px[y * 8 + x];
                    }
                }
            }
        }
    }
    if bits.ran_out {
        return Err(bad("JPEG scan truncated: the data ends before the last block"));
    }
    Ok(bits.pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An 8-bit greyscale baseline JPEG decoded here and by libjpeg-turbo:
    /// the exact IDCT and libjpeg's integer one agree within a level.
    #[test]
    fn eight_bit_stream_matches_libjpeg_turbo_within_a_level() {
        let (w, h) = (37usize, 21usize);
        let grey: Vec<u8> = (0..w * h).map(|i| ((i % w) * 7 + (i / w) * 11 + (i * i) % 13) as u8).collect();
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
            .encode(&grey, w as u32, h as u32, image::ExtendedColorType::L8)
            .unwrap();
        let (ww, hh, nc, ours) = decode(&bytes, "grey.jpg").unwrap();
        assert_eq!((ww, hh, nc), (w, h, 1));
        let (_, _, _, theirs) = crate::jpeg::decode_components(&bytes, "grey.jpg").unwrap();
        let worst = ours.iter().zip(&theirs).map(|(a, b)| (*a as i32 - *b as i32).abs()).max().unwrap();
        assert!(worst <= 1, "largest difference {worst}");
        // Cut short: an error, not a partial image.
        let e = decode(&bytes[..bytes.len() / 2], "grey.jpg").unwrap_err().to_string();
        assert!(e.contains("grey.jpg") && e.contains("truncated"), "{e}");
    }
}
