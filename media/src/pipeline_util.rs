//! Small helpers every pipeline owner here needs, capture and outputs alike.

use futures::{FutureExt, StreamExt};
use gst::prelude::*;

/// Moves a pipeline to a state off the async runtime: some elements do
/// blocking work in their state changes (`srtsink` connects, `v4l2src`
/// opens and probes the device), which must not stall a runtime worker.
pub async fn change_state(pipeline: &gst::Pipeline, state: gst::State) -> Result<(), String> {
    let p = pipeline.clone();
    tokio::task::spawn_blocking(move || p.set_state(state).map(|_| ()))
        .await
        .map_err(|e| format!("state change task: {e}"))?
        .map_err(|_| format!("pipeline refused to go to {state:?}"))
}

/// A bus error as one line for operators: the message, and the detail
/// lines of GStreamer's debug text when there are any (its first line is
/// only the source location).
pub fn error_reason(e: &gst::message::Error) -> String {
    let mut s = e.error().to_string();
    if let Some(d) = e.debug()
        && let Some(last) = d.lines().skip(1).last()
    {
        let last = last.trim();
        if !last.is_empty() && !s.contains(last) {
            s.push_str(": ");
            s.push_str(last);
        }
    }
    s
}

/// The first error already posted on the bus, if any.
pub fn pending_error(bus: &mut gst::bus::BusStream) -> Option<String> {
    while let Some(Some(msg)) = bus.next().now_or_never() {
        if let gst::MessageView::Error(e) = msg.view() {
            return Some(error_reason(e));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_keeps_details_not_location() {
        gst::init().unwrap();
        let msg = gst::message::Error::builder(gst::CoreError::Failed, "Internal data stream error.")
            .debug("../libs/gst/base/gstbasesrc.c(3132): gst_base_src_loop (): /GstPipeline:p/GstV4l2Src:src:\nstreaming stopped, reason not-negotiated (-4)")
            .build();
        let gst::MessageView::Error(e) = msg.view() else {
            unreachable!()
        };
        assert_eq!(
            error_reason(e),
            "Internal data stream error.: streaming stopped, reason not-negotiated (-4)"
        );
    }
}
