//! The daemon's command line: `--check` and what a bad config file gets.

use std::process::Command;

fn fieldcastd(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fieldcastd"))
        .args(args)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn check_prints_the_pipeline_and_no_secret() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/fieldcast.toml");
    let (code, out) = fieldcastd(&["--config", example, "--check"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("input main: videotestsrc"), "{out}");
    assert!(out.contains("x264enc"), "{out}");
    assert!(
        out.contains(
            "output program (auto): stream main -> srt://0.0.0.0:9000?mode=listener&latency=200"
        ),
        "{out}"
    );
    assert!(out.contains("passphrase=***"), "{out}");
    assert!(
        !out.contains("change-me-please") && !out.contains("live/encoder-01"),
        "{out}"
    );
    // The printed pipeline is one GStreamer itself accepts.
    let line = out.lines().find(|l| l.starts_with("input main: ")).unwrap();
    let description = line.trim_start_matches("input main: ");
    gst::init().unwrap();
    gst::parse::launch(description).unwrap();
}

#[test]
fn bad_config_names_the_field_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[device]\nid = \"x\"\n[[inputs]]\nname = \"main\"\n[inputs.encode]\nwidth = 641\nheight = 360\nframerate = 30\nbitrate_kbps = 1000\ngop_frames = 30\nprofile = \"high\"\naudio_bitrate_kbps = 96\n",
    )
    .unwrap();
    let (code, out) = fieldcastd(&["--config", path.to_str().unwrap(), "--check"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("inputs[0].encode.width") && out.contains("641"),
        "{out}"
    );
    let (code, out) = fieldcastd(&["--config", "/nonexistent/fieldcast.toml"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("/nonexistent/fieldcast.toml"), "{out}");
}
