//! Record fields read strictly, and image paths kept inside their dataset root.

use serde_json::{Map, Value};
use std::path::{Component, Path, PathBuf};

/// A text field: None when absent or null, the text when a string, and otherwise the JSON type
/// it has instead (for the problem report).
pub fn text(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, &'static str> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(_)) => Err("a number"),
        Some(Value::Bool(_)) => Err("a boolean"),
        Some(Value::Array(_)) => Err("an array"),
        Some(Value::Object(_)) => Err("an object"),
    }
}

/// Whether a record's image is there: a file, or a folder (one DICOM series).
pub fn image_exists(p: &Path) -> bool {
    p.is_file() || p.is_dir()
}

/// `..` and `.` resolved without touching the file system.
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Whether `path` lies inside `root`: with links resolved when both exist, else by the path's
/// own `..` components (an absolute path elsewhere, or `../..`, is outside).
pub fn inside(root: &Path, path: &Path) -> bool {
    match (root.canonicalize(), path.canonicalize()) {
        (Ok(r), Ok(p)) => p.starts_with(r),
        _ => {
            let abs = |p: &Path| {
                if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    std::env::current_dir().unwrap_or_default().join(p)
                }
            };
            normalise(&abs(path)).starts_with(normalise(&abs(root)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_root_are_caught_links_included() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("Images")).unwrap();
        std::fs::write(root.join("Images/a.png"), b"x").unwrap();
        std::fs::write(tmp.path().join("secret.png"), b"x").unwrap();
        assert!(inside(&root, &root.join("Images/a.png")));
        assert!(inside(&root, &root.join("Images/missing.png")));
        assert!(!inside(&root, &root.join("../secret.png")));
        assert!(!inside(&root, &root.join("Images/../../secret.png")));
        assert!(!inside(&root, Path::new("/etc/passwd")));
        std::os::unix::fs::symlink(tmp.path().join("secret.png"), root.join("Images/link.png")).unwrap();
        assert!(!inside(&root, &root.join("Images/link.png")), "a link out of the root is outside");
        let obj: Map<String, Value> = serde_json::from_str(r#"{"q": 123, "s": "x", "n": null}"#).unwrap();
        assert_eq!(text(&obj, "q"), Err("a number"));
        assert_eq!(text(&obj, "s"), Ok(Some("x".into())));
        assert_eq!((text(&obj, "n"), text(&obj, "absent")), (Ok(None), Ok(None)));
    }
}
