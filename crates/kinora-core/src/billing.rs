//! Money rules every layer must agree on. Amounts are integer minor units, never floats.

/// The price of `duration_ms` of output at `per_second` minor units a second, rounded up to a
/// whole minor unit; `None` on overflow or a negative rate.
pub fn price_for_duration(per_second: i64, duration_ms: u64) -> Option<i64> {
    if per_second < 0 {
        return None;
    }
    let duration = i64::try_from(duration_ms).ok()?;
    let milli = per_second.checked_mul(duration)?;
    Some(milli.div_euclid(1000) + i64::from(milli.rem_euclid(1000) != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_round_up_to_a_whole_minor_unit() {
        assert_eq!(price_for_duration(600, 5_000), Some(3_000));
        assert_eq!(price_for_duration(333, 1_001), Some(334));
        assert_eq!(price_for_duration(333, 0), Some(0));
        assert_eq!(price_for_duration(-1, 1_000), None);
        assert_eq!(price_for_duration(i64::MAX, 2_000), None);
    }
}
