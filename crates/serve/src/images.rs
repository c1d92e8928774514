//! Images in chat requests: base64 data URLs (PNG, JPEG, DICOM, ...) or, only when the server was
//! started with `--allow-local-files DIR`, files inside DIR. Sizes are checked before decoding
//! (bytes) and before decompressing (pixels, from the header), so a small file cannot expand
//! into a huge image.

use crate::error::ApiError;
use axum::http::StatusCode;
use base64::Engine;
use std::path::{Path, PathBuf};
use vlm::image_processor::RgbImage;

#[derive(Debug, Clone)]
pub struct ImageLimits {
    pub max_bytes: usize,
    pub max_pixels: u64,
    /// Folder local image paths must lie in; None refuses all local paths.
    pub allow_local_files: Option<PathBuf>,
}

/// Decodes one `image_url` into an RGB image.
pub fn load(url: &str, limits: &ImageLimits) -> Result<RgbImage, ApiError> {
    let bad = |m: String| ApiError::invalid(m).param("messages").code("invalid_image");
    let (bytes, what) = if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').ok_or_else(|| bad("malformed data URL: no comma".into()))?;
        if !meta.ends_with(";base64") {
            return Err(bad("data URLs must be base64-encoded (`data:<type>;base64,...`)".into()));
        }
        // Base64 carries 3 bytes per 4 characters: refuse before decoding.
        if data.len() / 4 * 3 > limits.max_bytes + 3 {
            return Err(ApiError::too_large(format!(
                "image larger than the server's limit of {} bytes",
                limits.max_bytes
            ))
            .param("messages"));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| bad(format!("invalid base64 in data URL: {e}")))?;
        (bytes, "image in data URL".to_string())
    } else if url.starts_with("http://") || url.starts_with("https://") {
        return Err(bad("remote image URLs are not fetched by medr1; send the image as a base64 data URL".into()));
    } else {
        let path = url.strip_prefix("file://").unwrap_or(url);
        let path = local_path(Path::new(path), limits)?;
        let meta = std::fs::metadata(&path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
        if meta.len() as usize > limits.max_bytes {
            return Err(ApiError::too_large(format!(
                "image larger than the server's limit of {} bytes",
                limits.max_bytes
            ))
            .param("messages"));
        }
        let bytes = std::fs::read(&path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
        (bytes, path.display().to_string())
    };
    if bytes.len() > limits.max_bytes {
        return Err(ApiError::too_large(format!("image larger than the server's limit of {} bytes", limits.max_bytes))
            .param("messages"));
    }
    if !data::dicom::is_dicom(&bytes) {
        let dims = image::ImageReader::new(std::io::Cursor::new(&bytes))
            .with_guessed_format()
            .ok()
            .and_then(|r| r.into_dimensions().ok());
        let Some((w, h)) = dims else {
            return Err(bad(format!("{what}: not a PNG, JPEG, BMP, TIFF, GIF, WebP or DICOM image")));
        };
        check_pixels(w as u64 * h as u64, limits)?;
    }
    let img = data::image::decode(&bytes, &what).map_err(|e| bad(format!("{e:#}")))?;
    check_pixels(img.width as u64 * img.height as u64, limits)?;
    Ok(img)
}

fn check_pixels(n: u64, limits: &ImageLimits) -> Result<(), ApiError> {
    if n > limits.max_pixels {
        return Err(ApiError::invalid(format!(
            "image has {n} pixels, more than the server's limit of {}",
            limits.max_pixels
        ))
        .param("messages")
        .code("image_too_large"));
    }
    Ok(())
}

/// The canonical path of a local image, which must lie inside the allowed folder.
fn local_path(p: &Path, limits: &ImageLimits) -> Result<PathBuf, ApiError> {
    let Some(dir) = &limits.allow_local_files else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "local image paths are refused (start the server with --allow-local-files DIR to allow a folder)",
        )
        .param("messages"));
    };
    let dir =
        std::fs::canonicalize(dir).map_err(|e| ApiError::internal(format!("allowed folder {}: {e}", dir.display())))?;
    let full = if p.is_absolute() { p.to_path_buf() } else { dir.join(p) };
    // `inside` resolves `..` and symbolic links, so the check cannot be walked around; outside the
    // folder is refused the same way whether or not the file exists, so the answer cannot be
    // used to probe the file system.
    if !data::paths::inside(&dir, &full) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            format!("{} is outside the allowed folder", p.display()),
        )
        .param("messages"));
    }
    let real = std::fs::canonicalize(&full).map_err(|_| {
        ApiError::invalid(format!("image file not found: {}", p.display())).param("messages").code("invalid_image")
    })?;
    Ok(real)
}
