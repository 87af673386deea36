//! Calendar arithmetic for ISO 8583 date and time fields, from unix milliseconds (no clock is read
//! here: callers pass the time in).

/// Civil date and time: (year, month 1..=12, day 1..=31, hour, minute, second).
pub type Civil = (i64, u32, u32, u32, u32, u32);

/// Converts unix milliseconds plus an offset in minutes to a civil date and time (proleptic Gregorian).
pub fn civil(unix_ms: u64, offset_minutes: i32) -> Civil {
    let secs = (unix_ms / 1000) as i64 + i64::from(offset_minutes) * 60;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

/// Day of the year, 1..=366.
pub fn day_of_year(year: i64, month: u32, day: u32) -> u32 {
    const CUMULATIVE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let before = CUMULATIVE
        .get(month.saturating_sub(1) as usize)
        .copied()
        .unwrap_or(0);
    before + day + u32::from(leap && month > 2)
}

/// The date and time fields of one ISO 8583 message, as numbers: what the pool writes and what a
/// shard expects it wrote (`upstream::trace_of`). Field 7 (transmission date and time) and the
/// RRN are UTC, as ISO 8583 defines field 7; fields 12 and 13 are the acceptor's local time and
/// date (the host's `local_time_offset_minutes`).
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    /// Field 7, `MMDDhhmmss`, UTC.
    pub transmitted: u64,
    /// Field 12, `hhmmss`, local.
    pub time: u64,
    /// Field 13, `MMDD`, local.
    pub date: u64,
    /// The RRN without its STAN: year digit, day of the year, hour (`YDDDhh`), UTC.
    pub rrn_prefix: u64,
}

impl Stamp {
    /// The stamp of a message sent at `now_ms` (unix ms) by an acceptor `local_offset_minutes`
    /// from UTC.
    pub fn at(now_ms: u64, local_offset_minutes: i32) -> Self {
        let (year, month, day, hour, minute, second) = civil(now_ms, 0);
        let doy = u64::from(day_of_year(year, month, day));
        let (month, day, hour) = (u64::from(month), u64::from(day), u64::from(hour));
        let utc_time = hour * 10_000 + u64::from(minute) * 100 + u64::from(second);
        let (_, l_month, l_day, l_hour, l_minute, l_second) = civil(now_ms, local_offset_minutes);
        Self {
            transmitted: (month * 100 + day) * 1_000_000 + utc_time,
            time: u64::from(l_hour) * 10_000 + u64::from(l_minute) * 100 + u64::from(l_second),
            date: u64::from(l_month) * 100 + u64::from(l_day),
            rrn_prefix: (year.rem_euclid(10) as u64 * 1_000 + doy) * 100 + hour,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(civil(0, 0), (1970, 1, 1, 0, 0, 0));
        // 2026-11-26T21:39:56Z
        assert_eq!(civil(1_795_729_196_000, 0), (2026, 11, 26, 21, 39, 56));
        // Korea is UTC+9: the next day.
        assert_eq!(civil(1_795_729_196_000, 540), (2026, 11, 27, 6, 39, 56));
        assert_eq!(civil(951_782_400_000, 0), (2000, 2, 29, 0, 0, 0));
        assert_eq!(day_of_year(2024, 3, 1), 61);
        assert_eq!(day_of_year(2026, 12, 31), 365);
    }

    #[test]
    fn local_fields_follow_the_offset_and_field_7_stays_utc() {
        // 2026-11-26T21:39:56Z is 2026-11-27 06:39:56 in Korea (UTC+9).
        let utc = Stamp::at(1_795_729_196_000, 0);
        let kst = Stamp::at(1_795_729_196_000, 540);
        assert_eq!((utc.time, utc.date), (213_956, 1_126));
        assert_eq!((kst.time, kst.date), (63_956, 1_127));
        assert_eq!(kst.transmitted, 1_126_213_956);
        assert_eq!(kst.transmitted, utc.transmitted);
        assert_eq!(kst.rrn_prefix, utc.rrn_prefix);
        // West of UTC: the day before.
        let west = Stamp::at(1_795_729_196_000, -22 * 60);
        assert_eq!((west.time, west.date), (233_956, 1_125));
    }
}
