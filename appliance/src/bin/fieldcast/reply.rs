//! A device's reply (`{"ok": …, "command": …, "result" | "error": …}`),
//! parsed leniently: fields this CLI does not know are kept in `raw` and
//! ignored, so a newer device still reads well. Pure.

use serde::Deserialize;
use serde_json::Value;

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ApiError {
    pub code: String,
    #[serde(default)]
    pub field: Option<String>,
    #[serde(default)]
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// The payload as it came, for `--json`.
    pub raw: String,
    pub ok: bool,
    /// The device that answered: replies to a group need it, and name
    /// their sender in `device`. `None` from a device that does not.
    pub device: Option<String>,
    pub result: Value,
    pub error: Option<ApiError>,
}

#[derive(Deserialize)]
struct Wire {
    ok: bool,
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    result: Value,
    #[serde(default)]
    error: Option<ApiError>,
}

impl Reply {
    pub fn parse(payload: &[u8]) -> Result<Reply, String> {
        let raw = std::str::from_utf8(payload)
            .map_err(|_| "it is not UTF-8".to_string())?
            .trim_end()
            .to_string();
        let w: Wire = serde_json::from_str(&raw).map_err(|e| e.to_string())?;
        if !w.ok && w.error.is_none() {
            return Err("it says ok: false and gives no error".into());
        }
        Ok(Reply {
            raw,
            ok: w.ok,
            device: w.device,
            result: w.result,
            error: w.error,
        })
    }

    /// Who answered, as printed: `?` when the reply does not say.
    pub fn sender(&self) -> &str {
        self.device.as_deref().unwrap_or("?")
    }

    /// `error: <code>: <message>` for a refusal, naming the field at
    /// fault when the message does not already start with it.
    pub fn error_line(&self) -> Option<String> {
        let e = self.error.as_ref()?;
        let mut line = format!("error: {}: {}", e.code, e.message);
        if let Some(field) = &e.field
            && !e.message.starts_with(&format!("{field}:"))
        {
            line.push_str(&format!(" (field {field})"));
        }
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_and_refused() {
        let r = Reply::parse(br#"{"ok":true,"command":"push.list","result":[]}"#).unwrap();
        assert!(r.ok && r.result == serde_json::json!([]) && r.error_line().is_none());
        assert_eq!(r.sender(), "?");
        assert_eq!(r.raw, r#"{"ok":true,"command":"push.list","result":[]}"#);

        let r = Reply::parse(
            br#"{"ok":false,"command":"push.stop","device":"enc-07","error":{"code":"not_found","field":"id","message":"id: 'x' is not a push"}}"#,
        )
        .unwrap();
        assert_eq!(r.sender(), "enc-07");
        assert_eq!(
            r.error_line().unwrap(),
            "error: not_found: id: 'x' is not a push"
        );

        let r = Reply::parse(
            br#"{"ok":false,"error":{"code":"invalid_argument","field":"target","message":"bad port"},"new":1}"#,
        )
        .unwrap();
        assert_eq!(
            r.error_line().unwrap(),
            "error: invalid_argument: bad port (field target)"
        );
    }

    #[test]
    fn not_replies() {
        assert!(Reply::parse(b"online").is_err());
        assert!(Reply::parse(br#"{"ok":false}"#).is_err());
        assert!(Reply::parse(br#"{"result":1}"#).is_err());
    }
}
