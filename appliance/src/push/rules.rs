//! Comparisons on variables that hold a scheduled push back or let it run,
//! after MistServer's start and end rules: `[variable, operator, value]`,
//! where the compared value may itself hold variables.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::vars::{self, substitute};

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Equal as text.
    Eq,
    /// Not equal as text.
    Ne,
    /// Numeric comparisons: both sides must be numbers.
    Gt,
    Ge,
    Lt,
    Le,
    /// Lexical (byte-wise) comparisons.
    LexGt,
    LexGe,
    LexLt,
    LexLe,
    Contains,
    NotContains,
    /// The variable has a value (any, even empty).
    Set,
    /// The variable has no value.
    Unset,
}

impl Op {
    fn takes_value(self) -> bool {
        !matches!(self, Op::Set | Op::Unset)
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The variable: `mode`, `$mode` or `${mode}`.
    pub var: String,
    pub op: Op,
    /// What it is compared with; may hold variables (`$limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl Rule {
    /// The variable's bare name.
    pub fn name(&self) -> &str {
        let v = self.var.trim_start_matches('$');
        v.strip_prefix('{')
            .and_then(|v| v.strip_suffix('}'))
            .unwrap_or(v)
    }

    pub fn validate(&self, field: &str) -> Result<(), ConfigError> {
        vars::check_var_name(&format!("{field}.var"), self.name())?;
        match (self.op.takes_value(), &self.value) {
            (true, None) => Err(ConfigError::new(
                format!("{field}.value"),
                format!("operator {:?} needs a value", self.op).to_lowercase(),
            )),
            (false, Some(_)) => Err(ConfigError::new(
                format!("{field}.value"),
                "set and unset take no value",
            )),
            _ => Ok(()),
        }
    }

    /// Whether the rule holds. `Err` says why it cannot be decided (a
    /// variable in the value is unset, a side is not a number); a rule that
    /// cannot be decided does not hold.
    pub fn holds(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<bool, String> {
        let actual = lookup(self.name());
        match self.op {
            Op::Set => return Ok(actual.is_some()),
            Op::Unset => return Ok(actual.is_none()),
            _ => {}
        }
        let Some(actual) = actual else {
            return Err(format!("${} is not set", self.name()));
        };
        let raw = self.value.as_deref().unwrap_or("");
        let expected = substitute(raw, lookup).map_err(|e| e.to_string())?;
        let num = |s: &str| -> Result<f64, String> {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .ok_or_else(|| format!("'{s}' is not a number"))
        };
        Ok(match self.op {
            Op::Eq => actual == expected,
            Op::Ne => actual != expected,
            Op::Gt => num(&actual)? > num(&expected)?,
            Op::Ge => num(&actual)? >= num(&expected)?,
            Op::Lt => num(&actual)? < num(&expected)?,
            Op::Le => num(&actual)? <= num(&expected)?,
            Op::LexGt => actual > expected,
            Op::LexGe => actual >= expected,
            Op::LexLt => actual < expected,
            Op::LexLe => actual <= expected,
            Op::Contains => actual.contains(&expected),
            Op::NotContains => !actual.contains(&expected),
            Op::Set | Op::Unset => unreachable!("decided above"),
        })
    }

    /// The rule as people read it: `$mode eq "on-air"`.
    pub fn describe(&self) -> String {
        let op = serde_json::to_value(self.op)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        match &self.value {
            Some(v) => format!("${} {op} \"{v}\"", self.name()),
            None => format!("${} {op}", self.name()),
        }
    }
}

/// Whether every rule holds; if not, why (the first that does not).
pub fn all_hold(rules: &[Rule], lookup: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
    for r in rules {
        match r.holds(lookup) {
            Ok(true) => {}
            Ok(false) => return Err(format!("rule {} does not hold", r.describe())),
            Err(why) => return Err(format!("rule {} cannot be decided: {why}", r.describe())),
        }
    }
    Ok(())
}

/// Whether stream pattern `pattern` matches `stream`: an exact name,
/// `name+` for every wildcard stream of `name`, or a glob with `*` and `?`.
pub fn stream_matches(pattern: &str, stream: &str) -> bool {
    if let Some(base) = pattern.strip_suffix('+') {
        return stream
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('+'));
    }
    glob(pattern.as_bytes(), stream.as_bytes())
}

/// Glob match with `*` and `?`, iterative with one backtrack point: time
/// linear in the lengths whatever the pattern (a recursive matcher is
/// exponential in the number of stars, and patterns come over MQTT).
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                // Let the last star eat one more character.
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// A stream pattern as config and commands may give it.
pub fn check_pattern(field: &str, p: &str) -> Result<(), ConfigError> {
    let ok = !p.is_empty()
        && p.len() <= 128
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '*' | '?'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!(
                "'{}' is not a stream pattern (a name, name+ for its wildcard streams, or a glob with * and ?)",
                p.chars().take(140).collect::<String>()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "mode" => Some("on-air".into()),
            "viewers" => Some("12".into()),
            "limit" => Some("10".into()),
            "empty" => Some(String::new()),
            _ => None,
        }
    }

    fn rule(var: &str, op: Op, value: Option<&str>) -> Rule {
        Rule {
            var: var.into(),
            op,
            value: value.map(str::to_string),
        }
    }

    #[test]
    fn operators() {
        let h = |var, op, value| rule(var, op, value).holds(&lookup);
        assert_eq!(h("mode", Op::Eq, Some("on-air")), Ok(true));
        assert_eq!(h("$mode", Op::Ne, Some("on-air")), Ok(false));
        assert_eq!(h("${viewers}", Op::Gt, Some("$limit")), Ok(true));
        // Numeric, not lexical: "12" < "9" as text.
        assert_eq!(h("viewers", Op::Gt, Some("9")), Ok(true));
        assert_eq!(h("viewers", Op::LexGt, Some("9")), Ok(false));
        assert_eq!(h("viewers", Op::Le, Some("12.0")), Ok(true));
        assert_eq!(h("viewers", Op::Lt, Some("12")), Ok(false));
        assert_eq!(h("viewers", Op::Ge, Some("12")), Ok(true));
        assert_eq!(h("mode", Op::LexLt, Some("p")), Ok(true));
        assert_eq!(h("mode", Op::LexGe, Some("on-air")), Ok(true));
        assert_eq!(h("mode", Op::LexLe, Some("a")), Ok(false));
        assert_eq!(h("mode", Op::Contains, Some("air")), Ok(true));
        assert_eq!(h("mode", Op::NotContains, Some("air")), Ok(false));
        assert_eq!(h("empty", Op::Set, None), Ok(true));
        assert_eq!(h("nothing", Op::Set, None), Ok(false));
        assert_eq!(h("nothing", Op::Unset, None), Ok(true));
        assert!(
            h("mode", Op::Gt, Some("3"))
                .unwrap_err()
                .contains("'on-air' is not a number")
        );
        assert!(
            h("nothing", Op::Eq, Some("x"))
                .unwrap_err()
                .contains("$nothing is not set")
        );
        assert!(
            h("mode", Op::Eq, Some("$nope"))
                .unwrap_err()
                .contains("$nope")
        );
    }

    #[test]
    fn all_rules_must_hold_and_the_first_failing_is_named() {
        let rules = vec![
            rule("mode", Op::Eq, Some("on-air")),
            rule("viewers", Op::Lt, Some("5")),
        ];
        let e = all_hold(&rules, &lookup).unwrap_err();
        assert_eq!(e, "rule $viewers lt \"5\" does not hold");
        assert!(all_hold(&rules[..1], &lookup).is_ok());
        assert!(all_hold(&[], &lookup).is_ok());
    }

    #[test]
    fn validation_names_the_field() {
        let e = rule("mode", Op::Eq, None).validate("rules[0]").unwrap_err();
        assert_eq!(e.field, "rules[0].value");
        let e = rule("mode", Op::Set, Some("x"))
            .validate("rules[1]")
            .unwrap_err();
        assert_eq!(e.field, "rules[1].value");
        let e = rule("$9", Op::Set, None).validate("rules[2]").unwrap_err();
        assert_eq!(e.field, "rules[2].var");
        let json = r#"{"var":"mode","op":"equals","value":"x"}"#;
        assert!(serde_json::from_str::<Rule>(json).is_err());
    }

    #[test]
    fn stream_patterns() {
        assert!(stream_matches("backup", "backup"));
        assert!(!stream_matches("backup", "backup+1"));
        assert!(stream_matches("cam+", "cam+north"));
        assert!(!stream_matches("cam+", "cam"));
        assert!(!stream_matches("cam+", "camera+x"));
        assert!(stream_matches("cam*", "camera"));
        assert!(stream_matches("c?m", "cam"));
        assert!(!stream_matches("c?m", "cm"));
        assert!(stream_matches("*", "anything+1"));
        assert!(stream_matches("a*b*c", "aXXbYYc"));
        assert!(!stream_matches("a*b*c", "aXXbYY"));
        assert!(stream_matches("*main", "main"));
        assert!(check_pattern("inhibit[0]", "cam+").is_ok());
        assert!(check_pattern("inhibit[0]", "a b").is_err());
    }

    #[test]
    fn hostile_patterns_are_cheap() {
        // Thousands of stars against a long name: answered at once.
        let p = format!("{}x", "*".repeat(2000));
        let t = std::time::Instant::now();
        assert!(!stream_matches(&p, &"a".repeat(64)));
        assert!(t.elapsed() < std::time::Duration::from_millis(100));
    }
}
