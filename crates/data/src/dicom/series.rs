//! A folder holding one DICOM series, as a PACS exports a CT or MR: its slices in anatomical
//! order, sorted from their headers alone (pixel data is read only for the slices shown).

use anyhow::{bail, Context, Result};
use dicom_dictionary_std::tags;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::parse::{floats, int, is_dicom, parse_until, text};

/// The slices of one series, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub slices: Vec<PathBuf>,
    /// How they were ordered: "ImagePositionPatient" (along the slice normal),
    /// "InstanceNumber", or "file name" when neither is present.
    pub ordered_by: &'static str,
    /// Files in the folder that are not DICOM (skipped).
    pub skipped: Vec<PathBuf>,
}

struct Header {
    path: PathBuf,
    series: Option<String>,
    position: Option<Vec<f64>>,
    orientation: Option<Vec<f64>>,
    instance: Option<i64>,
}

/// Reads the folder's DICOM files (not recursing; DICOMDIR and non-DICOM files skipped). Two
/// series in one folder is an error listing their SeriesInstanceUIDs.
pub fn read_series(dir: &Path) -> Result<Series> {
    let what = dir.display().to_string();
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{what}: cannot list the folder"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    let mut headers = Vec::new();
    let mut skipped = Vec::new();
    for path in names {
        if path.file_name().is_some_and(|n| n.eq_ignore_ascii_case("DICOMDIR")) {
            skipped.push(path);
            continue;
        }
        let bytes = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        if !is_dicom(&bytes) {
            skipped.push(path);
            continue;
        }
        let shown = path.display().to_string();
        let obj = parse_until(&bytes, &shown, Some(tags::PIXEL_DATA))?;
        headers.push(Header {
            series: text(&obj, tags::SERIES_INSTANCE_UID),
            position: floats(&obj, tags::IMAGE_POSITION_PATIENT).filter(|v| v.len() == 3),
            orientation: floats(&obj, tags::IMAGE_ORIENTATION_PATIENT).filter(|v| v.len() == 6),
            instance: int(&obj, tags::INSTANCE_NUMBER),
            path,
        });
    }
    if headers.is_empty() {
        bail!("{what}: the folder holds no DICOM files");
    }
    let mut by_series: BTreeMap<String, usize> = BTreeMap::new();
    for h in &headers {
        *by_series.entry(h.series.clone().unwrap_or_else(|| "(none)".into())).or_default() += 1;
    }
    if by_series.len() > 1 {
        let list: Vec<String> = by_series.iter().map(|(uid, n)| format!("{uid} ({n} files)")).collect();
        bail!(
            "{what}: the folder mixes {} series (SeriesInstanceUID): {}; give a folder holding one series",
            by_series.len(),
            list.join(", ")
        );
    }
    let ordered_by = order(&mut headers);
    Ok(Series { slices: headers.into_iter().map(|h| h.path).collect(), ordered_by, skipped })
}

/// Sorts slices along the slice normal (the cross product of the row and column directions of
/// ImageOrientationPatient) by their ImagePositionPatient, when every slice has both; else by
/// InstanceNumber; else keeps the file names' order.
fn order(headers: &mut [Header]) -> &'static str {
    if headers.iter().all(|h| h.position.is_some() && h.orientation.is_some()) {
        let o = headers[0].orientation.clone().unwrap();
        let normal = [o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]];
        let along = |h: &Header| {
            let p = h.position.as_ref().unwrap();
            p[0] * normal[0] + p[1] * normal[1] + p[2] * normal[2]
        };
        headers.sort_by(|a, b| along(a).total_cmp(&along(b)));
        return "ImagePositionPatient";
    }
    if headers.iter().all(|h| h.instance.is_some()) {
        headers.sort_by_key(|h| h.instance);
        return "InstanceNumber";
    }
    "file name"
}

/// Which of `n` frames or slices to show: `index` (0-based), or `count` evenly spaced ones from
/// the first to the last, or the middle one.
pub fn pick(n: usize, index: Option<usize>, count: Option<usize>, what: &str) -> Result<Vec<usize>> {
    match (index, count) {
        (Some(_), Some(_)) => bail!("{what}: give one of --frame/--slice and --slices, not both"),
        (Some(i), None) if i >= n => bail!("{what}: frame {i} asked for, there are {n} (0 to {})", n - 1),
        (Some(i), None) => Ok(vec![i]),
        (None, Some(0)) => bail!("{what}: --slices must be at least 1"),
        (None, Some(k)) if k > n => bail!("{what}: {k} slices asked for, there are {n}"),
        (None, Some(1)) => Ok(vec![n / 2]),
        (None, Some(k)) => Ok((0..k).map(|i| ((i * (n - 1)) as f64 / (k - 1) as f64).round() as usize).collect()),
        (None, None) => Ok(vec![n / 2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_hand_worked() {
        assert_eq!(pick(10, None, None, "x").unwrap(), vec![5]);
        assert_eq!(pick(10, Some(0), None, "x").unwrap(), vec![0]);
        assert_eq!(pick(10, None, Some(3), "x").unwrap(), vec![0, 5, 9]);
        assert_eq!(pick(5, None, Some(5), "x").unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(pick(7, None, Some(1), "x").unwrap(), vec![3]);
        assert!(pick(10, Some(10), None, "x").unwrap_err().to_string().contains("frame 10"));
        assert!(pick(3, None, Some(4), "x").unwrap_err().to_string().contains("4 slices"));
        assert!(pick(3, Some(1), Some(2), "x").is_err());
    }
}
