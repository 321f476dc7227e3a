//! Encoded access units as they leave the encoder.

use serde::Serialize;

/// Which elementary stream a frame belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Track {
    Video,
    Audio,
}

/// One encoded access unit (an H.264 access unit or an AAC frame).
///
/// It wraps the GStreamer buffer the encoder produced: cloning a frame or
/// handing it to several outputs only bumps reference counts. `caps` is the
/// caps the buffer was negotiated with (also reference-counted), so an output
/// can configure its `appsrc` from the first frame it sees and follow a
/// change of resolution without a side channel.
#[derive(Clone, Debug)]
pub struct EncodedFrame {
    pub track: Track,
    pub buffer: gst::Buffer,
    pub caps: gst::Caps,
    /// A video frame that starts a GOP (an IDR with its parameter sets in
    /// front, as `h264parse config-interval=-1` emits it). Audio frames are
    /// all keyframes.
    pub keyframe: bool,
    /// Capture generation: it changes when the capture pipeline is rebuilt,
    /// and timestamps of one epoch do not continue those of another.
    pub epoch: u64,
    /// Base time of the capture pipeline of this epoch. Outputs run on the
    /// same (system) clock with this base time, so the encoder's timestamps
    /// are valid running times in every output pipeline unchanged.
    pub base_time: gst::ClockTime,
}

impl EncodedFrame {
    /// Wraps a buffer from an appsink, reading the keyframe flag from it.
    pub fn new(
        track: Track,
        buffer: gst::Buffer,
        caps: gst::Caps,
        epoch: u64,
        base_time: gst::ClockTime,
    ) -> Self {
        let keyframe = match track {
            Track::Video => !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
            Track::Audio => true,
        };
        Self {
            track,
            buffer,
            caps,
            keyframe,
            epoch,
            base_time,
        }
    }

    pub fn pts(&self) -> Option<gst::ClockTime> {
        self.buffer.pts()
    }

    pub fn dts(&self) -> Option<gst::ClockTime> {
        self.buffer.dts()
    }

    pub fn size(&self) -> usize {
        self.buffer.size()
    }

    /// True for a video keyframe: the only place a new or recovering output
    /// may start.
    pub fn starts_gop(&self) -> bool {
        self.track == Track::Video && self.keyframe
    }

    /// The frame with its timestamps moved later by `by` (onto the timeline
    /// of an output started under an earlier base time). Only the buffer's
    /// metadata is copied; the data is shared.
    pub fn shifted(self, by: gst::ClockTime) -> EncodedFrame {
        if by.is_zero() {
            return self;
        }
        let mut frame = self;
        let b = frame.buffer.make_mut();
        b.set_pts(b.pts().map(|t| t + by));
        b.set_dts(b.dts().map(|t| t + by));
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframe_flag_follows_delta_unit() {
        gst::init().unwrap();
        let caps = gst::Caps::builder("video/x-h264").build();
        let key = gst::Buffer::from_slice(vec![0u8; 4]);
        let mut delta = gst::Buffer::from_slice(vec![0u8; 4]);
        delta
            .get_mut()
            .unwrap()
            .set_flags(gst::BufferFlags::DELTA_UNIT);
        assert!(
            EncodedFrame::new(Track::Video, key, caps.clone(), 0, gst::ClockTime::ZERO)
                .starts_gop()
        );
        assert!(
            !EncodedFrame::new(
                Track::Video,
                delta.clone(),
                caps.clone(),
                0,
                gst::ClockTime::ZERO
            )
            .starts_gop()
        );
        // Audio frames are independently decodable but never start a GOP.
        let a = EncodedFrame::new(Track::Audio, delta, caps, 0, gst::ClockTime::ZERO);
        assert!(a.keyframe && !a.starts_gop());
    }

    #[test]
    fn clone_shares_the_buffer() {
        gst::init().unwrap();
        let caps = gst::Caps::builder("video/x-h264").build();
        let f = EncodedFrame::new(
            Track::Video,
            gst::Buffer::from_slice(vec![1u8; 64]),
            caps,
            0,
            gst::ClockTime::ZERO,
        );
        let g = f.clone();
        assert_eq!(f.buffer.as_ptr(), g.buffer.as_ptr());
    }
}
