//! A walk over a DICOM file's element headers, before dicom-rs reads it: every declared value
//! length must fit in the bytes that follow. dicom-rs allocates (and fills) a buffer of the declared
//! length before reading the value, so a few-KB file declaring a 4 GB element cost 20 s and 4 GB of
//! memory before failing (found by fuzzing). Only the headers are read: tags, VRs and lengths,
//! items and delimiters of undefined-length sequences and encapsulated pixel data.

/// What the walk found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lengths {
    /// Every length fits (or the walk could not follow the data set, which dicom-rs then reports).
    Fit,
    /// The body is implicit VR although the transfer syntax announces explicit VR: only that
    /// reading fits (reading it as explicit VR makes dicom-rs allocate garbage lengths).
    FitImplicitBody,
    /// Element `tag` (group, element) declares `declared` bytes where only `left` remain.
    Exceeds { tag: (u16, u16), declared: u64, left: u64 },
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    ImplicitLe,
    ExplicitLe,
    ExplicitBe,
}

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const ITEM_END: (u16, u16) = (0xFFFE, 0xE00D);
const SEQUENCE_END: (u16, u16) = (0xFFFE, 0xE0DD);
const MAX_DEPTH: usize = 64;

/// Why a walk stopped early.
enum Stop {
    /// The data set cannot be followed in this mode (no verdict).
    Lost,
    Exceeds((u16, u16), u64, u64),
}

struct Walk<'a> {
    b: &'a [u8],
    mode: Mode,
}

impl Walk<'_> {
    fn u16_at(&self, p: usize, big: bool) -> Option<u16> {
        let s: [u8; 2] = self.b.get(p..p + 2)?.try_into().ok()?;
        Some(if big { u16::from_be_bytes(s) } else { u16::from_le_bytes(s) })
    }
    fn u32_at(&self, p: usize, big: bool) -> Option<u32> {
        let s: [u8; 4] = self.b.get(p..p + 4)?.try_into().ok()?;
        Some(if big { u32::from_be_bytes(s) } else { u32::from_le_bytes(s) })
    }

    /// (tag, header length, value length) of the element at `p`.
    fn header(&self, p: usize, mode: Mode) -> Result<((u16, u16), usize, u32), Stop> {
        let big = mode == Mode::ExplicitBe;
        let tag = (self.u16_at(p, big).ok_or(Stop::Lost)?, self.u16_at(p + 2, big).ok_or(Stop::Lost)?);
        if tag.0 == 0xFFFE || mode == Mode::ImplicitLe {
            return Ok((tag, 8, self.u32_at(p + 4, big).ok_or(Stop::Lost)?));
        }
        let vr = self.b.get(p + 4..p + 6).ok_or(Stop::Lost)?;
        if !vr.iter().all(|c| c.is_ascii_uppercase()) {
            return Err(Stop::Lost);
        }
        let long = matches!(
            vr,
            b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"SV" | b"UC" | b"UN" | b"UR" | b"UT" | b"UV"
        );
        if long {
            Ok((tag, 12, self.u32_at(p + 8, big).ok_or(Stop::Lost)?))
        } else {
            Ok((tag, 8, self.u16_at(p + 6, big).ok_or(Stop::Lost)? as u32))
        }
    }

    /// Elements from `p` to `end` (or to an item delimiter, which is consumed); the position after.
    fn elements(&self, mut p: usize, end: usize, depth: usize) -> Result<usize, Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop::Lost);
        }
        while p < end {
            let (tag, head, len) = self.header(p, self.mode)?;
            p += head;
            if tag == ITEM_END {
                return Ok(p);
            }
            if len == UNDEFINED {
                p = self.items(p, end, depth + 1)?;
            } else {
                p = self.skip(tag, p, len, end)?;
            }
        }
        Ok(p)
    }

    /// Items of an undefined-length sequence or pixel data, up to its sequence delimiter.
    fn items(&self, mut p: usize, end: usize, depth: usize) -> Result<usize, Stop> {
        while p < end {
            let (tag, head, len) = self.header(p, self.mode)?;
            p += head;
            match tag {
                SEQUENCE_END => return Ok(p),
                ITEM if len == UNDEFINED => p = self.elements(p, end, depth + 1)?,
                ITEM => p = self.skip(tag, p, len, end)?,
                _ => return Err(Stop::Lost),
            }
        }
        Ok(p)
    }

    fn skip(&self, tag: (u16, u16), p: usize, len: u32, end: usize) -> Result<usize, Stop> {
        let left = end.saturating_sub(p) as u64;
        if len as u64 > left {
            return Err(Stop::Exceeds(tag, len as u64, left));
        }
        Ok(p + len as usize)
    }
}

/// Walks a DICOM file (`bytes` from its 128-byte preamble on): the file meta group (explicit VR
/// little endian), then the data set in its transfer syntax's VR mode; if that mode cannot follow
/// the data set, implicit VR (some writers mislabel the body, see `dicom::parse_implicit_body`).
/// Deflated data sets are not walked.
pub fn check(bytes: &[u8]) -> Lengths {
    let meta = Walk { b: bytes, mode: Mode::ExplicitLe };
    let (mut p, mut ts) = (132usize, String::new());
    while let Ok((tag, head, len)) = meta.header(p, Mode::ExplicitLe) {
        if tag.0 != 0x0002 {
            break;
        }
        let v = p + head;
        if let Err(Stop::Exceeds(t, d, l)) = meta.skip(tag, v, len, bytes.len()) {
            return Lengths::Exceeds { tag: t, declared: d, left: l };
        }
        if tag == (0x0002, 0x0010) {
            ts = String::from_utf8_lossy(&bytes[v..v + len as usize]).trim_end_matches(['\0', ' ']).to_string();
        }
        p = v + len as usize;
    }
    let declared = match ts.as_str() {
        "1.2.840.10008.1.2" => Mode::ImplicitLe,
        "1.2.840.10008.1.2.2" => Mode::ExplicitBe,
        "1.2.840.10008.1.2.1.99" => return Lengths::Fit,
        _ => Mode::ExplicitLe,
    };
    let walk = |mode| Walk { b: bytes, mode }.elements(p, bytes.len(), 0);
    match walk(declared) {
        Ok(_) => Lengths::Fit,
        Err(Stop::Exceeds(tag, declared, left)) => Lengths::Exceeds { tag, declared, left },
        Err(Stop::Lost) if declared != Mode::ImplicitLe => match walk(Mode::ImplicitLe) {
            Err(Stop::Exceeds(tag, declared, left)) => Lengths::Exceeds { tag, declared, left },
            Ok(_) => Lengths::FitImplicitBody,
            Err(Stop::Lost) => Lengths::Fit,
        },
        Err(Stop::Lost) => Lengths::Fit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap()
    }

    /// Every DICOM fixture (explicit and implicit VR, JPEG and RLE encapsulated, and the file whose
    /// body is implicit VR under an explicit transfer syntax) fits.
    #[test]
    fn real_files_fit() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dicom");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "dcm") {
                let want = if p.ends_with("SC_rgb_jpeg.dcm") { Lengths::FitImplicitBody } else { Lengths::Fit };
                assert_eq!(check(&std::fs::read(&p).unwrap()), want, "{}", p.display());
                n += 1;
            }
        }
        assert!(n >= 5);
    }

    /// The fuzzer's input: a 9.9 KB file on which dicom-rs allocated 4,060,154,112 bytes for an
    /// element (B800,BF00) before failing (20 s, 4 GB). The walk stops at the first length that
    /// cannot fit, before it.
    #[test]
    fn the_fuzzers_four_gigabyte_element_is_caught() {
        let bytes = fixture("fuzz/dicom_4gb_element.dcm");
        match check(&bytes) {
            Lengths::Exceeds { declared, left, .. } => assert!(declared > left && left < bytes.len() as u64),
            other => panic!("{other:?}"),
        }
    }

    /// Fuzzing regression: RLE pixel data on which dicom-rs 0.10's RLE decoder panics (an index
    /// past a segment). Its lengths fit; `dicom::decode` must turn the panic into an error.
    #[test]
    fn a_dicom_file_that_panics_its_decoder_is_an_error() {
        let bytes = fixture("fuzz/dicom_rle_panic.dcm");
        let Err(err) = crate::dicom::decode(&bytes, "crash.dcm") else { panic!("decoded a malformed file") };
        let err = err.to_string();
        assert!(err.contains("crash.dcm"), "{err}");
    }

    /// Hand-made: a meta group, then an explicit-VR OB element declaring 100 bytes with 3 left.
    #[test]
    fn a_value_longer_than_the_file_is_caught() {
        let mut b = vec![0u8; 128];
        b.extend_from_slice(b"DICM");
        let ts = b"1.2.840.10008.1.2.1\0";
        b.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I', ts.len() as u8, 0]);
        b.extend_from_slice(ts);
        b.extend_from_slice(&[0x09, 0x00, 0x10, 0x00, b'O', b'B', 0, 0, 100, 0, 0, 0, 1, 2, 3]);
        assert_eq!(check(&b), Lengths::Exceeds { tag: (0x0009, 0x0010), declared: 100, left: 3 });
        b.truncate(b.len() - 3 - 12);
        b.extend_from_slice(&[0x09, 0x00, 0x10, 0x00, b'O', b'B', 0, 0, 3, 0, 0, 0, 1, 2, 3]);
        assert_eq!(check(&b), Lengths::Fit);
    }
}
