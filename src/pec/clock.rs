//! Time for the PEC domain: an injectable [`Clock`] and Italian civil time.
//!
//! Every receipt, envelope and log entry carries a *riferimento temporale*
//! in Italian local time (`pec-spec.md` §4 `data`, §8). Europe/Rome follows
//! the EU rule (CET +0100; CEST +0200 from the last Sunday of March 01:00 UTC
//! to the last Sunday of October 01:00 UTC), which is computed here by hand so
//! that the domain needs no time-zone database and no date crate, and so that
//! tests can pin "now" with [`FixedClock`].

use super::daticert::DataOra;

/// Source of the current time.
pub trait Clock: Send + Sync {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    fn unix_ms(&self) -> i64;

    /// Seconds since 1970-01-01T00:00:00Z.
    fn now(&self) -> i64 {
        self.unix_ms().div_euclid(1000)
    }
}

/// The system clock (the one place the domain may read real time from).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_ms(&self) -> i64 {
        since_epoch().as_millis() as i64
    }
}

/// A clock that stands still until the test moves it (timers and expiry
/// tested without sleeping).
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    /// A clock at `ms` (Unix milliseconds).
    pub fn at(ms: i64) -> ManualClock {
        ManualClock(std::sync::atomic::AtomicI64::new(ms))
    }

    /// Move it forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn unix_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Time since the Unix epoch from the system clock. The only read of real
/// time in the crate (clippy.toml forbids `SystemTime::now` elsewhere), so a
/// test or a replay can find every place that depends on it.
#[allow(clippy::disallowed_methods)]
pub fn since_epoch() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// A clock stopped at a given instant (tests, replays).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub i64);

impl Clock for FixedClock {
    fn unix_ms(&self) -> i64 {
        self.0 * 1000
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

/// Weekday of a day count, 0 = Sunday.
fn weekday(days: i64) -> u32 {
    // 1970-01-01 was a Thursday.
    (days + 4).rem_euclid(7) as u32
}

/// Unix time of 01:00 UTC on the last Sunday of `month` in `year`.
fn last_sunday_0100_utc(year: i64, month: u32) -> i64 {
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let last = days_from_civil(ny, nm, 1) - 1;
    let sunday = last - weekday(last) as i64;
    sunday * 86400 + 3600
}

/// A broken-down Italian (Europe/Rome) local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItalianTime {
    /// The instant, Unix seconds.
    pub unix: i64,
    /// Local year.
    pub year: i64,
    /// Local month 1..=12.
    pub month: u32,
    /// Local day 1..=31.
    pub day: u32,
    /// Local hour.
    pub hour: u32,
    /// Local minute.
    pub minute: u32,
    /// Local second.
    pub second: u32,
    /// Offset from UTC in seconds (3600 or 7200).
    pub offset: i64,
    /// Local weekday, 0 = Sunday.
    pub weekday: u32,
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl ItalianTime {
    /// Italian local time of a Unix instant.
    pub fn from_unix(secs: i64) -> ItalianTime {
        let (utc_year, _, _) = civil_from_days(secs.div_euclid(86400));
        let start = last_sunday_0100_utc(utc_year, 3);
        let end = last_sunday_0100_utc(utc_year, 10);
        let offset = if secs >= start && secs < end {
            7200
        } else {
            3600
        };
        let local = secs + offset;
        let days = local.div_euclid(86400);
        let sod = local.rem_euclid(86400);
        let (year, month, day) = civil_from_days(days);
        ItalianTime {
            unix: secs,
            year,
            month,
            day,
            hour: (sod / 3600) as u32,
            minute: (sod / 60 % 60) as u32,
            second: (sod % 60) as u32,
            offset,
            weekday: weekday(days),
        }
    }

    /// Current Italian time from a clock.
    pub fn now(clock: &dyn Clock) -> ItalianTime {
        ItalianTime::from_unix(clock.now())
    }

    /// `"dd/mm/yyyy"` (daticert `giorno`).
    pub fn giorno(&self) -> String {
        format!("{:02}/{:02}/{:04}", self.day, self.month, self.year)
    }

    /// `"hh:mm:ss"` (daticert `ora`).
    pub fn ora(&self) -> String {
        format!("{:02}:{:02}:{:02}", self.hour, self.minute, self.second)
    }

    /// `"+0100"` or `"+0200"` (daticert `zona`).
    pub fn zona(&self) -> String {
        let sign = if self.offset < 0 { '-' } else { '+' };
        let a = self.offset.abs();
        format!("{sign}{:02}{:02}", a / 3600, a / 60 % 60)
    }

    /// RFC 5322 date, e.g. `"Tue, 13 Nov 2018 16:39:27 +0100"`.
    pub fn rfc5322(&self) -> String {
        format!(
            "{}, {} {} {:04} {} {}",
            DAYS[self.weekday as usize],
            self.day,
            MONTHS[(self.month - 1) as usize],
            self.year,
            self.ora(),
            self.zona()
        )
    }

    /// `"yyyymmddhhmmss"`, local time (used in generated ids, as providers do).
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `"+01:00"` or `"+02:00"`: the offset as ISO 8601 writes it.
    fn offset_colon(&self) -> String {
        let z = self.zona();
        format!("{}:{}", &z[..3], &z[3..])
    }

    /// The one form people read a time in (`pecd log`, `pecd queue`, the
    /// webmail): Italian day first, as the daticert writes it, then the
    /// offset, so summer and winter time cannot be confused:
    /// `"07/12/2026 22:19:40 +01:00"`.
    pub fn human(&self) -> String {
        format!("{} {} {}", self.giorno(), self.ora(), self.offset_colon())
    }

    /// ISO 8601 (RFC 3339) with the Italian offset, for machines (every
    /// `--json`): `"2026-12-07T22:19:40+01:00"`.
    pub fn iso8601(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{}{}",
            self.year,
            self.month,
            self.day,
            self.ora(),
            self.offset_colon()
        )
    }

    /// The daticert `<data>` element.
    pub fn data_ora(&self) -> DataOra {
        DataOra {
            zona: self.zona(),
            giorno: self.giorno(),
            ora: self.ora(),
        }
    }
}

/// Format milliseconds as an ISO-8601 UTC timestamp for humans.
pub fn iso_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

/// [`ItalianTime::human`] of Unix milliseconds.
pub fn human_ms(ms: i64) -> String {
    ItalianTime::from_unix(ms.div_euclid(1000)).human()
}

/// [`ItalianTime::iso8601`] of Unix milliseconds.
pub fn iso8601_ms(ms: i64) -> String {
    ItalianTime::from_unix(ms.div_euclid(1000)).iso8601()
}

/// An ISO 8601 time with offset (`2026-12-07T22:19:40+01:00`, as the
/// webmail's API gives it) in the [`ItalianTime::human`] form, keeping its
/// offset; anything else is returned as it is.
pub fn human_from_iso(s: &str) -> String {
    let b = s.as_bytes();
    let shaped = b.len() == 25
        && s.is_ascii()
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && matches!(b[19], b'+' | b'-')
        && b[22] == b':';
    if !shaped {
        return s.to_string();
    }
    format!(
        "{}/{}/{} {} {}",
        &s[8..10],
        &s[5..7],
        &s[..4],
        &s[11..19],
        &s[19..]
    )
}

/// A time a person typed that is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadTime(pub String);

impl std::fmt::Display for BadTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadTime {}

/// The Unix second of an Italian local time. In the autumn hour that
/// happens twice the first (summer time) is meant; a time skipped in
/// spring is read as winter time (02:30 is 03:30 summer time).
pub fn italian_to_unix(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
    let naive = days_from_civil(y, mo, d) * 86400 + i64::from(h * 3600 + mi * 60 + s);
    for off in [7200, 3600] {
        if ItalianTime::from_unix(naive - off).offset == off {
            return naive - off;
        }
    }
    naive - 3600
}

/// The span of Unix seconds `[first, end)` a person means by `s`, in
/// Italian time unless an offset is written: a day (`2026-12-07` or
/// `07/12/2026`) is the whole day, a time (`2026-12-07T22:19`,
/// `2026-12-07 22:19:40`, `07/12/2026 22:19:40`) its minute or second.
/// An offset (`Z`, `+01:00`, `+0100`) may follow a time, so the forms
/// `pecd` prints read back.
pub fn parse_when(s: &str) -> Result<(i64, i64), BadTime> {
    let bad = |why: &str| {
        BadTime(format!(
            "{s:?}: {why} (give a day such as 2026-12-07 or 07/12/2026, or a time such as \
             2026-12-07T22:19:40, in Italian time)"
        ))
    };
    let t = s.trim();
    let (date, rest) = match t.find(['T', 't', ' ']) {
        Some(i) => (&t[..i], Some(t[i + 1..].trim())),
        None => (t, None),
    };
    let num = |x: &str, len: std::ops::RangeInclusive<usize>| -> Option<u32> {
        (len.contains(&x.len()) && x.bytes().all(|b| b.is_ascii_digit()))
            .then(|| x.parse().ok())
            .flatten()
    };
    let (y, mo, d) = if let [y, m, d] = date.split('-').collect::<Vec<_>>()[..] {
        (num(y, 4..=4), num(m, 2..=2), num(d, 2..=2))
    } else if let [d, m, y] = date.split('/').collect::<Vec<_>>()[..] {
        (num(y, 4..=4), num(m, 1..=2), num(d, 1..=2))
    } else {
        return Err(bad("not a date"));
    };
    let (Some(y), Some(mo), Some(d)) = (y, mo, d) else {
        return Err(bad("not a date"));
    };
    let y = i64::from(y);
    if !(1..=12).contains(&mo) {
        return Err(bad("no such month"));
    }
    let (ny, nm) = if mo == 12 { (y + 1, 1) } else { (y, mo + 1) };
    let month_days = days_from_civil(ny, nm, 1) - days_from_civil(y, mo, 1);
    if d == 0 || i64::from(d) > month_days {
        return Err(bad("no such day"));
    }
    let Some(rest) = rest.filter(|r| !r.is_empty()) else {
        let first = italian_to_unix(y, mo, d, 0, 0, 0);
        let next = civil_from_days(days_from_civil(y, mo, d) + 1);
        return Ok((first, italian_to_unix(next.0, next.1, next.2, 0, 0, 0)));
    };
    // Split off an offset: `Z`, or a sign after the clock time.
    let (clock, offset) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c.trim(), Some(0i64))
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let z = rest[i + 1..].replace(':', "");
        let (Some(hh), Some(mm)) = (
            num(z.get(..2).unwrap_or(""), 2..=2),
            num(z.get(2..).unwrap_or(""), 2..=2),
        ) else {
            return Err(bad("not an offset such as +01:00"));
        };
        if hh > 14 || mm > 59 {
            return Err(bad("not an offset such as +01:00"));
        }
        let sign = if rest.as_bytes()[i] == b'-' { -1 } else { 1 };
        (
            rest[..i].trim(),
            Some(sign * i64::from(hh * 3600 + mm * 60)),
        )
    } else {
        (rest, None)
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let (h, mi, sec, span) = match parts[..] {
        [h, m] => (num(h, 1..=2), num(m, 2..=2), Some(0), 60),
        [h, m, sec] => (num(h, 1..=2), num(m, 2..=2), num(sec, 2..=2), 1),
        _ => return Err(bad("not a time of day such as 22:19 or 22:19:40")),
    };
    let (Some(h), Some(mi), Some(sec)) = (h, mi, sec) else {
        return Err(bad("not a time of day such as 22:19 or 22:19:40"));
    };
    if h > 23 || mi > 59 || sec > 59 {
        return Err(bad("no such time of day"));
    }
    let first = match offset {
        Some(off) => days_from_civil(y, mo, d) * 86400 + i64::from(h * 3600 + mi * 60 + sec) - off,
        None => italian_to_unix(y, mo, d, h, mi, sec),
    };
    Ok((first, first + span))
}

/// Largest estimated clock error we run without a warning: receipts must be
/// within one second of UTC, so half of that is the alarm.
pub const MAX_CLOCK_ERROR_US: i64 = 500_000;

/// Why the kernel clock's state deserves the operator's attention, if it does.
pub fn clock_warning(synchronised: bool, estimated_error_us: i64) -> Option<String> {
    if !synchronised {
        return Some(
            "the system clock is not synchronised (no NTP/chrony discipline): receipts must be within 1 s of UTC"
                .into(),
        );
    }
    (estimated_error_us > MAX_CLOCK_ERROR_US).then(|| {
        format!(
            "the system clock's estimated error is {} ms, over {} ms",
            estimated_error_us / 1000,
            MAX_CLOCK_ERROR_US / 1000
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64) -> i64 {
        days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s
    }

    #[test]
    fn civil_round_trip() {
        for z in [-800_000i64, -1, 0, 1, 11_016, 17_848, 19_000, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2000, 2, 29)), (2000, 2, 29));
        assert_eq!(days_from_civil(2018, 11, 13), 17848);
    }

    #[test]
    fn aruba_sample_time() {
        // Aruba 2018 consegna: "Tue, 13 Nov 2018 16:39:27 +0100" = 15:39:27Z.
        let t = ItalianTime::from_unix(at(2018, 11, 13, 15, 39, 27));
        assert_eq!(t.rfc5322(), "Tue, 13 Nov 2018 16:39:27 +0100");
        assert_eq!(t.giorno(), "13/11/2018");
        assert_eq!(t.ora(), "16:39:27");
        assert_eq!(t.zona(), "+0100");
        assert_eq!(t.compact(), "20181113163927");
        let t = ItalianTime::from_unix(at(2014, 11, 7, 15, 52, 0));
        assert_eq!(t.rfc5322(), "Fri, 7 Nov 2014 16:52:00 +0100");
    }

    #[test]
    fn spring_forward_2024() {
        // Last Sunday of March 2024 is the 31st; the switch is at 01:00Z.
        let before = ItalianTime::from_unix(at(2024, 3, 31, 0, 59, 59));
        assert_eq!(
            (before.ora(), before.zona()),
            ("01:59:59".into(), "+0100".into())
        );
        let after = ItalianTime::from_unix(at(2024, 3, 31, 1, 0, 0));
        assert_eq!(
            (after.ora(), after.zona()),
            ("03:00:00".into(), "+0200".into())
        );
        assert_eq!(after.rfc5322(), "Sun, 31 Mar 2024 03:00:00 +0200");
        // A week earlier is still winter time.
        assert_eq!(
            ItalianTime::from_unix(at(2024, 3, 24, 12, 0, 0)).zona(),
            "+0100"
        );
    }

    #[test]
    fn fall_back_2023() {
        // Last Sunday of October 2023 is the 29th.
        let before = ItalianTime::from_unix(at(2023, 10, 29, 0, 59, 59));
        assert_eq!(
            (before.ora(), before.zona()),
            ("02:59:59".into(), "+0200".into())
        );
        let after = ItalianTime::from_unix(at(2023, 10, 29, 1, 0, 0));
        assert_eq!(
            (after.ora(), after.zona()),
            ("02:00:00".into(), "+0100".into())
        );
        assert_eq!(after.giorno(), "29/10/2023");
    }

    #[test]
    fn new_year_and_leap_day() {
        let t = ItalianTime::from_unix(at(2023, 12, 31, 23, 30, 0));
        assert_eq!(t.giorno(), "01/01/2024");
        assert_eq!(t.ora(), "00:30:00");
        assert_eq!(t.rfc5322(), "Mon, 1 Jan 2024 00:30:00 +0100");
        let t = ItalianTime::from_unix(at(2024, 2, 28, 23, 0, 0));
        assert_eq!(t.giorno(), "29/02/2024");
        let t = ItalianTime::from_unix(at(2024, 7, 1, 22, 15, 0));
        assert_eq!(
            (t.giorno(), t.ora(), t.zona()),
            ("02/07/2024".into(), "00:15:00".into(), "+0200".into())
        );
    }

    #[test]
    fn one_human_form_and_iso_8601_with_the_italian_offset() {
        let winter = ItalianTime::from_unix(at(2026, 12, 7, 21, 19, 40));
        assert_eq!(winter.human(), "07/12/2026 22:19:40 +01:00");
        assert_eq!(winter.iso8601(), "2026-12-07T22:19:40+01:00");
        let summer = at(2024, 7, 1, 22, 15, 0) * 1000 + 999;
        assert_eq!(human_ms(summer), "02/07/2024 00:15:00 +02:00");
        assert_eq!(iso8601_ms(summer), "2024-07-02T00:15:00+02:00");
        assert_eq!(
            human_from_iso("2024-07-02T00:15:00+02:00"),
            "02/07/2024 00:15:00 +02:00"
        );
        assert_eq!(human_from_iso("yesterday"), "yesterday");
        assert_eq!(human_from_iso(""), "");
    }

    #[test]
    fn times_people_type_are_italian_time() {
        let day = |y, m, d| at(y, m, d, 0, 0, 0);
        // A winter day runs from 23:00Z the day before, a summer day from 22:00Z.
        assert_eq!(
            parse_when("2026-12-07").unwrap(),
            (day(2026, 12, 7) - 3600, day(2026, 12, 8) - 3600)
        );
        assert_eq!(parse_when("07/12/2026"), parse_when("2026-12-07"));
        assert_eq!(parse_when("7/12/2026"), parse_when("2026-12-07"));
        assert_eq!(
            parse_when("2024-07-02").unwrap(),
            (day(2024, 7, 2) - 7200, day(2024, 7, 3) - 7200)
        );
        // The day summer time starts has 23 hours.
        let (a, b) = parse_when("2024-03-31").unwrap();
        assert_eq!(b - a, 23 * 3600);
        // A second, a minute.
        let t = at(2026, 12, 7, 21, 19, 40);
        assert_eq!(parse_when("2026-12-07T22:19:40").unwrap(), (t, t + 1));
        assert_eq!(parse_when("2026-12-07 22:19:40").unwrap(), (t, t + 1));
        assert_eq!(parse_when("07/12/2026 22:19:40").unwrap(), (t, t + 1));
        assert_eq!(parse_when("2026-12-07T22:19").unwrap(), (t - 40, t + 20));
        // What pecd prints reads back to the same instant.
        let shown = ItalianTime::from_unix(t);
        assert_eq!(parse_when(&shown.human()).unwrap().0, t);
        assert_eq!(parse_when(&shown.iso8601()).unwrap().0, t);
        assert_eq!(parse_when("2026-12-07T21:19:40Z").unwrap().0, t);
        assert_eq!(parse_when("2026-12-07T16:19:40-0500").unwrap().0, t);
        // The autumn hour that happens twice: the first one.
        assert_eq!(
            parse_when("2023-10-29T02:30").unwrap().0,
            at(2023, 10, 29, 0, 30, 0)
        );
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-02-29",
            "31/04/2026",
            "2026-12-07T25:00",
            "2026-12-07T22:61",
            "2026-12-07T22",
            "2026-12-07T22:19:40+1",
            "20261207",
        ] {
            let e = parse_when(bad).unwrap_err();
            assert!(e.to_string().contains("Italian time"), "{bad:?}: {e}");
        }
        assert!(parse_when("2024-02-29").is_ok());
    }

    #[test]
    fn clocks() {
        assert_eq!(FixedClock(42).now(), 42);
        assert!(SystemClock.now() > 1_600_000_000);
    }

    #[test]
    fn clock_warnings() {
        assert_eq!(clock_warning(true, 1_000), None);
        assert_eq!(clock_warning(true, MAX_CLOCK_ERROR_US), None);
        assert!(clock_warning(true, MAX_CLOCK_ERROR_US + 1)
            .unwrap()
            .contains("500 ms"));
        assert!(clock_warning(false, 0)
            .unwrap()
            .contains("not synchronised"));
    }
}
