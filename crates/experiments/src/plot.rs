//! Training curves from `metrics.jsonl`: reward, accuracy, KL and completion length against the
//! update step, four panels in one PNG. Drawn directly (lines and the 8x8 bitmap font) so no font
//! files or plotting backends are needed on the machine.

use anyhow::{Context, Result};
use data::contact_sheet::draw_text;
use image::{Rgb, RgbImage};
use serde::Deserialize;
use std::path::Path;

/// The fields of a `metrics.jsonl` line ([`rl::metrics::StepMetrics`]) the panels read, each
/// optional so that SFT lines, older runs and hand-written files plot what they have.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Point {
    pub step: f64,
    pub loss: Option<f64>,
    pub reward: Option<f64>,
    pub accuracy: Option<f64>,
    pub kl: Option<f64>,
    pub completion_length: Option<Mean>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Mean {
    pub mean: f64,
}

/// A panel's title and the value it plots from a metrics line (None: no point).
type Panel = (&'static str, fn(&Point) -> Option<f64>);

/// The four panels. SFT logs have no reward: their loss is shown in the first panel instead.
pub const PANELS: [Panel; 4] = [
    ("reward (mean)", |p| p.reward.or(p.loss)),
    ("accuracy (sampled)", |p| p.accuracy),
    ("KL to reference", |p| p.kl),
    ("completion length (mean)", |p| p.completion_length.as_ref().map(|c| c.mean)),
];

/// Reads the series: (step, value) per panel; lines without a step are skipped.
pub fn series(metrics: &str) -> Vec<Vec<(f64, f64)>> {
    let mut out = vec![Vec::new(); PANELS.len()];
    for line in metrics.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if v.get("step").is_none() {
            continue;
        }
        let Ok(p) = serde_json::from_value::<Point>(v) else { continue };
        for (i, (_, value)) in PANELS.iter().enumerate() {
            if let Some(y) = value(&p) {
                out[i].push((p.step, y));
            }
        }
    }
    out
}

const W: u32 = 420;
const H: u32 = 260;

fn panel(img: &mut RgbImage, x0: u32, y0: u32, title: &str, pts: &[(f64, f64)]) {
    let (l, r, t, b) = (x0 + 56, x0 + W - 12, y0 + 24, y0 + H - 28);
    let black = Rgb([30, 30, 30]);
    draw_text(img, x0 + 8, y0 + 6, title, black);
    for x in l..=r {
        img.put_pixel(x, b, black);
    }
    for y in t..=b {
        img.put_pixel(l, y, black);
    }
    if pts.is_empty() {
        draw_text(img, l + 10, (t + b) / 2, "no data", Rgb([150, 0, 0]));
        return;
    }
    let (xmin, xmax) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, c), p| (a.min(p.0), c.max(p.0)));
    let (mut ymin, mut ymax) =
        pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, c), p| (a.min(p.1), c.max(p.1)));
    if (ymax - ymin).abs() < 1e-12 {
        ymin -= 0.5;
        ymax += 0.5;
    }
    draw_text(img, x0 + 4, t, &format!("{ymax:.3}"), black);
    draw_text(img, x0 + 4, b - 8, &format!("{ymin:.3}"), black);
    draw_text(img, l, b + 6, &format!("{xmin:.0}"), black);
    let xl = format!("step {xmax:.0}");
    draw_text(img, r.saturating_sub(8 * xl.len() as u32), b + 6, &xl, black);
    let px = |p: (f64, f64)| -> (f64, f64) {
        let fx = if xmax > xmin { (p.0 - xmin) / (xmax - xmin) } else { 0.5 };
        (l as f64 + 1.0 + fx * (r - l - 1) as f64, b as f64 - 1.0 - (p.1 - ymin) / (ymax - ymin) * (b - t - 1) as f64)
    };
    // Raw values in light blue, a moving average (window 1/20 of the run) in dark blue.
    let k = (pts.len() / 20).max(1);
    let smooth: Vec<(f64, f64)> = (0..pts.len())
        .map(|i| {
            let lo = i.saturating_sub(k - 1);
            (pts[i].0, pts[lo..=i].iter().map(|p| p.1).sum::<f64>() / (i - lo + 1) as f64)
        })
        .collect();
    for (series, color) in [(pts, Rgb([160, 190, 235])), (&smooth[..], Rgb([20, 60, 170]))] {
        for w in series.windows(2) {
            let (a, c) = (px(w[0]), px(w[1]));
            let n = ((c.0 - a.0).abs().max((c.1 - a.1).abs()).ceil() as usize).max(1);
            for s in 0..=n {
                let f = s as f64 / n as f64;
                let (x, y) = (a.0 + (c.0 - a.0) * f, a.1 + (c.1 - a.1) * f);
                if x >= 0.0 && y >= 0.0 && (x as u32) < img.width() && (y as u32) < img.height() {
                    img.put_pixel(x as u32, y as u32, color);
                }
            }
        }
    }
}

/// Draws the four panels (2 x 2) from a metrics.jsonl file into a PNG.
pub fn plot(metrics: &Path, out: &Path) -> Result<()> {
    let text = std::fs::read_to_string(metrics).with_context(|| format!("{}: cannot read", metrics.display()))?;
    let s = series(&text);
    anyhow::ensure!(s.iter().any(|p| !p.is_empty()), "{}: no metrics lines with a step", metrics.display());
    let mut img = RgbImage::from_pixel(2 * W, 2 * H, Rgb([255, 255, 255]));
    for (i, (title, _)) in PANELS.iter().enumerate() {
        let title = if i == 0 && !s[0].is_empty() && !text.contains("\"reward\"") { "loss (SFT)" } else { title };
        panel(&mut img, (i as u32 % 2) * W, (i as u32 / 2) * H, title, &s[i]);
    }
    img.save(out).with_context(|| format!("{}: cannot write", out.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_panel_and_skips_bad_lines() {
        let m = "{\"step\":1,\"reward\":1.0,\"accuracy\":0.5,\"kl\":0.01,\"completion_length\":{\"mean\":7}}\nnot json\n{\"step\":2,\"reward\":1.5,\"accuracy\":0.75,\"kl\":null,\"completion_length\":{\"mean\":6}}\n";
        let s = series(m);
        assert_eq!(s[0], vec![(1.0, 1.0), (2.0, 1.5)]);
        assert_eq!(s[1], vec![(1.0, 0.5), (2.0, 0.75)]);
        assert_eq!(s[2], vec![(1.0, 0.01)]);
        assert_eq!(s[3], vec![(1.0, 7.0), (2.0, 6.0)]);
        let dir = std::env::temp_dir().join(format!("medr1-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("m.jsonl"), m).unwrap();
        plot(&dir.join("m.jsonl"), &dir.join("c.png")).unwrap();
        let img = image::open(dir.join("c.png")).unwrap();
        assert_eq!((img.width(), img.height()), (2 * W, 2 * H));
        std::fs::remove_dir_all(&dir).ok();
    }
}
