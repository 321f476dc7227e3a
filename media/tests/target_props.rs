//! Properties of SRT target parsing over generated input: it never panics,
//! and nothing it says about a target (errors, redacted forms) ever
//! contains the secrets in it.

use fieldcast_media::srt::SrtTarget;
use proptest::prelude::*;

/// Secrets long enough that finding one in a message is no accident.
fn secret() -> impl Strategy<Value = String> {
    "[A-Za-z0-9+/=#!:,._~-]{12,40}"
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        let _ = SrtTarget::try_from(text.as_str());
    }

    #[test]
    fn arbitrary_queries_never_panic(host in "[a-z0-9.]{0,20}", port in 0u32..70000, query in "[ -~]{0,120}") {
        let _ = SrtTarget::try_from(format!("srt://{host}:{port}?{query}").as_str());
    }

    #[test]
    fn secrets_never_appear_in_what_is_shown(
        pass in secret(),
        sid in secret(),
        noise in "[a-z&=%]{0,20}",
        latency in prop::option::of(0u32..100_000),
        keylen in prop::sample::select(vec!["", "&pbkeylen=16", "&pbkeylen=24", "&pbkeylen=32", "&pbkeylen=20"]),
    ) {
        let mut text = format!("srt://ingest.example:9000?streamid={sid}&passphrase={pass}{keylen}");
        if let Some(l) = latency {
            text.push_str(&format!("&latency={l}"));
        }
        text.push_str(&noise);
        match SrtTarget::try_from(text.as_str()) {
            Ok(t) => {
                for shown in [t.redacted(), format!("{t}"), format!("{t:?}")] {
                    prop_assert!(!shown.contains(&pass), "{shown}");
                    prop_assert!(!shown.contains(&sid), "{shown}");
                }
            }
            Err(e) => {
                let e = e.to_string();
                prop_assert!(!e.contains(&pass), "{e}");
                prop_assert!(!e.contains(&sid), "{e}");
            }
        }
    }
}
