//! Every request example in docs/mqtt.md, sent in order to a real daemon
//! through a real broker: the contract document cannot drift from the code.

mod support;

use support::*;

const DEV: &str = "docs-test";

/// `(command, payload)` of every ```` ```json request <command> ```` block.
fn examples(doc: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if let Some(cmd) = line.trim().strip_prefix("```json request ") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            out.push((cmd.trim().to_string(), body.join("\n")));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_examples_all_work() {
    let _g = serial().await;
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/mqtt.md")).unwrap();
    let ex = examples(&doc);
    let commands: std::collections::BTreeSet<_> = ex.iter().map(|(c, _)| c.as_str()).collect();

    let mut rig = Rig::start(DEV, "").await;
    // Every command the daemon knows (its unknown_command reply lists
    // them) has an example.
    let r = rig.cmd("no.such.command", "").await;
    let known = r["error"]["message"]
        .as_str()
        .and_then(|m| m.split("(known: ").nth(1))
        .map(|k| k.trim_end_matches(')'))
        .unwrap_or_else(|| panic!("no command list in {r}"));
    for c in known.split(", ") {
        assert!(commands.contains(c), "docs/mqtt.md has no example of {c}");
    }
    assert!(known.split(", ").count() >= 19, "{known}");
    let (p1, p2) = (free_port(), free_port());
    for (cmd, payload) in ex {
        let payload = payload
            .replace(":9001", &format!(":{p1}"))
            .replace(":9002", &format!(":{p2}"));
        serde_json::from_str::<serde_json::Value>(&payload)
            .unwrap_or_else(|e| panic!("docs example of {cmd} is not JSON: {e}\n{payload}"));
        let r = rig.cmd(&cmd, &payload).await;
        assert_eq!(r["ok"], true, "docs example {cmd} {payload} failed: {r}");
        assert_eq!(r["command"], cmd.as_str());
    }
}
