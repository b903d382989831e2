//! Time for the PEC domain: an injectable [`Clock`] and Italian civil time.
//!
//! Every receipt, envelope and log entry carries a *riferimento temporale*
//! in Italian local time (`pec-spec.md` §4 `data`, §8). Europe/Rome follows
//! the EU rule (CET +0100; CEST +0200 from the last Sunday of March 01:00 UTC
//! to the last Sunday of October 01:00 UTC), which is computed here by hand so
//! that the domain needs no time-zone database and no date crate, and so that
//! tests can pin "now" with [`FixedClock`].

use super::daticert::DataOra;

/// Source of the current time, in Unix seconds.
pub trait Clock: Send + Sync {
    /// Seconds since 1970-01-01T00:00:00Z.
    fn now(&self) -> i64;
}

/// The system clock (the one place the domain may read real time from).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        since_epoch().as_secs() as i64
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
    fn now(&self) -> i64 {
        self.0
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

    /// The daticert `<data>` element.
    pub fn data_ora(&self) -> DataOra {
        DataOra {
            zona: self.zona(),
            giorno: self.giorno(),
            ora: self.ora(),
        }
    }
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
