//! 5-field cron schedules (`minute hour day-of-month month day-of-week`, UTC), as Kubernetes CronJobs
//! accept them after Convox's compatibility rewrite.
//!
//! This module owns parsing and matching: lists (`1,5`), ranges (`1-5`), steps (`*/15`, `1-30/5`,
//! `5/10`), month and weekday names (`JAN`, `mon`), `7` as Sunday, and the `@hourly`-style macros.
//! It must never know about timers or manifests, and never panic on any input.

use std::fmt;

/// A parsed schedule. Each field is a bit set of the values it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    days_of_week: u8,
    /// Day-of-month was `*` (or `?`): the day matches on day-of-week alone.
    dom_any: bool,
    /// Day-of-week was `*` (or `?`): the day matches on day-of-month alone.
    dow_any: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    names_from: u32,
}

const SPECS: [FieldSpec; 5] = [
    FieldSpec {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
        names_from: 0,
    },
    FieldSpec {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
        names_from: 0,
    },
    FieldSpec {
        name: "day-of-month",
        min: 1,
        max: 31,
        names: &[],
        names_from: 0,
    },
    FieldSpec {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTHS,
        names_from: 1,
    },
    FieldSpec {
        name: "day-of-week",
        min: 0,
        max: 7,
        names: &DAYS,
        names_from: 0,
    },
];

fn value(spec: &FieldSpec, s: &str) -> Result<u32, String> {
    if let Some(i) = spec.names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(i as u32 + spec.names_from);
    }
    let v: u32 = s
        .parse()
        .map_err(|_| format!("{} value `{s}` is not a number", spec.name))?;
    if v < spec.min || v > spec.max {
        return Err(format!(
            "{} value {v} is out of range {}-{}",
            spec.name, spec.min, spec.max
        ));
    }
    Ok(v)
}

fn field(spec: &FieldSpec, text: &str) -> Result<u64, String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| format!("{} step `{s}` is not a number", spec.name))?;
                if step == 0 {
                    return Err(format!("{} step must be at least 1", spec.name));
                }
                (r, Some(step))
            }
            None => (part, None),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(spec, a)?, value(spec, b)?);
            if a > b {
                return Err(format!("{} range {range} goes backwards", spec.name));
            }
            (a, b)
        } else if range.is_empty() {
            return Err(format!("{} has an empty entry", spec.name));
        } else {
            let v = value(spec, range)?;
            // `5/10` means from 5 to the maximum, every 10.
            (v, if step.is_some() { spec.max } else { v })
        };
        let step = step.unwrap_or(1);
        let mut v = lo;
        while v <= hi {
            bits |= 1u64 << v;
            match v.checked_add(step) {
                Some(n) => v = n,
                None => break,
            }
        }
    }
    Ok(bits)
}

/// Why a schedule does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError(pub String);

impl std::error::Error for CronError {}

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Cron {
    /// Parse a 5-field schedule or one of `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
    /// `@midnight`, `@hourly`.
    pub fn parse(schedule: &str) -> Result<Cron, CronError> {
        Self::parse_fields(schedule).map_err(CronError)
    }

    fn parse_fields(schedule: &str) -> Result<Cron, String> {
        let expanded = match schedule.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with('@') => {
                return Err(format!(
                    "`{s}` is not supported; use a 5-field schedule or @hourly, @daily, @weekly, @monthly, @yearly"
                ))
            }
            s => s,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "schedule has {} field{}, needs 5 (minute hour day-of-month month day-of-week)",
                fields.len(),
                if fields.len() == 1 { "" } else { "s" }
            ));
        }
        let mut bits = [0u64; 5];
        for (i, (spec, text)) in SPECS.iter().zip(&fields).enumerate() {
            bits[i] = field(spec, text)?;
        }
        // 7 is Sunday too.
        let mut dow = bits[4];
        if dow & (1 << 7) != 0 {
            dow = (dow | 1) & 0x7f;
        }
        let any = |t: &str| t.starts_with('*') || t.starts_with('?');
        Ok(Cron {
            minutes: bits[0],
            hours: bits[1] as u32,
            days_of_month: bits[2] as u32,
            months: bits[3] as u16,
            days_of_week: dow as u8,
            dom_any: any(fields[2]),
            dow_any: any(fields[4]),
        })
    }

    /// Does a moment match? `month` and `day_of_month` start at 1; `day_of_week` is 0 (Sunday)..6.
    /// When both day fields are restricted, either may match (standard cron).
    pub fn matches(
        &self,
        minute: u32,
        hour: u32,
        day_of_month: u32,
        month: u32,
        day_of_week: u32,
    ) -> bool {
        let bit = |set: u64, v: u32| v < 64 && set & (1u64 << v) != 0;
        if !bit(self.minutes, minute)
            || !bit(self.hours as u64, hour)
            || !bit(self.months as u64, month)
        {
            return false;
        }
        let dom = bit(self.days_of_month as u64, day_of_month);
        let dow = bit(self.days_of_week as u64, day_of_week % 7);
        if self.dom_any || self.dow_any {
            dom && dow
        } else {
            dom || dow
        }
    }

    fn list(bits: u64, lo: u32, hi: u32) -> Vec<u32> {
        (lo..=hi).filter(|v| bits & (1u64 << v) != 0).collect()
    }

    /// Allowed minutes (0..59).
    pub fn minutes(&self) -> Vec<u32> {
        Self::list(self.minutes, 0, 59)
    }
    /// Allowed hours (0..23).
    pub fn hours(&self) -> Vec<u32> {
        Self::list(self.hours as u64, 0, 23)
    }
    /// Allowed days of the month (1..31).
    pub fn days_of_month(&self) -> Vec<u32> {
        Self::list(self.days_of_month as u64, 1, 31)
    }
    /// Allowed months (1..12).
    pub fn months(&self) -> Vec<u32> {
        Self::list(self.months as u64, 1, 12)
    }
    /// Allowed days of the week (0 = Sunday..6).
    pub fn days_of_week(&self) -> Vec<u32> {
        Self::list(self.days_of_week as u64, 0, 6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        let c = Cron::parse("*/15 3 * * *").unwrap();
        assert_eq!(c.minutes(), vec![0, 15, 30, 45]);
        assert_eq!(c.hours(), vec![3]);
        assert!(c.matches(30, 3, 10, 4, 2));
        assert!(!c.matches(31, 3, 10, 4, 2));

        let c = Cron::parse("0 9-17/4 1,15 JAN-mar mon-fri").unwrap();
        assert_eq!(c.hours(), vec![9, 13, 17]);
        assert_eq!(c.months(), vec![1, 2, 3]);
        assert_eq!(c.days_of_week(), vec![1, 2, 3, 4, 5]);
        // both day fields restricted: either matches
        assert!(c.matches(0, 9, 1, 1, 0));
        assert!(c.matches(0, 9, 2, 1, 1));
        assert!(!c.matches(0, 9, 2, 1, 0));

        assert_eq!(Cron::parse("0 0 * * 7").unwrap().days_of_week(), vec![0]);
        assert_eq!(
            Cron::parse("5/20 * * * *").unwrap().minutes(),
            vec![5, 25, 45]
        );
        assert_eq!(
            Cron::parse("@daily").unwrap(),
            Cron::parse("0 0 * * *").unwrap()
        );
    }

    #[test]
    fn rejects_bad_schedules() {
        for s in [
            "",
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5-1 * * * *",
            "a * * * *",
            "1,,2 * * * *",
            "L * * * *",
            "@every 5m",
        ] {
            assert!(Cron::parse(s).is_err(), "{s:?} should fail");
        }
    }
}
