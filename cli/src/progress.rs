//! A progress bar for conversions, shown only on a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lazy_convert::{ConvertProgress, ConvertedLayer};

/// Draws one bar over the source bytes of every layer.
pub struct ConvertBar {
    bar: ProgressBar,
}

impl ConvertBar {
    /// A bar, sized when the conversion starts; hidden when stderr is not a terminal.
    pub fn new() -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        if !std::io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:16} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        Self { bar }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Default for ConvertBar {
    fn default() -> Self {
        Self::new()
    }
}

impl ConvertProgress for ConvertBar {
    fn image_started(&self, _layers: usize, bytes: u64) {
        self.bar.set_length(bytes);
    }

    fn layer_started(&self, index: usize, count: usize, _size: u64) {
        self.bar.set_message(format!("layer {}/{count}", index + 1));
    }

    fn bytes_read(&self, n: u64) {
        self.bar.inc(n);
    }

    fn layer_done(&self, index: usize, layer: &ConvertedLayer) {
        self.bar.println(format!(
            "layer {}: {} converted",
            index + 1,
            short(&layer.digest)
        ));
    }
}

/// `sha256:0123456789ab` (12 hex digits), as docker shows ids.
pub fn short(digest: &str) -> &str {
    let end = digest.find(':').map_or(12, |i| i + 13).min(digest.len());
    &digest[..end]
}
