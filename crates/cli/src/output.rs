//! Output folders are checked before any work: created, and written to with a probe file, so a
//! folder the run cannot write fails at once with its path instead of after the data is loaded
//! and the model trained.

use anyhow::{Context, Result};
use std::path::Path;

/// Creates `dir` if needed and checks that files can be written in it.
pub fn ensure_writable(dir: &Path, what: &str) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create the {what} folder", dir.display()))?;
    let probe = dir.join(format!(".medr1-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").with_context(|| format!("{}: the {what} folder is not writable", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unwritable_folder_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        ensure_writable(&tmp.path().join("a/b"), "output").unwrap();
        assert!(tmp.path().join("a/b").is_dir());
        // A folder under a regular file cannot exist (this holds for root too, unlike modes).
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = format!("{:#}", ensure_writable(&file.join("out"), "output").unwrap_err());
        assert!(err.contains("file/out: cannot create the output folder"), "{err}");
        assert_eq!(std::fs::read_dir(tmp.path().join("a/b")).unwrap().count(), 0, "the probe is removed");
    }
}
