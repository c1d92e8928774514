//! Reading a JSON file into a typed value, with errors that name the file: every JSON file medr1
//! reads (configs, indexes, trainer states, adapters, summaries, requests) goes through here.

use crate::error::{Result, VlmError};
use serde::de::DeserializeOwned;
use std::path::Path;

/// Reads `path` as JSON. `what` says what the file should be ("a trainer state"), for the error
/// when it is not; a file that cannot be read says so with the OS's reason.
pub fn read_json<T: DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| VlmError::file(path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| VlmError::file(path, format!("not {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file_and_what_it_should_be() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.json");
        let missing = read_json::<serde_json::Value>(&f, "a config").unwrap_err().to_string();
        assert!(missing.contains("x.json") && missing.contains("cannot read"), "{missing}");
        std::fs::write(&f, "{oops").unwrap();
        let bad = read_json::<serde_json::Value>(&f, "a config").unwrap_err().to_string();
        assert!(bad.contains("x.json: not a config"), "{bad}");
        std::fs::write(&f, "[1, 2]").unwrap();
        assert_eq!(read_json::<Vec<u32>>(&f, "a list").unwrap(), [1, 2]);
    }
}
