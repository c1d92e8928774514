//! Windows: the VOI transform of PS3.3 C.11.2.1.2, and the named CT windows radiologists read with.

use anyhow::{bail, Result};

/// The window a VOI LUT applies (PS3.3 C.11.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
    pub function: VoiFunction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoiFunction {
    Linear,
    LinearExact,
    Sigmoid,
}

/// The named CT windows, in Hounsfield units: (name, centre, width). Values from Radiopaedia's
/// "Windowing (CT)" article (the usual teaching values; soft tissue there is W 350-400 / L 20-60,
/// the middle of which is taken).
pub const PRESETS: [(&str, f64, f64); 7] = [
    ("lung", -600.0, 1500.0),
    ("mediastinum", 50.0, 350.0),
    ("bone", 400.0, 1800.0),
    ("brain", 40.0, 80.0),
    ("abdomen", 50.0, 400.0),
    ("liver", 30.0, 150.0),
    ("soft-tissue", 40.0, 375.0),
];

impl Window {
    pub fn linear(center: f64, width: f64) -> Window {
        Window { center, width, function: VoiFunction::Linear }
    }

    /// `lung`, `bone`, ... (see [`PRESETS`]) or `C,W` (centre, width; width at least 1).
    pub fn parse(s: &str) -> Result<Window> {
        let s = s.trim();
        if let Some(&(_, c, w)) = PRESETS.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(s)) {
            return Ok(Window::linear(c, w));
        }
        let names: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
        let Some((c, w)) = s.split_once(',') else {
            bail!("window {s:?}: expected one of {} or CENTRE,WIDTH (e.g. -600,1500)", names.join(", "));
        };
        let (Ok(c), Ok(w)) = (c.trim().parse::<f64>(), w.trim().parse::<f64>()) else {
            bail!("window {s:?}: CENTRE,WIDTH must be two numbers (e.g. -600,1500)");
        };
        if !c.is_finite() || !w.is_finite() || w < 1.0 {
            bail!("window {s:?}: the width must be at least 1 and both values finite");
        }
        Ok(Window::linear(c, w))
    }
}

/// The VOI LUT into 0..=255 (PS3.3 C.11.2.1.2.1-2 with y_min 0, y_max 255).
pub fn voi_lut(values: &[f64], window: Option<Window>) -> Vec<u8> {
    let to_u8 = |y: f64| y.round().clamp(0.0, 255.0) as u8;
    match window {
        Some(Window { center: c, width: w, function: VoiFunction::Linear }) => {
            // Width 1 makes the ramp a step at c - 0.5.
            let w1 = (w - 1.0).max(0.0);
            let lo = c - 0.5 - w1 / 2.0;
            let hi = c - 0.5 + w1 / 2.0;
            values
                .iter()
                .map(|&x| {
                    if x <= lo {
                        0
                    } else if x > hi {
                        255
                    } else {
                        to_u8(((x - (c - 0.5)) / w1 + 0.5) * 255.0)
                    }
                })
                .collect()
        }
        Some(Window { center: c, width: w, function: VoiFunction::LinearExact }) => {
            values.iter().map(|&x| to_u8(((x - c) / w + 0.5) * 255.0)).collect()
        }
        Some(Window { center: c, width: w, function: VoiFunction::Sigmoid }) => {
            values.iter().map(|&x| to_u8(255.0 / (1.0 + (-4.0 * (x - c) / w).exp()))).collect()
        }
        None => {
            let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
            if values.is_empty() || hi <= lo {
                return vec![0; values.len()];
            }
            values.iter().map(|&x| to_u8((x - lo) / (hi - lo) * 255.0)).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_custom_windows_parse() {
        assert_eq!(Window::parse("lung").unwrap(), Window::linear(-600.0, 1500.0));
        assert_eq!(Window::parse("Bone").unwrap(), Window::linear(400.0, 1800.0));
        assert_eq!(Window::parse(" -600, 1500 ").unwrap(), Window::linear(-600.0, 1500.0));
        for bad in ["lungs", "40", "a,b", "40,0", "nan,10"] {
            let e = Window::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad.trim()), "{e}");
        }
        assert!(Window::parse("x").unwrap_err().to_string().contains("mediastinum"));
    }
}
