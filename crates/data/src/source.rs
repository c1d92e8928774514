//! One entry point for "some medical VQA data at PATH": an OmniMedVQA root, one of its QA files,
//! a Med-R1 split file, or a folder of split files.

use crate::dataset::{Dataset, ReadOptions};
use crate::{medr1_split, omnimedvqa};
use anyhow::{bail, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// What PATH is.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    OmniMedVqaRoot,
    /// A native QA file, `ROOT/QA_information/Open-access/X.json`.
    OmniMedVqaFile {
        root: PathBuf,
    },
    SplitFile,
    SplitFolder,
}

pub fn kind_of(path: &Path) -> Result<SourceKind> {
    if path.is_dir() {
        return Ok(if omnimedvqa::is_root(path) { SourceKind::OmniMedVqaRoot } else { SourceKind::SplitFolder });
    }
    if !path.is_file() {
        bail!("{}: no such file or folder", path.display());
    }
    // A file inside QA_information/Open-access is native; anything else is read as a split file.
    let parent = path.parent().unwrap_or(Path::new(""));
    if parent.ends_with(omnimedvqa::QA_DIR) {
        let root = parent.parent().and_then(Path::parent).unwrap_or(Path::new("")).to_path_buf();
        return Ok(SourceKind::OmniMedVqaFile { root });
    }
    Ok(SourceKind::SplitFile)
}

/// Every `*.json` below `dir` except manifests, in path order.
fn json_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("{}: cannot list: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            json_files(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "json")
            && !p.ends_with(medr1_split::MANIFEST)
            && !p.ends_with("stats.json")
        {
            out.push(p);
        }
    }
    Ok(())
}

/// Reads PATH. Errors only when PATH itself cannot be read; bad files and records inside it are
/// problems in the returned data set.
pub fn load(path: &Path, opts: &ReadOptions) -> Result<Dataset> {
    match kind_of(path)? {
        SourceKind::OmniMedVqaRoot => omnimedvqa::read_root(path, opts),
        SourceKind::OmniMedVqaFile { root } => {
            let mut ds = Dataset { images_checked: opts.check_images, ..Default::default() };
            omnimedvqa::read_file_into(path, &root, opts, &mut HashSet::new(), &mut ds);
            Ok(ds)
        }
        SourceKind::SplitFile => Ok(medr1_split::read_file(path, opts)),
        SourceKind::SplitFolder => {
            let mut files = Vec::new();
            json_files(path, &mut files)?;
            let mut ds = Dataset { images_checked: true, ..Default::default() };
            for f in &files {
                ds.extend(medr1_split::read_file(f, opts));
            }
            ds.images_checked &= opts.check_images && !files.is_empty();
            Ok(ds)
        }
    }
}
