//! Pushes: what they are ([`def`]), when they run ([`scheduler`], with
//! [`rules`] on variables), and what happened to them ([`history`]). The
//! controller owns the running ones.

pub mod def;
pub mod history;
pub mod rules;
pub mod scheduler;

pub use def::{PushDef, PushKind, ValidPush};
