//! Calibration pictures: a reliability diagram (accuracy against confidence per bin, the diagonal
//! being perfect calibration) and accuracy-at-coverage curves (what a triage deployment trades
//! when it answers only above a confidence threshold).

use super::bars::PALETTE;
use super::canvas::{Anchor, Canvas};
use crate::statistics::{Calibration, CoveragePoint};

const PAD: f64 = 12.0;
const PLOT: f64 = 240.0;
const LEFT: f64 = 56.0;
const TOP: f64 = 48.0;

pub fn reliability_size() -> (f64, f64) {
    (LEFT + PLOT + 2.0 * PAD + 40.0, TOP + PLOT + 72.0)
}

fn axes(c: &mut dyn Canvas, x_label: &str, y_label: &str) {
    let dark = [20, 20, 20];
    let (bottom, right) = (TOP + PLOT, LEFT + PLOT);
    for t in (0..=100).step_by(20) {
        let f = t as f64 / 100.0;
        c.line(LEFT, bottom - PLOT * f, right, bottom - PLOT * f, if t == 0 { [40, 40, 40] } else { [225, 225, 225] });
        c.line(LEFT + PLOT * f, TOP, LEFT + PLOT * f, bottom, if t == 0 { [40, 40, 40] } else { [235, 235, 235] });
        c.text(LEFT - 6.0, bottom - PLOT * f, &format!("{t}"), dark, Anchor::End, 1);
        c.text(LEFT + PLOT * f, bottom + 12.0, &format!("{t}"), dark, Anchor::Middle, 1);
    }
    c.text(LEFT + PLOT / 2.0, bottom + 28.0, x_label, dark, Anchor::Middle, 1);
    c.text(PAD, TOP - 12.0, y_label, dark, Anchor::Start, 1);
}

/// Accuracy per confidence bin as bars over the diagonal; each bar's n above it.
pub fn draw_reliability(title: &str, cal: &Calibration, c: &mut dyn Canvas) {
    let dark = [20, 20, 20];
    c.text(PAD, PAD + 8.0, &format!("{title}: ECE {:.1} points, n={}", cal.ece, cal.n), dark, Anchor::Start, 1);
    axes(c, "confidence (%)", "accuracy (%)");
    let bottom = TOP + PLOT;
    for b in &cal.bins {
        let (x0, w) = (LEFT + PLOT * b.low, PLOT * (b.high - b.low));
        let h = PLOT * b.accuracy;
        c.rect(x0 + 1.0, bottom - h, w - 2.0, h, PALETTE[0]);
        // Where the bin's mean confidence says the bar should end.
        let yc = bottom - PLOT * b.confidence;
        c.line(x0 + 1.0, yc, x0 + w - 1.0, yc, [214, 39, 40]);
        c.text(x0 + w / 2.0, bottom - h - 8.0, &format!("{}", b.n), dark, Anchor::Middle, 1);
    }
    // Perfect calibration.
    let steps = 48;
    for i in 0..steps {
        let (f0, f1) = (i as f64 / steps as f64, (i as f64 + 0.5) / steps as f64);
        c.line(LEFT + PLOT * f0, bottom - PLOT * f0, LEFT + PLOT * f1, bottom - PLOT * f1, [90, 90, 90]);
    }
    let grey = [90, 90, 90];
    c.text(PAD, bottom + 44.0, "bars: accuracy per bin (n above)", grey, Anchor::Start, 1);
    c.text(PAD, bottom + 56.0, "red: mean confidence; dashed: perfect", grey, Anchor::Start, 1);
}

/// Accuracy against coverage, one curve per run.
pub fn draw_coverage(curves: &[(String, Vec<CoveragePoint>)], c: &mut dyn Canvas) {
    let dark = [20, 20, 20];
    c.text(PAD, PAD + 8.0, "Accuracy at coverage (answer only at confidence >= t)", dark, Anchor::Start, 1);
    axes(c, "coverage (% answered)", "accuracy (%)");
    let bottom = TOP + PLOT;
    let at = |p: &CoveragePoint| (LEFT + PLOT * p.coverage / 100.0, bottom - PLOT * p.accuracy / 100.0);
    for (k, (label, pts)) in curves.iter().enumerate() {
        let col = PALETTE[k % PALETTE.len()];
        let pts: Vec<&CoveragePoint> = pts.iter().filter(|p| p.answered > 0).collect();
        for w in pts.windows(2) {
            let ((x0, y0), (x1, y1)) = (at(w[0]), at(w[1]));
            c.line(x0, y0, x1, y1, col);
        }
        for p in &pts {
            let (x, y) = at(p);
            c.rect(x - 2.0, y - 2.0, 4.0, 4.0, col);
        }
        c.rect(LEFT + PLOT + 8.0, TOP + 14.0 * k as f64, 8.0, 8.0, col);
        c.text(LEFT + PLOT + 20.0, TOP + 4.0 + 14.0 * k as f64, label, dark, Anchor::Start, 1);
    }
}

pub fn coverage_size(curves: &[(String, Vec<CoveragePoint>)]) -> (f64, f64) {
    let label = curves.iter().map(|(l, _)| super::canvas::text_width(l, 1)).fold(0.0, f64::max);
    let title = super::canvas::text_width("Accuracy at coverage (answer only at confidence >= t)", 1) + 2.0 * PAD;
    ((LEFT + PLOT + 28.0 + label + PAD).max(title), TOP + PLOT + 48.0)
}

/// Panels per row, and each small panel's plot size, of the per-modality figure.
const GRID_COLS: usize = 4;
const CELL: f64 = 120.0;
const CELL_PAD: f64 = 64.0;

pub fn grid_size(panels: usize) -> (f64, f64) {
    let rows = panels.div_ceil(GRID_COLS).max(1);
    (PAD + GRID_COLS.min(panels.max(1)) as f64 * (CELL + CELL_PAD) + PAD, 52.0 + rows as f64 * (CELL + 62.0) + PAD)
}

/// One small reliability diagram per modality (accuracy bars per confidence bin over the
/// diagonal), each titled with its ECE and n.
pub fn draw_reliability_grid(title: &str, cals: &[(String, Calibration)], c: &mut dyn Canvas) {
    let dark = [20, 20, 20];
    c.text(PAD, PAD + 8.0, &format!("{title}: reliability per modality"), dark, Anchor::Start, 1);
    for (i, (name, cal)) in cals.iter().enumerate() {
        let (col, row) = (i % GRID_COLS, i / GRID_COLS);
        let left = PAD + 30.0 + col as f64 * (CELL + CELL_PAD);
        let top = 64.0 + row as f64 * (CELL + 62.0);
        let bottom = top + CELL;
        c.text(left - 28.0, top - 22.0, name, dark, Anchor::Start, 1);
        c.text(left - 28.0, top - 10.0, &format!("ECE {:.0}, n={}", cal.ece, cal.n), [90, 90, 90], Anchor::Start, 1);
        c.line(left, bottom, left + CELL, bottom, [40, 40, 40]);
        c.line(left, top, left, bottom, [40, 40, 40]);
        for t in [0.5, 1.0] {
            c.line(left, bottom - CELL * t, left + CELL, bottom - CELL * t, [225, 225, 225]);
        }
        for b in &cal.bins {
            let (x0, w, h) = (left + CELL * b.low, CELL * (b.high - b.low), CELL * b.accuracy);
            c.rect(x0 + 1.0, bottom - h, w - 2.0, h, PALETTE[0]);
            let yc = bottom - CELL * b.confidence;
            c.line(x0 + 1.0, yc, x0 + w - 1.0, yc, [214, 39, 40]);
        }
        for k in 0..24 {
            let (f0, f1) = (k as f64 / 24.0, (k as f64 + 0.5) / 24.0);
            c.line(left + CELL * f0, bottom - CELL * f0, left + CELL * f1, bottom - CELL * f1, [90, 90, 90]);
        }
        c.text(left, bottom + 10.0, "0", dark, Anchor::Middle, 1);
        c.text(left + CELL, bottom + 10.0, "1", dark, Anchor::Middle, 1);
    }
}
