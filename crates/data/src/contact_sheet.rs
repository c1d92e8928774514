//! A contact sheet: sample images in a grid, each captioned with its modality, question type,
//! question and options (the gold one marked), drawn with the public-domain 8x8 bitmap font so
//! no font files are needed.

use crate::record::{letter, Record};
use crate::taxonomy::{Modality, QuestionType};
use anyhow::Result;
use image::{imageops, Rgb, RgbImage};

pub struct SheetOptions {
    /// Tile image side in pixels.
    pub tile: u32,
    pub columns: usize,
    /// Most caption lines under each image (the sheet uses as many as its longest caption needs,
    /// up to this).
    pub caption_lines: usize,
    /// How DICOM images are shown (window, frame).
    pub view: crate::image::ImageOptions,
}

impl Default for SheetOptions {
    fn default() -> Self {
        SheetOptions { tile: 176, columns: 5, caption_lines: 16, view: Default::default() }
    }
}

const LINE: u32 = 10;
const PAD: u32 = 6;

/// Draws `text` at (x, y) in 8x8 glyphs; characters outside the font become '?'.
pub fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, color: Rgb<u8>) {
    for (k, ch) in text.chars().enumerate() {
        let code = if ch.is_ascii() && !ch.is_ascii_control() { ch as usize } else { '?' as usize };
        let glyph = font8x8::legacy::BASIC_LEGACY[code];
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    let (px, py) = (x + k as u32 * 8 + col, y + row as u32);
                    if px < img.width() && py < img.height() {
                        img.put_pixel(px, py, color);
                    }
                }
            }
        }
    }
}

/// Greedy word wrap to `width` characters.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        let word: String = word.chars().map(|c| if c.is_ascii() { c } else { '?' }).collect();
        if !cur.is_empty() && cur.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur += &word;
        while cur.len() > width {
            let rest = cur.split_off(width);
            lines.push(std::mem::replace(&mut cur, rest));
        }
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

/// Up to `n` records spread over the modality x question-type cells: the first record of each
/// cell in turn, then the second, and so on.
pub fn pick_samples(records: &[Record], n: usize) -> Vec<&Record> {
    let mut cells: Vec<Vec<&Record>> = Vec::new();
    let key =
        |r: &Record| (r.modality.map(|m| m as usize).unwrap_or(99), r.question_type.map(|q| q as usize).unwrap_or(99));
    let mut keys: Vec<(usize, usize)> = Vec::new();
    for r in records {
        let k = key(r);
        match keys.iter().position(|&x| x == k) {
            Some(i) => cells[i].push(r),
            None => {
                keys.push(k);
                cells.push(vec![r]);
            }
        }
    }
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by_key(|&i| keys[i]);
    // Cell k starts at its k-th record, so the sheet does not show only each cell's first
    // (and, in generated sets, first-lettered) question.
    let mut out = Vec::new();
    let mut depth = 0;
    while out.len() < n && order.iter().any(|&i| cells[i].len() > depth) {
        for (k, &i) in order.iter().enumerate() {
            if out.len() < n && cells[i].len() > depth {
                out.push(cells[i][(depth + k) % cells[i].len()]);
            }
        }
        depth += 1;
    }
    out
}

/// The caption under a tile: header (modality / question type), question, options (gold starred).
fn caption(r: &Record, chars: usize) -> (Vec<String>, usize) {
    let header = format!(
        "{} / {}",
        r.modality.map(Modality::name).unwrap_or("?"),
        r.question_type.map(QuestionType::name).unwrap_or("?")
    );
    let mut lines = wrap(&header, chars);
    let header_lines = lines.len();
    lines.extend(wrap(&r.question, chars));
    for (i, o) in r.options.iter().enumerate() {
        let mark = if i == r.answer { "*" } else { " " };
        lines.extend(wrap(&format!("{mark}{}) {o}", letter(i)), chars));
    }
    (lines, header_lines)
}

/// Renders the sheet. Unreadable images become grey tiles saying so.
pub fn render(records: &[&Record], opts: &SheetOptions) -> Result<RgbImage> {
    let cols = opts.columns.max(1).min(records.len().max(1));
    let rows = records.len().div_ceil(cols).max(1);
    let chars = (opts.tile / 8) as usize;
    let captions: Vec<(Vec<String>, usize)> = records.iter().map(|r| caption(r, chars)).collect();
    let lines = captions.iter().map(|(l, _)| l.len()).max().unwrap_or(0).min(opts.caption_lines);
    let tile_w = opts.tile + 2 * PAD;
    let tile_h = opts.tile + 2 * PAD + lines as u32 * LINE;
    let mut sheet = RgbImage::from_pixel(cols as u32 * tile_w, rows as u32 * tile_h, Rgb([255, 255, 255]));
    for (k, r) in records.iter().enumerate() {
        let (x0, y0) = ((k % cols) as u32 * tile_w + PAD, (k / cols) as u32 * tile_h + PAD);
        let view = crate::image::ImageOptions { slices: None, ..opts.view };
        match crate::image::open_with(&r.image_path, &view).map(|mut v| v.swap_remove(0)) {
            Ok(img) => {
                let buf = RgbImage::from_raw(img.width as u32, img.height as u32, img.data).expect("RGB buffer size");
                let scale = opts.tile as f32 / img.width.max(img.height) as f32;
                let (w, h) = (
                    ((img.width as f32 * scale).round() as u32).max(1),
                    ((img.height as f32 * scale).round() as u32).max(1),
                );
                let small = imageops::resize(&buf, w, h, imageops::FilterType::Triangle);
                imageops::overlay(
                    &mut sheet,
                    &small,
                    (x0 + (opts.tile - w) / 2) as i64,
                    (y0 + (opts.tile - h) / 2) as i64,
                );
            }
            Err(_) => {
                for y in 0..opts.tile {
                    for x in 0..opts.tile {
                        sheet.put_pixel(x0 + x, y0 + y, Rgb([200, 200, 200]));
                    }
                }
                draw_text(&mut sheet, x0 + 4, y0 + opts.tile / 2, "image missing", Rgb([120, 0, 0]));
            }
        }
        let (text, header_lines) = &captions[k];
        for (i, line) in text.iter().take(lines).enumerate() {
            let color = if i < *header_lines {
                Rgb([0, 70, 160])
            } else if line.starts_with('*') {
                Rgb([0, 120, 0])
            } else {
                Rgb([20, 20, 20])
            };
            draw_text(&mut sheet, x0, y0 + opts.tile + 4 + i as u32 * LINE, line, color);
        }
    }
    Ok(sheet)
}
