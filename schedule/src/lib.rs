//! Schedules of scheduled pushes: a push is on exactly while one of its
//! windows is open. Windows are local times in an IANA zone (right across
//! DST changes), one-off or recurring by RFC 5545 RRULEs, or imported from
//! an .ics calendar. Pure: the daemon reads files and URLs and hands the
//! text over; nothing here does I/O or reads the clock.
//!
//! The data flow: [`ScheduleDef`] (serde, from TOML config or MQTT JSON) →
//! [`Schedule::compile`] (checks every field, parses the calendar) →
//! [`Schedule::active_at`] / [`Schedule::next_change`] for the scheduler,
//! [`Schedule::next_windows`] and [`Interval::describe`] for a preview.
//!
//! Decisions a reader should know:
//! - Local times that do not exist (clocks forward) are read with the offset
//!   from before the gap, so 02:30 becomes 03:30; local times that occur
//!   twice (clocks back) mean the first one (RFC 5545 3.3.5). This applies
//!   to recurring starts too, where RFC 5545 3.8.5.3 would drop the
//!   instance: a push that starts an hour late beats one that silently
//!   does not run.
//! - Daily and coarser rules keep the wall-clock time of DTSTART; hourly
//!   and finer ones step in real time.
//! - A `stop` written as a date-time gives every occurrence the same exact
//!   length (RFC 5545 3.8.5.3); a `stop` written `HH:MM` ends each
//!   occurrence when the wall clock next shows that time.
//! - Answers look at most [`HORIZON_S`] (two years) away from the asked
//!   time.

mod calendar;
mod def;
mod error;
mod expand;
mod ics;
mod rrule;
mod schedule;
mod series;
mod text;

pub use def::{ICS_REFRESH_RANGE, IcsSource, ScheduleDef, WindowDef};
pub use error::ScheduleError;
pub use schedule::{HORIZON_S, Interval, Schedule};
