//! Time and randomness functions: `timestamp`, `uuidv4`, `formatdate`, `timeadd`, `timecmp`,
//! `legacy_isotime` and `legacy_strftime`, with Terraform's `formatdate` spec language, Go's
//! durations (`parse_duration`) and reference-time layouts (`go_time_format`), and the probe
//! clock (`probe_now`, `mix32`, `mix64`) that gives deterministic values per seed.
//!
//! Every call of a non-deterministic function marks the trace, through `clock_now` or, for
//! `uuidv4`, itself.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, FixedOffset, SecondsFormat, Timelike, Utc};
use hcl::eval::FuncArgs;
use hcl::{Number, Value};

use super::args::{max_args, str_value, want_str};
use super::{mark_nondeterministic, with_frame, Clock, FnResult};

// ---------------------------------------------------------------------------------------------
// Time and randomness
// ---------------------------------------------------------------------------------------------

/// murmur3's 32-bit finaliser: a bijection on u32.
fn mix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// splitmix64's finaliser: a bijection on u64.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The fake "now" of a probe clock: 2001-01-01 plus up to 136 years, injective in the low 32
/// bits of `seed ^ (seed >> 32)` (so in every seed below 2^32).
fn probe_now(seed: u64) -> DateTime<Utc> {
    #[allow(clippy::cast_possible_truncation)]
    let folded = (seed ^ (seed >> 32)) as u32;
    let secs = 978_307_200_i64 + i64::from(mix32(folded));
    DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::UNIX_EPOCH)
}

fn clock_now(func: &str) -> Result<DateTime<Utc>, String> {
    Ok(match mark_nondeterministic(func)? {
        Clock::Real => Utc::now(),
        Clock::Probe(seed) => probe_now(seed),
    })
}

pub(super) fn fn_timestamp(_args: FuncArgs) -> FnResult {
    let now = clock_now("timestamp")?;
    Ok(str_value(now.to_rfc3339_opts(SecondsFormat::Secs, true)))
}

pub(super) fn fn_uuidv4(_args: FuncArgs) -> FnResult {
    let (clock, call) = with_frame("uuidv4", |frame| {
        frame.trace.nondeterministic = true;
        frame.uuid_calls += 1;
        (frame.env.clock, frame.uuid_calls)
    })?;
    let uuid = match clock {
        Clock::Real => uuid::Uuid::new_v4(),
        Clock::Probe(seed) => {
            // All 64 bits of the mixed seed go into bits the version and variant leave free;
            // the call counter fills the last 7 bytes.
            let m = mix64(seed).to_be_bytes();
            let c = call.to_be_bytes();
            let bytes = [
                m[0],
                m[1],
                m[2],
                m[3],
                m[4],
                m[5],
                0x40 | (m[6] >> 4),
                (m[6] << 4) | (m[7] >> 4),
                0x80 | (m[7] & 0x0f),
                c[1],
                c[2],
                c[3],
                c[4],
                c[5],
                c[6],
                c[7],
            ];
            uuid::Uuid::from_bytes(bytes)
        }
    };
    Ok(str_value(uuid.hyphenated().to_string()))
}

fn parse_timestamp(s: &str, what: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(s)
        .map_err(|err| format!("{what} is not a valid RFC 3339 timestamp ({s:?}): {err}"))
}

/// Go's `time.RFC3339` layout: seconds precision, `Z` for a zero offset.
fn go_rfc3339(t: &DateTime<FixedOffset>) -> String {
    if t.offset().local_minus_utc() == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

fn offset_string(secs: i32, colon: bool) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let abs = secs.unsigned_abs();
    let (h, m) = (abs / 3600, (abs % 3600) / 60);
    if colon {
        format!("{sign}{h:02}:{m:02}")
    } else {
        format!("{sign}{h:02}{m:02}")
    }
}

/// Terraform's `formatdate` spec language.
fn format_date(spec: &str, t: &DateTime<FixedOffset>) -> Result<String, String> {
    let chars: Vec<char> = spec.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let hour12 = |h: u32| if h.is_multiple_of(12) { 12 } else { h % 12 };
    let offset = t.offset().local_minus_utc();
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            if chars.get(i + 1) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("unterminated literal '".to_string()),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        out.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&other) => {
                        out.push(other);
                        i += 1;
                    }
                }
            }
            continue;
        }
        if !c.is_ascii_alphabetic() {
            out.push(c);
            i += 1;
            continue;
        }
        let mut n = 1;
        while chars.get(i + n) == Some(&c) {
            n += 1;
        }
        i += n;
        let verb: String = c.to_string().repeat(n);
        let bad = || format!("invalid date format verb {verb:?}");
        match (c, n) {
            ('Y', 4) => {
                let _ = write!(out, "{:04}", t.year());
            }
            ('Y', 2) => {
                let _ = write!(out, "{:02}", t.year().rem_euclid(100));
            }
            ('M', 1) => {
                let _ = write!(out, "{}", t.month());
            }
            ('M', 2) => {
                let _ = write!(out, "{:02}", t.month());
            }
            ('M', 3) => out.push_str(&MONTHS[t.month0() as usize][..3]),
            ('M', 4) => out.push_str(MONTHS[t.month0() as usize]),
            ('D', 1) => {
                let _ = write!(out, "{}", t.day());
            }
            ('D', 2) => {
                let _ = write!(out, "{:02}", t.day());
            }
            ('E', 3) => {
                out.push_str(&WEEKDAYS[t.weekday().num_days_from_monday() as usize][..3]);
            }
            ('E', 4) => out.push_str(WEEKDAYS[t.weekday().num_days_from_monday() as usize]),
            ('h', 1) => {
                let _ = write!(out, "{}", t.hour());
            }
            ('h', 2) => {
                let _ = write!(out, "{:02}", t.hour());
            }
            ('H', 1) => {
                let _ = write!(out, "{}", hour12(t.hour()));
            }
            ('H', 2) => {
                let _ = write!(out, "{:02}", hour12(t.hour()));
            }
            ('A', 2) => out.push_str(if t.hour() < 12 { "AM" } else { "PM" }),
            ('a', 2) => out.push_str(if t.hour() < 12 { "am" } else { "pm" }),
            ('m', 1) => {
                let _ = write!(out, "{}", t.minute());
            }
            ('m', 2) => {
                let _ = write!(out, "{:02}", t.minute());
            }
            ('s', 1) => {
                let _ = write!(out, "{}", t.second());
            }
            ('s', 2) => {
                let _ = write!(out, "{:02}", t.second());
            }
            ('Z', 1) if offset == 0 => out.push('Z'),
            ('Z', 1) | ('Z', 5) => out.push_str(&offset_string(offset, true)),
            ('Z', 3) if offset == 0 => out.push_str("UTC"),
            ('Z', 3) | ('Z', 4) => out.push_str(&offset_string(offset, false)),
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

pub(super) fn fn_formatdate(args: FuncArgs) -> FnResult {
    let spec = want_str(&args[0], "format")?;
    let ts = want_str(&args[1], "timestamp")?;
    let t = parse_timestamp(&ts, "timestamp")?;
    format_date(&spec, &t).map(Value::String)
}

/// Go's `time.ParseDuration`, in nanoseconds.
fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("invalid duration {s:?}");
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    let mut total_int: i128 = 0;
    let mut exact = true;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(bad());
        }
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("missing unit in duration {s:?}")),
            other => return Err(format!("unknown unit {other:?} in duration {s:?}")),
        };
        match num.split_once('.') {
            None => {
                let int: i128 = num.parse().map_err(|_| bad())?;
                total_int = int
                    .checked_mul(scale)
                    .and_then(|v| total_int.checked_add(v))
                    .ok_or_else(bad)?;
            }
            Some(_) => {
                exact = false;
                let f: f64 = num.parse().map_err(|_| bad())?;
                #[allow(clippy::cast_precision_loss)]
                let add = f * scale as f64;
                total += add;
            }
        }
    }
    let nanos = if exact {
        total_int
    } else {
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        let sum = total_int as f64 + total;
        if !sum.is_finite() || sum.abs() > 9.2e18 {
            return Err(format!("duration {s:?} is out of range"));
        }
        #[allow(clippy::cast_possible_truncation)]
        let sum = sum as i128;
        sum
    };
    let nanos = if neg { -nanos } else { nanos };
    i64::try_from(nanos).map_err(|_| format!("duration {s:?} is out of range"))
}

pub(super) fn fn_timeadd(args: FuncArgs) -> FnResult {
    let ts = want_str(&args[0], "timestamp")?;
    let dur = want_str(&args[1], "duration")?;
    let t = parse_timestamp(&ts, "timestamp")?;
    let nanos = parse_duration(&dur)?;
    let result = t
        .checked_add_signed(chrono::Duration::nanoseconds(nanos))
        .ok_or_else(|| "the resulting timestamp is out of range".to_string())?;
    Ok(str_value(go_rfc3339(&result)))
}

pub(super) fn fn_timecmp(args: FuncArgs) -> FnResult {
    let a = parse_timestamp(&want_str(&args[0], "timestamp_a")?, "timestamp_a")?;
    let b = parse_timestamp(&want_str(&args[1], "timestamp_b")?, "timestamp_b")?;
    Ok(Value::Number(Number::from(a.cmp(&b) as i64)))
}

/// Formats `t` with a Go reference-time layout (`2006-01-02T15:04:05Z07:00`).
fn go_time_format(layout: &str, t: &DateTime<Utc>) -> String {
    const CHUNKS: &[&str] = &[
        "January",
        "Monday",
        "Jan",
        "Mon",
        "MST",
        "2006",
        "002",
        "01",
        "02",
        "03",
        "04",
        "05",
        "06",
        "15",
        "_2",
        "PM",
        "pm",
        "-07:00:00",
        "-070000",
        "-07:00",
        "-0700",
        "-07",
        "Z07:00:00",
        "Z070000",
        "Z07:00",
        "Z0700",
        "Z07",
        "1",
        "2",
        "3",
        "4",
        "5",
    ];
    let mut out = String::new();
    let mut rest = layout;
    'outer: while !rest.is_empty() {
        // Fractional seconds: ".000", ",999" etc.
        for sep in ['.', ','] {
            if let Some(after) = rest.strip_prefix(sep) {
                let digit = after.chars().next();
                if matches!(digit, Some('0') | Some('9')) {
                    let d = digit.unwrap_or('0');
                    let n = after.chars().take_while(|c| *c == d).count();
                    let next_is_digit = after[n..].starts_with(|c: char| c.is_ascii_digit());
                    if !next_is_digit {
                        let nanos = format!("{:09}", t.nanosecond() % 1_000_000_000);
                        let mut frac: String = nanos.chars().take(n.min(9)).collect();
                        if d == '9' {
                            frac = frac.trim_end_matches('0').to_string();
                            if !frac.is_empty() {
                                out.push(sep);
                            }
                        } else {
                            out.push(sep);
                        }
                        out.push_str(&frac);
                        rest = &after[n..];
                        continue 'outer;
                    }
                }
            }
        }
        for chunk in CHUNKS {
            if let Some(after) = rest.strip_prefix(chunk) {
                // "Jan" must not match inside "January"-like words already handled above;
                // "Mon" must not be followed by a lowercase letter (e.g. "Month").
                if (*chunk == "Jan" || *chunk == "Mon")
                    && after.starts_with(|c: char| c.is_ascii_lowercase())
                {
                    continue;
                }
                let text = match *chunk {
                    "January" => MONTHS[t.month0() as usize].to_string(),
                    "Jan" => MONTHS[t.month0() as usize][..3].to_string(),
                    "Monday" => WEEKDAYS[t.weekday().num_days_from_monday() as usize].to_string(),
                    "Mon" => WEEKDAYS[t.weekday().num_days_from_monday() as usize][..3].to_string(),
                    "MST" => "UTC".to_string(),
                    "2006" => format!("{:04}", t.year()),
                    "06" => format!("{:02}", t.year().rem_euclid(100)),
                    "002" => format!("{:03}", t.ordinal()),
                    "01" => format!("{:02}", t.month()),
                    "1" => t.month().to_string(),
                    "02" => format!("{:02}", t.day()),
                    "_2" => format!("{:>2}", t.day()),
                    "2" => t.day().to_string(),
                    "15" => format!("{:02}", t.hour()),
                    "03" => format!("{:02}", t.hour12().1),
                    "3" => t.hour12().1.to_string(),
                    "04" => format!("{:02}", t.minute()),
                    "4" => t.minute().to_string(),
                    "05" => format!("{:02}", t.second()),
                    "5" => t.second().to_string(),
                    "PM" => (if t.hour() < 12 { "AM" } else { "PM" }).to_string(),
                    "pm" => (if t.hour() < 12 { "am" } else { "pm" }).to_string(),
                    z if z.starts_with('Z') => "Z".to_string(),
                    "-07:00:00" => "+00:00:00".to_string(),
                    "-070000" => "+000000".to_string(),
                    "-07:00" => "+00:00".to_string(),
                    "-0700" => "+0000".to_string(),
                    "-07" => "+00".to_string(),
                    _ => String::new(),
                };
                out.push_str(&text);
                rest = after;
                continue 'outer;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

pub(super) fn fn_legacy_isotime(args: FuncArgs) -> FnResult {
    max_args(&args, 1)?;
    let layout = match args.first() {
        Some(v) => want_str(v, "format")?,
        None => String::new(),
    };
    let now = clock_now("legacy_isotime")?;
    if layout.is_empty() {
        return Ok(str_value(now.to_rfc3339_opts(SecondsFormat::Secs, true)));
    }
    Ok(str_value(go_time_format(&layout, &now)))
}

pub(super) fn fn_legacy_strftime(args: FuncArgs) -> FnResult {
    let format = want_str(&args[0], "format")?;
    let items: Vec<chrono::format::Item> = chrono::format::StrftimeItems::new(&format).collect();
    if items
        .iter()
        .any(|item| matches!(item, chrono::format::Item::Error))
    {
        return Err(format!("invalid strftime format {format:?}"));
    }
    let now = clock_now("legacy_strftime")?;
    let mut out = String::new();
    write!(out, "{}", now.format_with_items(items.iter()))
        .map_err(|_| format!("cannot format the time with {format:?}"))?;
    Ok(str_value(out))
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::config::functions::test_util::*;
    use crate::config::functions::FunctionEnv;

    // ----- time and randomness ----------------------------------------------------------------

    #[test]
    fn formatdate_spec_language() {
        let ts = "2018-01-02T23:12:01Z";
        let fd = |spec: &str, ts: &str| ev(&format!("formatdate({spec:?}, {ts:?})"));
        assert_eq!(
            fd("DD MMM YYYY hh:mm ZZZ", ts),
            Value::from("02 Jan 2018 23:12 UTC")
        );
        assert_eq!(
            fd("EEEE, DD-MMM-YY hh:mm:ss ZZZ", ts),
            Value::from("Tuesday, 02-Jan-18 23:12:01 UTC")
        );
        assert_eq!(
            fd("EEE, DD MMM YYYY hh:mm:ss ZZZ", "2018-01-02T23:12:01-08:00"),
            Value::from("Tue, 02 Jan 2018 23:12:01 -0800")
        );
        assert_eq!(fd("MMM DD, YYYY", ts), Value::from("Jan 02, 2018"));
        assert_eq!(fd("HH:mmaa", ts), Value::from("11:12pm"));
        assert_eq!(
            fd("H:m:s AA", "2018-01-02T03:04:05Z"),
            Value::from("3:4:5 AM")
        );
        assert_eq!(
            fd("h'h'mm", "2018-01-02T23:12:01-08:00"),
            Value::from("23h12")
        );
        assert_eq!(fd("H 'o''clock'", ts), Value::from("11 o'clock"));
        assert_eq!(fd("''MMMM D", ts), Value::from("'January 2"));
        assert_eq!(fd("YYYYMMDDhhmmss", ts), Value::from("20180102231201"));
        assert_eq!(fd("Z|ZZZZ|ZZZZZ", ts), Value::from("Z|+0000|+00:00"));
        assert_eq!(
            fd("Z|ZZZ", "2018-01-02T23:12:01+05:30"),
            Value::from("+05:30|+0530")
        );
        assert!(err(r#"formatdate("YYY", "2018-01-02T23:12:01Z")"#)
            .contains("invalid date format verb"));
        assert!(err(r#"formatdate("'abc", "2018-01-02T23:12:01Z")"#).contains("unterminated"));
        assert!(err(r#"formatdate("YYYY", "2018-01-02")"#).contains("RFC 3339"));
    }

    #[test]
    fn timeadd_durations() {
        let ta = |ts: &str, d: &str| try_eval(&format!("timeadd({ts:?}, {d:?})"));
        let base = "2017-11-22T00:00:00Z";
        assert_eq!(
            ta(base, "10m").unwrap(),
            Value::from("2017-11-22T00:10:00Z")
        );
        assert_eq!(
            ta(base, "1h30m").unwrap(),
            Value::from("2017-11-22T01:30:00Z")
        );
        assert_eq!(
            ta(base, "-10m").unwrap(),
            Value::from("2017-11-21T23:50:00Z")
        );
        assert_eq!(
            ta(base, "24h").unwrap(),
            Value::from("2017-11-23T00:00:00Z")
        );
        assert_eq!(
            ta(base, "1.5h").unwrap(),
            Value::from("2017-11-22T01:30:00Z")
        );
        assert_eq!(
            ta(base, "1500ms").unwrap(),
            Value::from("2017-11-22T00:00:01Z")
        );
        assert_eq!(ta(base, "0").unwrap(), Value::from(base));
        assert_eq!(
            ta("2017-11-22T00:00:00+02:00", "1h").unwrap(),
            Value::from("2017-11-22T01:00:00+02:00")
        );
        assert!(ta(base, "10").unwrap_err().contains("missing unit"));
        assert!(ta(base, "10y").unwrap_err().contains("unknown unit"));
        assert!(ta(base, "").unwrap_err().contains("invalid duration"));
        assert!(ta(base, "99999999999999h")
            .unwrap_err()
            .contains("out of range"));
        assert_eq!(
            ev(r#"timecmp("2017-11-22T00:00:00Z", "2017-11-22T01:00:00+01:00")"#),
            Value::from(0)
        );
    }

    #[test]
    fn probe_clocks_are_stable_per_seed_and_differ_by_seed() {
        let dir = Path::new("/nonexistent-imgform-dir");
        let src = "[timestamp(), uuidv4(), uuidv4()]";
        let run = |seed| {
            let (result, trace) = eval_with(probe_env(dir, seed), src);
            assert!(trace.nondeterministic);
            result.unwrap()
        };
        let (a1, a2, b) = (run(1), run(1), run(2));
        assert_eq!(a1, a2);
        let (a, b) = (a1.as_array().unwrap(), b.as_array().unwrap());
        assert_ne!(a[0], b[0]);
        assert_ne!(a[1], b[1]);
        assert_ne!(a[1], a[2], "successive uuids differ");
        let ts = a[0].as_str().unwrap();
        assert!(DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
        assert!(ts.ends_with('Z') && ts.len() == 20, "{ts}");
        let uuid = uuid::Uuid::parse_str(a[1].as_str().unwrap()).unwrap();
        assert_eq!(uuid.get_version_num(), 4);
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        // Distinct over many seeds.
        let stamps: std::collections::BTreeSet<_> = (0..2000u64).map(probe_now).collect();
        assert_eq!(stamps.len(), 2000);
        assert_ne!(probe_now(u64::MAX), probe_now(u64::MAX - 1));
    }

    #[test]
    fn real_clock_and_deterministic_trace() {
        let env = FunctionEnv {
            base_dir: PathBuf::from("/"),
            allow_env: false,
            clock: Clock::Real,
        };
        let (result, trace) = eval_with(
            env.clone(),
            "[timestamp(), uuidv4(), legacy_isotime(\"2006-01-02\")]",
        );
        let values = result.unwrap();
        let ts = values.as_array().unwrap()[0].as_str().unwrap().to_string();
        assert!(DateTime::parse_from_rfc3339(&ts).is_ok(), "{ts}");
        assert!(trace.nondeterministic);
        let (_, trace) = eval_with(env, r#"upper("x")"#);
        assert!(!trace.nondeterministic);
    }

    #[test]
    fn legacy_time_functions() {
        let now = probe_now(1);
        let got = ev(r#"legacy_isotime("2006-01-02T15:04:05Z07:00 Mon Jan _2 .000")"#);
        let expected = format!(
            "{} {} {}",
            now.format("%Y-%m-%dT%H:%M:%SZ"),
            now.format("%a %b %e"),
            ".000"
        );
        assert_eq!(got, Value::from(expected));
        assert_eq!(
            ev("legacy_isotime()"),
            Value::from(now.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        );
        assert_eq!(
            ev(r#"legacy_strftime("%Y")"#),
            Value::from(now.format("%Y").to_string())
        );
        assert!(err(r#"legacy_strftime("%Q")"#).contains("invalid strftime"));
    }
}
