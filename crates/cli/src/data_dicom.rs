//! `medr1 data dicom FILE|DIR`: what decides how a DICOM file or series is displayed, the exact
//! image the model sees, and the decoded values as pydicom lays them out. Prints display
//! attributes only (never patient- or study-identifying ones).

use anyhow::{bail, Context, Result};
use clap::Args;
use data::dicom::{self, DisplayTags, StoredPixels, View};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct DicomArgs {
    /// A DICOM file, or a folder holding one DICOM series.
    pub path: PathBuf,
    /// Print the attributes as JSON (`tags`, `pixel_array_shape`, `dtype`, `frame`, `series`).
    #[arg(long)]
    pub json: bool,
    /// Write the 8-bit RGB image the model sees (the chosen frame or slice, through the window)
    /// to this PNG.
    #[arg(long, value_name = "OUT.png")]
    pub png: Option<PathBuf>,
    /// Write `stored` (the decoded stored values shaped as pydicom's pixel_array — [rows, cols],
    /// [frames, rows, cols], [rows, cols, 3] or [frames, rows, cols, 3], colour as RGB, in the
    /// file's integer type; a series folder stacks its slices as frames) and, for single-sample
    /// images, `modality_lut` (float32) to this safetensors file.
    #[arg(long, value_name = "OUT.safetensors")]
    pub safetensors: Option<PathBuf>,
    #[command(flatten)]
    pub view: crate::view::ViewArgs,
}

pub fn run(a: DicomArgs) -> Result<()> {
    let (files, series) = if a.path.is_dir() {
        let s = dicom::read_series(&a.path)?;
        (s.slices.clone(), Some(s))
    } else {
        (vec![a.path.clone()], None)
    };
    let read = dicom::read_file;
    // The frame shown: of the file, or the slice of the series.
    let (shown, frame) = match &series {
        Some(s) => {
            let i = dicom::pick(s.slices.len(), a.view.frame, None, &a.path.display().to_string())?[0];
            (read(&s.slices[i])?, i)
        }
        None => {
            let px = read(&a.path)?;
            let f = dicom::pick(px.frames, a.view.frame, None, &a.path.display().to_string())?[0];
            (px, f)
        }
    };
    let mut shape = shown.pixel_array_shape();
    if let Some(s) = &series {
        shape.insert(0, s.slices.len());
    }
    let (bits, signed) = shown.integer_type();
    let dtype = format!("{}int{bits}", if signed { "" } else { "u" });
    if let Some(out) = &a.png {
        let view = View { window: a.view.window, frame: if series.is_some() { None } else { Some(frame) } };
        let img = dicom::render_view(&shown, &view, &a.path.display().to_string())?;
        image::RgbImage::from_raw(img.width as u32, img.height as u32, img.data)
            .context("RGB buffer size")?
            .save(out)
            .with_context(|| format!("{}: cannot write", out.display()))?;
    }
    if let Some(out) = &a.safetensors {
        write_safetensors(out, &files, &shown, series.is_some(), read)?;
    }
    let series_json = series
        .as_ref()
        .map(|s| json!({"slices": s.slices.len(), "ordered_by": s.ordered_by, "skipped_files": s.skipped.len()}));
    if a.json {
        let out = json!({
            "path": a.path.display().to_string(),
            "tags": shown.tags(),
            "decoded_photometric_interpretation": shown.photometric,
            "pixel_array_shape": shape,
            "dtype": dtype,
            "frame": frame,
            "window": a.view.window.map(|w| json!({"center": w.center, "width": w.width})),
            "series": series_json,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_text(&a, shown.tags(), &shown, &shape, &dtype, frame, series.as_ref());
    }
    Ok(())
}

fn print_text(
    a: &DicomArgs,
    tags: &DisplayTags,
    px: &StoredPixels,
    shape: &[usize],
    dtype: &str,
    frame: usize,
    series: Option<&dicom::Series>,
) {
    println!("{}", a.path.display());
    if let Some(s) = series {
        println!(
            "series: {} slices ordered by {}{}",
            s.slices.len(),
            s.ordered_by,
            if s.skipped.is_empty() {
                String::new()
            } else {
                format!(" ({} non-DICOM files skipped)", s.skipped.len())
            }
        );
        println!("showing slice {frame}: {}", s.slices[frame].display());
    } else if px.frames > 1 {
        println!("showing frame {frame} of {}", px.frames);
    }
    for line in tags.lines() {
        println!("  {line}");
    }
    println!("  decoded as: {} {dtype} {shape:?}", px.photometric);
    if let Some(w) = a.view.window {
        println!("  window (--window): centre {} width {}", w.center, w.width);
    }
}

fn write_safetensors(
    out: &Path,
    files: &[PathBuf],
    first: &StoredPixels,
    stacked: bool,
    read: fn(&Path) -> Result<StoredPixels>,
) -> Result<()> {
    let (bits, signed) = first.integer_type();
    let dtype = match (bits, signed) {
        (8, false) => Dtype::U8,
        (8, true) => Dtype::I8,
        (16, false) => Dtype::U16,
        (16, true) => Dtype::I16,
        (_, false) => Dtype::U32,
        (_, true) => Dtype::I32,
    };
    let mut stored: Vec<u8> = Vec::new();
    let mut lut: Vec<u8> = Vec::new();
    let single = first.samples_per_pixel == 1;
    let mut shape = first.pixel_array_shape();
    let mut push = |px: &StoredPixels| {
        for &v in &px.values {
            match bits {
                8 => stored.push(v as u8),
                16 => stored.extend_from_slice(&(v as u16).to_le_bytes()),
                _ => stored.extend_from_slice(&v.to_le_bytes()),
            }
        }
        if single {
            for x in px.modality_lut() {
                lut.extend_from_slice(&(x as f32).to_le_bytes());
            }
        }
    };
    if stacked {
        // One slice at a time: the series is never held decoded whole, only its output bytes.
        for f in files {
            let px = read(f)?;
            if px.pixel_array_shape() != first.pixel_array_shape() || px.integer_type() != first.integer_type() {
                bail!(
                    "{}: slice is {:?} {:?}, the series' first is {:?} {:?}: cannot stack",
                    f.display(),
                    px.pixel_array_shape(),
                    px.integer_type(),
                    first.pixel_array_shape(),
                    first.integer_type()
                );
            }
            push(&px);
        }
        shape.insert(0, files.len());
    } else {
        push(first);
    }
    let mut tensors = vec![("stored".to_string(), TensorView::new(dtype, shape.clone(), &stored)?)];
    if single {
        tensors.push(("modality_lut".to_string(), TensorView::new(Dtype::F32, shape, &lut)?));
    }
    safetensors::serialize_to_file(tensors, None, out).with_context(|| format!("{}: cannot write", out.display()))?;
    Ok(())
}
