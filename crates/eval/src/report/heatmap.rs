//! A matrix as a heatmap with its value written in every cell, and under it the number of
//! records when that is small (an accuracy on few questions is mostly noise); a difference whose
//! 95% interval excludes zero gets a `*` and a heavy frame.

use super::canvas::{diverging, ink_on, sequential, text_width, Anchor, Canvas};
use super::matrix::Matrix;

const CELL_H: f64 = 36.0;
/// Cells with fewer records than this show their n.
pub const SMALL_N: usize = 100;
const PAD: f64 = 12.0;

pub struct Layout {
    pub width: f64,
    pub height: f64,
    left: f64,
    top: f64,
    cell_w: f64,
}

fn short(name: &str) -> String {
    super::short_name(name)
}

impl Layout {
    /// Top-left corner of a cell, in logical pixels.
    pub fn cell_origin(&self, row: usize, col: usize) -> (f64, f64) {
        (self.left + col as f64 * self.cell_w, self.top + row as f64 * CELL_H)
    }
}

pub fn layout(m: &Matrix) -> Layout {
    let left = PAD + m.rows.iter().map(|r| text_width(r, 1)).fold(0.0, f64::max) + 10.0;
    let cell_w = m.cols.iter().map(|c| text_width(&short(c), 1)).fold(6.0 * 8.0, f64::max) + 14.0;
    let top = PAD + 44.0 + 22.0;
    let width = (left + cell_w * m.cols.len() as f64 + PAD).max(text_width(&m.title, 1) + 2.0 * PAD);
    Layout { width, height: top + CELL_H * m.rows.len() as f64 + 28.0 + PAD, left, top, cell_w }
}

pub fn draw(m: &Matrix, c: &mut dyn Canvas) {
    let l = layout(m);
    let dark = [20, 20, 20];
    c.text(PAD, PAD + 8.0, &m.title, dark, Anchor::Start, 1);
    c.text(PAD, PAD + 28.0, "rows: trained on, columns: tested on", [90, 90, 90], Anchor::Start, 1);
    // Differences share one symmetric scale so equal gains and losses get equal colour.
    let span = m.values().iter().flatten().flatten().fold(1.0f64, |a, v| a.max(v.abs()));
    for (j, col) in m.cols.iter().enumerate() {
        c.text(l.left + (j as f64 + 0.5) * l.cell_w, l.top - 13.0, &short(col), dark, Anchor::Middle, 1);
    }
    for (i, row) in m.rows.iter().enumerate() {
        let y = l.top + i as f64 * CELL_H;
        c.text(l.left - 8.0, y + CELL_H / 2.0, row, dark, Anchor::End, 1);
        for (j, v) in m.cells[i].iter().enumerate() {
            let x = l.left + j as f64 * l.cell_w;
            let bg = match v {
                None => [225, 225, 225],
                Some(v) if m.signed => diverging(v.value / span),
                Some(v) => sequential(v.value / 100.0),
            };
            c.rect(x + 1.0, y + 1.0, l.cell_w - 2.0, CELL_H - 2.0, bg);
            // Diagonal cells (trained and tested on the same domain) get a frame.
            if m.rows[i] == m.cols[j] {
                for (x0, y0, x1, y1) in [
                    (x, y, x + l.cell_w, y),
                    (x, y + CELL_H, x + l.cell_w, y + CELL_H),
                    (x, y, x, y + CELL_H),
                    (x + l.cell_w, y, x + l.cell_w, y + CELL_H),
                ] {
                    c.line(x0, y0, x1, y1, [0, 0, 0]);
                }
            }
            let small = v.as_ref().is_some_and(|c| c.n > 0 && c.n < SMALL_N);
            let ty = if small { y + CELL_H / 2.0 - 6.0 } else { y + CELL_H / 2.0 };
            c.text(x + l.cell_w / 2.0, ty, &m.format(v.as_ref()), ink_on(bg), Anchor::Middle, 1);
            if let Some(cell) = v.as_ref().filter(|_| small) {
                c.text(x + l.cell_w / 2.0, ty + 12.0, &format!("n={}", cell.n), ink_on(bg), Anchor::Middle, 1);
            }
            if m.signed && v.as_ref().is_some_and(|c| c.excludes_zero()) {
                for d in [2.0, 3.0] {
                    c.line(x + d, y + d, x + l.cell_w - d, y + d, [0, 0, 0]);
                    c.line(x + d, y + CELL_H - d, x + l.cell_w - d, y + CELL_H - d, [0, 0, 0]);
                    c.line(x + d, y + d, x + d, y + CELL_H - d, [0, 0, 0]);
                    c.line(x + l.cell_w - d, y + d, x + l.cell_w - d, y + CELL_H - d, [0, 0, 0]);
                }
            }
        }
    }
    let legend = if m.signed {
        format!("red: lower, blue: higher (+/-{span:.0} points); *: 95% interval excludes 0; grey: not measured")
    } else {
        format!("white 0% .. dark blue 100%; n: records when under {SMALL_N}; framed: in-domain")
    };
    c.text(PAD, l.height - PAD - 8.0, &legend, [90, 90, 90], Anchor::Start, 1);
}
