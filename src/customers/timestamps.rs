//! Timestamps as the API writes them: RFC 3339 in UTC with milliseconds.

use chrono::{DateTime, SecondsFormat, Utc};

/// RFC 3339 in UTC with milliseconds (`2026-12-06T10:30:00.123Z`), as chrono's
/// `to_rfc3339_opts(SecondsFormat::Millis, true)` writes it, without its formatting machinery:
/// a list page writes two per customer, and chrono's way cost about 1,000 instructions each
/// (docs/performance.md#where-a-requests-cpu-goes). Years outside 0..=9999 and leap seconds
/// are left to chrono.
pub fn timestamp(t: &DateTime<Utc>) -> String {
    match timestamp_bytes(t) {
        // Only ASCII digits and separators were written.
        Some(bytes) => String::from_utf8(bytes.to_vec()).expect("ASCII"),
        None => t.to_rfc3339_opts(SecondsFormat::Millis, true),
    }
}

/// Appends [`timestamp`]'s text to `out` (the answers' JSON, without a `String` each).
pub fn write_timestamp(out: &mut Vec<u8>, t: &DateTime<Utc>) {
    match timestamp_bytes(t) {
        Some(bytes) => out.extend_from_slice(&bytes),
        None => out.extend_from_slice(timestamp(t).as_bytes()),
    }
}

/// [`timestamp`]'s text, `None` where it is chrono's to write.
fn timestamp_bytes(t: &DateTime<Utc>) -> Option<[u8; 24]> {
    use chrono::{Datelike, Timelike};
    // One conversion to the naive parts; chrono's accessors on a `DateTime` each convert again.
    let (date, time) = (t.date_naive(), t.time());
    let (year, nanos) = (date.year(), time.nanosecond());
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return None;
    }
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut value: u32| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    let seconds = time.num_seconds_from_midnight();
    put(0, 4, year as u32);
    put(5, 2, date.month());
    put(8, 2, date.day());
    put(11, 2, seconds / 3600);
    put(14, 2, seconds / 60 % 60);
    put(17, 2, seconds % 60);
    put(20, 3, nanos / 1_000_000);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::{timestamp, write_timestamp};
    use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};

    fn chrono_way(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    #[test]
    fn timestamp_is_chronos_rfc3339_with_millis() {
        // Spread over years -100..=10100 (both fallbacks included) and every sub-second digit.
        let (mut seconds, mut nanos) = (0i64, 0u32);
        let (start, end) = (-65_000_000_000i64, 256_000_000_000i64);
        for i in 0..200_000i64 {
            seconds = (seconds
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(i))
            .rem_euclid(end - start);
            nanos = nanos.wrapping_mul(1_103_515_245).wrapping_add(12_345) % 1_000_000_000;
            let t = Utc.timestamp_opt(start + seconds, nanos).unwrap();
            assert_eq!(timestamp(&t), chrono_way(&t), "{t:?}");
            let mut written = b"x".to_vec();
            write_timestamp(&mut written, &t);
            assert_eq!(written, format!("x{}", chrono_way(&t)).into_bytes());
        }
        let edges = [
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(-1, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 6, 10, 30, 0).unwrap()
                + chrono::Duration::nanoseconds(999_999_999),
            // A leap second (nanosecond >= 1e9) is chrono's to write.
            NaiveDate::from_ymd_opt(2016, 12, 31)
                .unwrap()
                .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
                .unwrap()
                .and_utc(),
        ];
        for t in edges {
            assert_eq!(timestamp(&t), chrono_way(&t), "{t:?}");
            let mut written = Vec::new();
            write_timestamp(&mut written, &t);
            assert_eq!(written, chrono_way(&t).into_bytes());
        }
        assert_eq!(
            timestamp(&Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()),
            "2026-01-02T03:04:05.000Z"
        );
    }
}
