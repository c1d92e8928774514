//! `medr1 data`: make, split, count and look at medical VQA data.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use data::contact_sheet::{self, SheetOptions};
use data::phantoms::{self, PhantomConfig};
use data::stats::Stats;
use data::{omnimedvqa, source, split, ReadOptions};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(Subcommand)]
pub enum DataCommand {
    /// Generate the bundled phantom benchmark (OmniMedVQA layout) into a folder.
    Phantoms(PhantomsArgs),
    /// Split an OmniMedVQA folder 80/20 per question into Med-R1's cross-modality (8 pairs) and
    /// cross-task (5 pairs) split files.
    Split(SplitArgs),
    /// Count usable records per modality and question type, and list every problem.
    Stats(StatsArgs),
    /// Draw a contact sheet of sample images with their questions.
    Show(ShowArgs),
    /// Inspect a DICOM file or series folder: the attributes that decide its display (never
    /// identifying ones), the image the model sees (--png), the decoded values (--safetensors).
    Dicom(crate::data_dicom::DicomArgs),
}

#[derive(Args)]
pub struct PhantomsArgs {
    /// Output folder (created; existing files with the same names are overwritten).
    #[arg(long)]
    pub out: PathBuf,
    /// Questions per (modality, question type) cell; the set has 40 cells.
    #[arg(long, default_value_t = 25)]
    pub per_cell: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = 112)]
    pub size: usize,
    /// Random seed: the same seed gives byte-identical files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep every question type's options in one fixed order (the letter names the class)
    /// instead of shuffling them with balanced letters.
    #[arg(long)]
    pub fixed_options: bool,
}

#[derive(Args)]
pub struct SplitArgs {
    /// OmniMedVQA root (holding QA_information/Open-access and Images).
    #[arg(long)]
    pub omnimedvqa: PathBuf,
    /// Output folder for modality/{train,test}, q_type/{train,test}, stats.md and the manifest.
    #[arg(long)]
    pub out: PathBuf,
    /// Random seed of the 80/20 draw.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Args)]
pub struct StatsArgs {
    /// An OmniMedVQA root, one of its QA files, a Med-R1 split file, or a folder of split files.
    pub path: PathBuf,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// OmniMedVQA root that split files' image paths are relative to (default: from the
    /// medr1-split.json manifest `data split` writes; without either, images are not checked).
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Do not check that image files exist.
    #[arg(long)]
    pub no_image_check: bool,
}

#[derive(Args)]
pub struct ShowArgs {
    /// Any data `medr1 data stats` reads.
    pub path: PathBuf,
    /// The PNG to write.
    #[arg(long)]
    pub out: PathBuf,
    /// How many records to show, spread over modality x question type.
    #[arg(long, default_value_t = 40)]
    pub n: usize,
    /// Tiles per row.
    #[arg(long, default_value_t = 5)]
    pub columns: usize,
    /// Tile image side in pixels.
    #[arg(long, default_value_t = 176)]
    pub tile: u32,
    /// OmniMedVQA root for split files' relative image paths.
    #[arg(long)]
    pub images: Option<PathBuf>,
    #[command(flatten)]
    pub view: crate::view::ViewArgs,
}

pub fn run(a: DataArgs) -> Result<()> {
    match a.command {
        DataCommand::Phantoms(a) => phantoms(a),
        DataCommand::Split(a) => split(a),
        DataCommand::Stats(a) => stats(a),
        DataCommand::Show(a) => show(a),
        DataCommand::Dicom(a) => crate::data_dicom::run(a),
    }
}

fn bar(total: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(total as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}]").unwrap(),
    );
    pb.set_message(what.to_string());
    pb
}

fn phantoms(a: PhantomsArgs) -> Result<()> {
    if a.per_cell == 0 {
        bail!("--per-cell must be at least 1");
    }
    let cfg = PhantomConfig { per_cell: a.per_cell, size: a.size, seed: a.seed, fixed_options: a.fixed_options };
    crate::output::ensure_writable(&a.out, "output")?;
    let t0 = Instant::now();
    let pb = bar(a.per_cell * 40, "rendering");
    let records = phantoms::generate(&a.out, &cfg, &|done, _| pb.set_position(done as u64))?;
    pb.finish_and_clear();
    let refs: Vec<_> = records.iter().collect();
    println!(
        "{} phantom records ({}x{} px, seed {}) in {:.1} s -> {}",
        records.len(),
        a.size,
        a.size,
        a.seed,
        t0.elapsed().as_secs_f64(),
        a.out.display()
    );
    print!("{}", Stats::table(&refs));
    Ok(())
}

fn split(a: SplitArgs) -> Result<()> {
    if !omnimedvqa::is_root(&a.omnimedvqa) {
        bail!("{}: not an OmniMedVQA root (no {} folder)", a.omnimedvqa.display(), omnimedvqa::QA_DIR);
    }
    crate::output::ensure_writable(&a.out, "output")?;
    let ds = omnimedvqa::read_root(&a.omnimedvqa, &ReadOptions { image_root: None, check_images: true })?;
    for p in &ds.problems {
        eprintln!("skipped: {p}");
    }
    let written = split::write_protocols(&ds.records, &a.omnimedvqa, &a.out, a.seed)?;
    println!(
        "{} usable records ({} skipped), seed {} -> {}",
        ds.records.len(),
        ds.problems.len(),
        a.seed,
        a.out.display()
    );
    for (name, train, test) in written {
        println!("  {name:<40} train {train:>6}  test {test:>6}");
    }
    println!("tables: {}", a.out.join("stats.md").display());
    Ok(())
}

fn read(path: &std::path::Path, images: Option<PathBuf>, check: bool) -> Result<data::Dataset> {
    source::load(path, &ReadOptions { image_root: images, check_images: check })
        .with_context(|| format!("cannot read {}", path.display()))
}

fn stats(a: StatsArgs) -> Result<()> {
    let ds = read(&a.path, a.images, !a.no_image_check)?;
    let s = Stats::of(&ds);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", s.summary());
        let refs: Vec<_> = ds.records.iter().collect();
        print!("{}", Stats::table(&refs));
    }
    Ok(())
}

fn show(a: ShowArgs) -> Result<()> {
    let ds = read(&a.path, a.images, false)?;
    if ds.records.is_empty() {
        bail!("{}: no usable records to show ({} problems)", a.path.display(), ds.problems.len());
    }
    let picked = contact_sheet::pick_samples(&ds.records, a.n);
    let sheet = contact_sheet::render(
        &picked,
        &SheetOptions { tile: a.tile, columns: a.columns, view: a.view.options(), ..Default::default() },
    )?;
    sheet.save(&a.out).with_context(|| format!("{}: cannot write", a.out.display()))?;
    println!("{} records -> {} ({}x{})", picked.len(), a.out.display(), sheet.width(), sheet.height());
    Ok(())
}

/// The usable records of PATH (images checked), each skipped one reported on stderr with its
/// reason, and a count line — what `train`, `sft`, `eval` and `protocol` start with.
pub fn usable_records(path: &std::path::Path, images: Option<PathBuf>, what: &str) -> Result<Vec<data::Record>> {
    let ds = source::load(path, &ReadOptions { image_root: images, check_images: true })?;
    for p in &ds.problems {
        eprintln!("skipped: {p}");
    }
    eprintln!("{} {what} ({} skipped) from {}", ds.records.len(), ds.problems.len(), path.display());
    Ok(ds.records)
}
