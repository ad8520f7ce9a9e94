//! Time: the clock the layer reads (injectable, for tests) and working hours in a time zone.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Datelike, NaiveTime, Timelike, Utc, Weekday};
use chrono_tz::Tz;

/// Where the layer reads the time: for sightings (impossible travel) and working hours.
///
/// Implemented by [`SystemClock`] (the default), [`ManualClock`] (for tests), and any
/// `Fn() -> SystemTime`.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

impl<F> Clock for F
where
    F: Fn() -> SystemTime + Send + Sync + 'static,
{
    fn now(&self) -> SystemTime {
        self()
    }
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that stands still until told otherwise; clones share the time.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use zerotrust_geo::{Clock, ManualClock};
///
/// let clock = ManualClock::at_unix(1_900_000_000);
/// let seen_by_layer = clock.clone();
/// clock.advance(Duration::from_secs(300));
/// assert_eq!(seen_by_layer.now(), UNIX_EPOCH + Duration::from_secs(1_900_000_300));
/// ```
#[derive(Clone)]
pub struct ManualClock {
    millis: Arc<AtomicI64>,
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ManualClock")
            .field(&self.millis.load(Ordering::Relaxed))
            .finish()
    }
}

impl ManualClock {
    /// A clock showing `secs` seconds after the Unix epoch.
    pub fn at_unix(secs: i64) -> Self {
        Self {
            millis: Arc::new(AtomicI64::new(secs.saturating_mul(1000))),
        }
    }

    /// Sets the time to `secs` seconds after the Unix epoch.
    pub fn set_unix(&self, secs: i64) {
        self.millis
            .store(secs.saturating_mul(1000), Ordering::Relaxed);
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.millis.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        let ms = self.millis.load(Ordering::Relaxed);
        let offset = Duration::from_millis(ms.unsigned_abs());
        if ms >= 0 {
            UNIX_EPOCH + offset
        } else {
            UNIX_EPOCH - offset
        }
    }
}

/// Seconds since the Unix epoch (negative before it).
pub(crate) fn unix_secs(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// When people are expected to work, in one time zone: on some days of the week, between a start
/// and an end time.
///
/// A window whose end is before its start runs overnight (`22:00`–`06:00`): the hours after
/// midnight belong to the day the shift started. A window whose start equals its end spans the
/// whole day. Times are local, so daylight-saving changes are followed.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use zerotrust_geo::{NaiveTime, Tz, Weekday, WorkingHours};
///
/// let hours = WorkingHours::new(Tz::Europe__Berlin)
///     .days([Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri])
///     .between(NaiveTime::from_hms_opt(8, 0, 0).unwrap(), NaiveTime::from_hms_opt(18, 0, 0).unwrap());
///
/// // Tuesday 2030-03-12 10:00 UTC is 11:00 in Berlin.
/// let tuesday_11 = UNIX_EPOCH + Duration::from_secs(1_899_540_000);
/// assert!(hours.check(tuesday_11).is_none());
/// // Five hours earlier, 06:00 in Berlin, is outside: the answer is the local time.
/// let early = tuesday_11 - Duration::from_secs(5 * 3600);
/// assert_eq!(hours.check(early).unwrap(), "Tue 06:00 Europe/Berlin");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingHours {
    tz: Tz,
    days: [bool; 7],
    start: NaiveTime,
    end: NaiveTime,
}

impl WorkingHours {
    /// Monday to Friday, 08:00 to 18:00, in `tz`; change them with [`days`](Self::days) and
    /// [`between`](Self::between).
    ///
    /// ```
    /// let hours = zerotrust_geo::WorkingHours::new(zerotrust_geo::Tz::America__New_York);
    /// # let _ = hours;
    /// ```
    pub fn new(tz: Tz) -> Self {
        let at = |h| NaiveTime::from_hms_opt(h, 0, 0).unwrap_or(NaiveTime::MIN);
        Self {
            tz,
            days: [true, true, true, true, true, false, false],
            start: at(8),
            end: at(18),
        }
    }

    /// The working days (replacing the default Monday to Friday).
    ///
    /// ```
    /// use zerotrust_geo::{Tz, Weekday, WorkingHours};
    ///
    /// let hours = WorkingHours::new(Tz::Asia__Dubai)
    ///     .days([Weekday::Sun, Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu]);
    /// # let _ = hours;
    /// ```
    pub fn days(mut self, days: impl IntoIterator<Item = Weekday>) -> Self {
        self.days = [false; 7];
        for day in days {
            if let Some(slot) = self.days.get_mut(day.num_days_from_monday() as usize) {
                *slot = true;
            }
        }
        self
    }

    /// The working time of each working day, from `start` (inclusive) to `end` (exclusive).
    ///
    /// ```
    /// use zerotrust_geo::{NaiveTime, Tz, WorkingHours};
    ///
    /// // A night shift.
    /// let hours = WorkingHours::new(Tz::UTC).between(
    ///     NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
    ///     NaiveTime::from_hms_opt(6, 0, 0).unwrap(),
    /// );
    /// # let _ = hours;
    /// ```
    pub fn between(mut self, start: NaiveTime, end: NaiveTime) -> Self {
        self.start = start;
        self.end = end;
        self
    }

    /// The time zone.
    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    fn is_day(&self, day: Weekday) -> bool {
        self.days
            .get(day.num_days_from_monday() as usize)
            .copied()
            .unwrap_or(false)
    }

    /// `None` within working hours; outside them, the local time (`Sat 03:10 Europe/Berlin`).
    pub fn check(&self, at: SystemTime) -> Option<String> {
        let local: DateTime<Tz> = DateTime::<Utc>::from(at).with_timezone(&self.tz);
        let time = local.time();
        let day = local.weekday();
        let inside = if self.start == self.end {
            self.is_day(day)
        } else if self.start < self.end {
            self.is_day(day) && time >= self.start && time < self.end
        } else {
            // Overnight: the evening part belongs to today, the early part to yesterday's shift.
            (time >= self.start && self.is_day(day)) || (time < self.end && self.is_day(day.pred()))
        };
        if inside {
            return None;
        }
        Some(format!(
            "{} {:02}:{:02} {}",
            day,
            time.hour(),
            time.minute(),
            self.tz.name()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    /// 2030-03-11 is a Monday; `utc(day, h, m)` is that Monday + `day` days, at h:m UTC.
    fn utc(day: u64, h: u64, m: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_899_417_600 + day * 86_400 + h * 3600 + m * 60)
    }

    #[test]
    fn monday_fixture_is_a_monday() {
        let d = DateTime::<Utc>::from(utc(0, 0, 0));
        assert_eq!(d.weekday(), Weekday::Mon);
        assert_eq!(d.to_rfc3339(), "2030-03-11T00:00:00+00:00");
    }

    #[test]
    fn office_hours_hold_on_weekdays_only() {
        let hours = WorkingHours::new(Tz::UTC);
        assert!(hours.check(utc(0, 8, 0)).is_none());
        assert!(hours.check(utc(4, 17, 59)).is_none());
        assert_eq!(hours.check(utc(4, 18, 0)).unwrap(), "Fri 18:00 UTC");
        assert_eq!(hours.check(utc(5, 12, 0)).unwrap(), "Sat 12:00 UTC");
        assert_eq!(hours.check(utc(0, 7, 59)).unwrap(), "Mon 07:59 UTC");
    }

    #[test]
    fn overnight_shift_belongs_to_the_day_it_started() {
        let hours = WorkingHours::new(Tz::UTC)
            .days([Weekday::Fri])
            .between(t(22, 0), t(6, 0));
        assert!(hours.check(utc(4, 23, 0)).is_none()); // Friday night
        assert!(hours.check(utc(5, 5, 59)).is_none()); // Saturday early: Friday's shift
        assert!(hours.check(utc(5, 6, 0)).is_some());
        assert!(hours.check(utc(4, 5, 0)).is_some()); // Friday early: Thursday's shift, not worked
    }

    #[test]
    fn local_time_follows_the_zone_and_daylight_saving() {
        let hours = WorkingHours::new(Tz::America__New_York);
        // Monday 2030-03-11 12:30 UTC is 08:30 EDT (DST began 2030-03-10).
        assert!(hours.check(utc(0, 12, 30)).is_none());
        // Monday 11:30 UTC is 07:30 EDT: outside.
        assert_eq!(
            hours.check(utc(0, 11, 30)).unwrap(),
            "Mon 07:30 America/New_York"
        );
    }

    #[test]
    fn equal_start_and_end_span_the_whole_working_day() {
        let hours = WorkingHours::new(Tz::UTC).between(t(0, 0), t(0, 0));
        assert!(hours.check(utc(2, 3, 0)).is_none());
        assert!(hours.check(utc(6, 3, 0)).is_some());
    }

    #[test]
    fn manual_clock_goes_where_it_is_told() {
        let clock = ManualClock::at_unix(-5);
        assert_eq!(unix_secs(clock.now()), -5);
        clock.set_unix(100);
        clock.advance(Duration::from_secs(20));
        assert_eq!(unix_secs(clock.now()), 120);
    }
}
