//! Per-domain accuracy of several runs side by side: one group of bars per modality (or question
//! type), one colour per run, the value above each bar and its 95% interval as an error bar.

use super::canvas::{text_width, Anchor, Canvas, Color};

pub const PALETTE: [Color; 8] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
];

pub struct Bars {
    pub title: String,
    /// Group labels along the x axis.
    pub groups: Vec<String>,
    /// (series label, value per group: percent with its 95% interval).
    pub series: Vec<(String, Vec<Option<BarValue>>)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarValue {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

const PAD: f64 = 12.0;
const PLOT_H: f64 = 220.0;

pub fn size(b: &Bars) -> (f64, f64) {
    let bar_w = 22.0;
    let group_w =
        (bar_w * b.series.len() as f64 + 16.0).max(b.groups.iter().map(|g| text_width(g, 1)).fold(0.0, f64::max) + 8.0);
    let legend_rows = b.series.len() as f64;
    let w = (56.0 + group_w * b.groups.len() as f64 + PAD).max(text_width(&b.title, 1) + 2.0 * PAD);
    (w, PAD + 28.0 + legend_rows * 16.0 + 12.0 + PLOT_H + 30.0 + PAD)
}

pub fn draw(b: &Bars, c: &mut dyn Canvas) {
    let (w, h) = size(b);
    let dark = [20, 20, 20];
    c.text(PAD, PAD + 8.0, &b.title, dark, Anchor::Start, 1);
    let mut y = PAD + 30.0;
    for (k, (label, _)) in b.series.iter().enumerate() {
        c.rect(PAD, y - 5.0, 10.0, 10.0, PALETTE[k % PALETTE.len()]);
        c.text(PAD + 16.0, y, label, dark, Anchor::Start, 1);
        y += 16.0;
    }
    let (left, top) = (56.0, y + 12.0);
    let bottom = top + PLOT_H;
    let right = w - PAD;
    for t in (0..=100).step_by(20) {
        let ty = bottom - PLOT_H * t as f64 / 100.0;
        c.line(left, ty, right, ty, if t == 0 { [40, 40, 40] } else { [225, 225, 225] });
        c.text(left - 6.0, ty, &format!("{t}%"), dark, Anchor::End, 1);
    }
    let group_w = (right - left) / b.groups.len().max(1) as f64;
    let bar_w = ((group_w - 16.0) / b.series.len().max(1) as f64).min(22.0);
    for (g, name) in b.groups.iter().enumerate() {
        let gx = left + g as f64 * group_w + (group_w - bar_w * b.series.len() as f64) / 2.0;
        for (k, (_, vals)) in b.series.iter().enumerate() {
            let Some(v) = vals[g] else { continue };
            let y_of = |p: f64| bottom - PLOT_H * p.clamp(0.0, 100.0) / 100.0;
            let x = gx + k as f64 * bar_w;
            c.rect(x + 1.0, y_of(v.value), bar_w - 2.0, bottom - y_of(v.value), PALETTE[k % PALETTE.len()]);
            // The error bar: the interval, with caps.
            let (mid, lo, hi) = (x + bar_w / 2.0, y_of(v.low), y_of(v.high));
            c.line(mid, lo, mid, hi, dark);
            c.line(mid - 3.0, lo, mid + 3.0, lo, dark);
            c.line(mid - 3.0, hi, mid + 3.0, hi, dark);
            c.text(mid, hi - 7.0, &format!("{:.0}", v.value), dark, Anchor::Middle, 1);
        }
        c.text(left + (g as f64 + 0.5) * group_w, bottom + 14.0, name, dark, Anchor::Middle, 1);
    }
    let _ = h;
}
