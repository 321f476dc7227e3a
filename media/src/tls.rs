//! Which TLS certificates outputs trust.
//!
//! `rtmp2sink` (and every other GStreamer element that speaks TLS) checks
//! the server's certificate against GIO's default TLS database: the system's
//! CA bundle. Ingest servers of a private network often have certificates
//! from the operator's own CA; `[tls] ca_file` adds that CA. GIO takes one
//! file for its database, so the system bundle and the extra CAs are written
//! together into one file under the data directory, and that file becomes
//! the process's default database.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gio::prelude::*;

/// Where Debian (and Yocto's `ca-certificates`) keep the system bundle.
pub const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";

/// The extra CAs (PEM), for HTTP clients of outputs (WHIP) that do not go
/// through GIO.
static EXTRA_CA: OnceLock<Vec<u8>> = OnceLock::new();

/// The extra CAs `[tls] ca_file` gave, if any.
pub fn extra_ca() -> Option<&'static [u8]> {
    EXTRA_CA.get().map(Vec::as_slice)
}

/// Checks that `ca_file` is PEM with at least one certificate. The error
/// names the file, never its content.
pub fn check_ca_file(ca_file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(ca_file)
        .map_err(|e| format!("reading {}: {e}", ca_file.display()))?;
    if !text.contains(PEM_BEGIN) {
        return Err(format!(
            "{} holds no PEM certificate ('{PEM_BEGIN}')",
            ca_file.display()
        ));
    }
    Ok(text)
}

/// Makes outputs trust the system's CAs plus those in `ca_file`. The
/// combined bundle is written (atomically) to `work_dir/trusted-ca.pem`.
pub fn trust_extra_ca(ca_file: &Path, work_dir: &Path) -> Result<PathBuf, String> {
    let extra = check_ca_file(ca_file)?;
    let mut bundle = std::fs::read_to_string(SYSTEM_BUNDLE).unwrap_or_default();
    if !bundle.is_empty() && !bundle.ends_with('\n') {
        bundle.push('\n');
    }
    bundle.push_str(&extra);
    std::fs::create_dir_all(work_dir)
        .map_err(|e| format!("creating {}: {e}", work_dir.display()))?;
    let path = work_dir.join("trusted-ca.pem");
    let tmp = work_dir.join(".trusted-ca.pem.tmp");
    std::fs::write(&tmp, bundle)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    let db = gio::TlsFileDatabase::new(&path)
        .map_err(|e| format!("loading {}: {e}", ca_file.display()))?;
    gio::TlsBackend::default().set_default_database(Some(&db));
    let _ = EXTRA_CA.set(extra.into_bytes());
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("fc-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("ca.pem");
        std::fs::write(&f, "not a certificate").unwrap();
        let e = check_ca_file(&f).unwrap_err();
        assert!(e.contains("ca.pem holds no PEM certificate"), "{e}");
        assert!(!e.contains("not a certificate"));
        let e = check_ca_file(&dir.join("missing.pem")).unwrap_err();
        assert!(e.contains("missing.pem"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
