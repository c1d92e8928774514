//! The lookup tables of the display pipeline (PS3.3 C.11): the modality LUT (rescale or an explicit
//! table), the VOI LUT (a window or a table), and palette colour tables, including segmented ones.

use anyhow::{anyhow, bail, Result};
use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, Tag};

use super::parse::{bytes, ints, items};
use super::window::Window;

/// A LUT: `data[clamp(x - first_mapped, 0, len - 1)]` (PS3.3 C.11.1.1: values below the first
/// mapped one take the first entry, above the last the last).
#[derive(Debug, Clone, PartialEq)]
pub struct Lut {
    pub first_mapped: i64,
    /// The descriptor's third value: the entries' nominal bit depth.
    pub bits: u16,
    pub data: Vec<i64>,
}

impl Lut {
    pub fn lookup(&self, x: i64) -> i64 {
        let last = self.data.len() as i64 - 1;
        self.data[(x - self.first_mapped).clamp(0, last) as usize]
    }

    /// A (LUT Descriptor, LUT Data) pair of a Modality or VOI LUT Sequence item.
    fn read(item: &InMemDicomObject, what: &str, seq: &str) -> Result<Lut> {
        let d =
            ints(item, tags::LUT_DESCRIPTOR).ok_or_else(|| anyhow!("{what}: {seq} item without a LUT Descriptor"))?;
        if d.len() != 3 {
            bail!("{what}: {seq} LUT Descriptor has {} values, 3 expected", d.len());
        }
        // The number of entries is US: 0 means 65536. The first mapped value is US or SS as the
        // pixel data is; dicom-rs reads it as stored.
        let entries = if d[0] == 0 { 65536 } else { d[0] as usize };
        let bits = d[2] as u16;
        let raw = bytes(item, tags::LUT_DATA).ok_or_else(|| anyhow!("{what}: {seq} item without LUT Data"))?;
        let data: Vec<i64> = if bits <= 8 && raw.len() == entries {
            raw.iter().map(|&b| b as i64).collect()
        } else {
            raw.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as i64).collect()
        };
        if data.len() < entries || entries == 0 {
            bail!("{what}: {seq} LUT Data holds {} entries, the descriptor says {entries}", data.len());
        }
        Ok(Lut { first_mapped: d[1], bits, data: data[..entries].to_vec() })
    }
}

/// Stored values to output units (Hounsfield units for CT).
#[derive(Debug, Clone, PartialEq)]
pub enum ModalityLut {
    Rescale { slope: f64, intercept: f64 },
    Table(Lut),
}

impl ModalityLut {
    /// The Modality LUT Sequence's first item when present (it replaces rescale), else
    /// Rescale Slope / Intercept (1 / 0 when absent; read with the display tags).
    pub fn read(obj: &InMemDicomObject, display: &super::tags::DisplayTags, what: &str) -> Result<ModalityLut> {
        if let Some(item) = items(obj, tags::MODALITY_LUT_SEQUENCE).first() {
            return Ok(ModalityLut::Table(Lut::read(item, what, "Modality LUT Sequence")?));
        }
        Ok(ModalityLut::Rescale { slope: display.rescale_slope, intercept: display.rescale_intercept })
    }

    pub fn apply(&self, stored: &[i32]) -> Vec<f64> {
        match self {
            ModalityLut::Rescale { slope, intercept } => stored.iter().map(|&v| v as f64 * slope + intercept).collect(),
            ModalityLut::Table(lut) => stored.iter().map(|&v| lut.lookup(v as i64) as f64).collect(),
        }
    }
}

/// What turns modality values into display levels.
#[derive(Debug, Clone, PartialEq)]
pub enum Voi {
    Window(Window),
    Table(Lut),
    /// Neither in the file: the frame's value range.
    Range,
}

impl Voi {
    /// The file's choice. When a file carries both a window and a VOI LUT Sequence, the window is
    /// taken (PS3.3 C.11.2 leaves the choice to the application; the window is what viewers show
    /// first and what `--window` replaces); with only the sequence, its first LUT.
    pub fn read(obj: &InMemDicomObject, window: Option<Window>, what: &str) -> Result<Voi> {
        if let Some(w) = window {
            return Ok(Voi::Window(w));
        }
        match items(obj, tags::VOILUT_SEQUENCE).first() {
            Some(item) => Ok(Voi::Table(Lut::read(item, what, "VOI LUT Sequence")?)),
            None => Ok(Voi::Range),
        }
    }

    /// Modality values into 0..=255.
    pub fn apply(&self, values: &[f64]) -> Vec<u8> {
        match self {
            Voi::Window(w) => super::window::voi_lut(values, Some(*w)),
            Voi::Range => super::window::voi_lut(values, None),
            Voi::Table(lut) => {
                // The table's output spans 0 .. 2^bits - 1 (PS3.3 C.11.2.1.1).
                let top = ((1u64 << lut.bits.clamp(1, 16)) - 1) as f64;
                values
                    .iter()
                    .map(|&x| (lut.lookup(x.floor() as i64) as f64 / top * 255.0).round().clamp(0.0, 255.0) as u8)
                    .collect()
            }
        }
    }
}

/// PALETTE COLOR lookup tables, reduced to 8 bits.
#[derive(Debug, Clone, PartialEq)]
pub struct Palette {
    pub first_mapped: i32,
    pub red: Vec<u8>,
    pub green: Vec<u8>,
    pub blue: Vec<u8>,
}

impl Palette {
    pub fn read(obj: &InMemDicomObject, what: &str) -> Result<Palette> {
        use tags::*;
        let (first_mapped, red) = channel(
            obj,
            what,
            "red",
            RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        )?;
        let (_, green) = channel(
            obj,
            what,
            "green",
            GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            SEGMENTED_GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        )?;
        let (_, blue) = channel(
            obj,
            what,
            "blue",
            BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            SEGMENTED_BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        )?;
        Ok(Palette { first_mapped, red, green, blue })
    }
}

fn channel(
    obj: &InMemDicomObject,
    what: &str,
    name: &str,
    desc: Tag,
    data: Tag,
    segmented: Tag,
) -> Result<(i32, Vec<u8>)> {
    let d = ints(obj, desc).ok_or_else(|| anyhow!("{what}: PALETTE COLOR without a {name} palette descriptor"))?;
    if d.len() != 3 {
        bail!("{what}: {name} palette descriptor has {} values, 3 expected", d.len());
    }
    let entries = if d[0] == 0 { 65536 } else { d[0] as usize };
    let bits = d[2];
    let words: Vec<u16> = if let Some(b) = bytes(obj, data) {
        if bits == 8 && b.len() == entries {
            b.iter().map(|&v| v as u16).collect()
        } else {
            b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
        }
    } else if let Some(b) = bytes(obj, segmented) {
        let segs: Vec<u16> = b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        expand_segmented(&segs, entries).map_err(|e| anyhow!("{what}: segmented {name} palette: {e}"))?
    } else {
        bail!("{what}: PALETTE COLOR without {name} palette data");
    };
    if words.len() < entries {
        bail!("{what}: {name} palette holds {} entries, the descriptor says {entries}", words.len());
    }
    let table =
        words.iter().take(entries).map(|&w| if bits <= 8 { w as u8 } else { (w >> (bits - 8)) as u8 }).collect();
    Ok((d[1] as i32, table))
}

/// Expands segmented palette data (PS3.3 C.7.9.2): discrete segments (opcode 0: n values),
/// linear segments (1: n values ramping from the previous value to the given one, rounded), and
/// indirect segments (2: n segments copied from a byte offset, given as two 16-bit words, low word
/// first). At most `entries` values are produced; nested indirection is refused.
pub fn expand_segmented(segs: &[u16], entries: usize) -> Result<Vec<u16>> {
    let mut out: Vec<u16> = Vec::with_capacity(entries);
    expand_into(segs, 0, segs.len(), usize::MAX, entries, &mut out, true)?;
    Ok(out)
}

fn expand_into(
    segs: &[u16],
    mut p: usize,
    end: usize,
    max_segments: usize,
    entries: usize,
    out: &mut Vec<u16>,
    allow_indirect: bool,
) -> Result<()> {
    let mut done = 0;
    while p < end && done < max_segments && out.len() < entries {
        let (op, n) = (segs[p], *segs.get(p + 1).ok_or_else(|| anyhow!("segment at word {p} has no length"))? as usize);
        p += 2;
        match op {
            0 => {
                let v = segs.get(p..p + n).ok_or_else(|| anyhow!("discrete segment at word {p} runs past the data"))?;
                out.extend_from_slice(v);
                p += n;
            }
            1 => {
                let y1 = *segs.get(p).ok_or_else(|| anyhow!("linear segment at word {p} has no end value"))? as f64;
                let y0 = *out.last().ok_or_else(|| anyhow!("a linear segment cannot come first"))? as f64;
                for i in 1..=n {
                    out.push((y0 + (y1 - y0) * i as f64 / n as f64).round() as u16);
                }
                p += 1;
            }
            2 if allow_indirect => {
                let (lo, hi) = match (segs.get(p), segs.get(p + 1)) {
                    (Some(&lo), Some(&hi)) => (lo as usize, hi as usize),
                    _ => bail!("indirect segment at word {p} has no offset"),
                };
                let offset = (hi << 16 | lo) / 2;
                if offset >= p {
                    bail!("indirect segment at word {p} points forward");
                }
                expand_into(segs, offset, end, n, entries, out, false)?;
                p += 2;
            }
            2 => bail!("nested indirect segment at word {p}"),
            op => bail!("unknown segment type {op} at word {}", p - 2),
        }
        done += 1;
    }
    out.truncate(entries);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segmented_palette_hand_worked() {
        // Discrete 0, 10; linear to 40 over 3 entries (20, 30, 40); indirect: repeat the first
        // segment (byte offset 0).
        let segs = [0, 2, 0, 10, 1, 3, 40, 2, 1, 0, 0];
        assert_eq!(expand_segmented(&segs, 100).unwrap(), vec![0, 10, 20, 30, 40, 0, 10]);
        // Capped at the descriptor's entries.
        assert_eq!(expand_segmented(&segs, 4).unwrap(), vec![0, 10, 20, 30]);
        // Linear rounding: 0 -> 255 over 2 entries gives 128 (127.5 rounded half away), 255.
        assert_eq!(expand_segmented(&[0, 1, 0, 1, 2, 255], 10).unwrap(), vec![0, 128, 255]);
        assert!(expand_segmented(&[1, 2, 5], 10).is_err());
        assert!(expand_segmented(&[0, 5, 1], 10).is_err());
        assert!(expand_segmented(&[7, 1, 0], 10).is_err());
    }

    #[test]
    fn lut_clamps_below_and_above() {
        let lut = Lut { first_mapped: 10, bits: 8, data: vec![1, 2, 3] };
        assert_eq!([0, 10, 11, 12, 99].map(|x| lut.lookup(x)), [1, 1, 2, 3, 3]);
        let voi = Voi::Table(Lut { first_mapped: 0, bits: 8, data: vec![0, 255, 51] });
        assert_eq!(voi.apply(&[-5.0, 1.0, 1.9, 2.0]), vec![0, 255, 255, 51]);
    }
}
