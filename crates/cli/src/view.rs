//! The DICOM display flags `ask`, `eval`, `data show` and `data dicom` share.

use clap::Args;
use data::dicom::Window;
use data::image::ImageOptions;

#[derive(Args, Clone, Debug, Default)]
pub struct ViewArgs {
    /// DICOM window replacing the file's own (grey images; raster images are unaffected): a CT
    /// preset in Hounsfield units — lung (-600/1500), mediastinum (50/350), bone (400/1800),
    /// brain (40/80), abdomen (50/400), liver (30/150), soft-tissue (40/375) — or CENTRE,WIDTH
    /// (e.g. --window=-600,1500). Without it: the file's window, else its VOI LUT, else the
    /// frame's value range.
    #[arg(long, value_name = "PRESET|C,W", value_parser = parse_window, allow_hyphen_values = true)]
    pub window: Option<Window>,
    /// The frame of a multi-frame DICOM file, or the slice of a series folder (0-based, in
    /// anatomical order); default the middle one.
    #[arg(long, visible_alias = "slice", value_name = "N")]
    pub frame: Option<usize>,
}

impl ViewArgs {
    pub fn options(&self) -> ImageOptions {
        ImageOptions { window: self.window, frame: self.frame, slices: None }
    }
}

fn parse_window(s: &str) -> Result<Window, String> {
    Window::parse(s).map_err(|e| e.to_string())
}
