//! vivid, the kernel's virtual video driver (docs.kernel.org/admin-guide/
//! media/vivid.rst): its first capture node with an HDMI input, for the
//! tests that need one. Where the kernel has none (it cannot load modules
//! here), the test says it was skipped and why.

use fieldcast_capture::v4l2::{self, Device};

/// "DV Timings Signal Mode": the HDMI input's signal (no signal, no lock,
/// out of range, the current or a selected format).
pub const SIGNAL_MODE: &str = "DV Timings Signal Mode";

/// A vivid capture node and the index of its HDMI input.
pub fn vivid_hdmi() -> Option<(std::path::PathBuf, u32)> {
    for path in v4l2::video_nodes() {
        let Ok(dev) = Device::open(&path) else {
            continue;
        };
        if dev.capability().driver != "vivid" || dev.capability().capture_buf_type().is_none() {
            continue;
        }
        if let Ok(inputs) = dev.inputs()
            && let Some(hdmi) = inputs.iter().find(|i| i.has_dv_timings())
        {
            return Some((path, hdmi.index));
        }
    }
    eprintln!(
        "skipped: no vivid device (this kernel cannot load modules); the QEMU HIL tests cover it"
    );
    None
}
