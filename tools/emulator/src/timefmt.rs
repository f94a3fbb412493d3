//! Time formats API Gateway uses: `requestTime` in Common Log Format, Management API timestamps in ISO 8601.

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Epoch milliseconds now.
pub(crate) fn now_ms() -> i64 {
    chat_shared::handlers::now_ms()
}

/// UTC calendar fields of an epoch-milliseconds instant: (year, month 1–12, day, hour, minute, second, ms).
fn civil(epoch_ms: i64) -> (i64, i64, i64, i64, i64, i64, i64) {
    let secs = epoch_ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        epoch_ms.rem_euclid(1000),
    )
}

/// `25/Nov/2026:09:19:18 +0000`.
pub(crate) fn clf(epoch_ms: i64) -> String {
    let (y, mo, d, h, mi, s, _) = civil(epoch_ms);
    let month = MONTHS[usize::try_from(mo - 1).unwrap_or(0)];
    format!("{d:02}/{month}/{y}:{h:02}:{mi:02}:{s:02} +0000")
}

/// `2026-11-25T09:19:18.123Z`.
pub(crate) fn iso8601(epoch_ms: i64) -> String {
    let (y, mo, d, h, mi, s, ms) = civil(epoch_ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_time_is_in_common_log_format() {
        assert_eq!(clf(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(clf(1_764_062_358_000), "25/Nov/2025:09:19:18 +0000");
        assert_eq!(clf(951_782_400_000), "29/Feb/2000:00:00:00 +0000");
    }

    #[test]
    fn iso8601_has_milliseconds_and_utc() {
        assert_eq!(iso8601(1_764_062_358_123), "2025-11-25T09:19:18.123Z");
    }
}
