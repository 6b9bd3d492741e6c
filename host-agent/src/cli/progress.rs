//! Progress bars of the commands (indicatif), shown only on a terminal and only for large
//! inputs.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Inputs smaller than this get no bar.
pub const MIN_BYTES_FOR_BAR: u64 = 256 * 1024 * 1024;

/// A byte-count bar on stderr when stderr is a terminal and `total` is large; hidden
/// otherwise.
pub fn bytes_bar(total: u64, message: &str) -> ProgressBar {
    if total < MIN_BYTES_FOR_BAR || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message.to_owned());
    bar
}

/// Drives the byte bar of an image conversion (made at `Started`, hidden for small
/// inputs or off a terminal).
pub fn conversion_progress(
    bar: &std::sync::OnceLock<ProgressBar>,
    event: layerpass::convert::ConvertEvent,
) {
    use layerpass::convert::ConvertEvent;
    match event {
        ConvertEvent::Started { total_bytes, .. } => {
            bar.get_or_init(|| bytes_bar(total_bytes, "converting"));
        }
        ConvertEvent::Layer { index, layers } => {
            if let Some(b) = bar.get() {
                b.set_message(format!("layer {}/{layers}", index + 1));
            }
        }
        ConvertEvent::Read { bytes } => {
            if let Some(b) = bar.get() {
                b.inc(bytes);
            }
        }
        _ => {}
    }
}
